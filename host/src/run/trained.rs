//! A trained run reopened for evaluation, search or export.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::checkpoint;
use crate::{
    config::RunConfig,
    data::Dataset,
    plugins::{open_catalog, SharedCatalog, Space},
};

/// A trained run opened for evaluation, search or export: its config, data, and supernet with
/// the latest checkpoint's weights.
pub struct TrainedRun {
    /// The run folder.
    pub dir: PathBuf,
    /// The run's config.toml.
    pub config: RunConfig,
    /// Its dataset (with the same held-out split as training).
    pub data: Dataset,
    /// The supernet.
    pub space: Space,
    /// The checkpoint folder loaded.
    pub checkpoint: PathBuf,
    /// The plugin catalog the space came from (for a generator or a subnet space).
    pub catalog: SharedCatalog,
}

impl TrainedRun {
    /// Opens `run_dir` with plugins from its config's search path plus `plugin_path`.
    pub fn open(run_dir: &Path, plugin_path: &[PathBuf]) -> Result<Self> {
        let config = load_run_config(run_dir)?;
        crate::device::set_threads(config.run.threads);
        let device = crate::device::select(&config.run.device)?;
        let data = Dataset::load(&config.data, config.run.seed, device)?;
        let catalog = open_catalog(&config.plugins.path, plugin_path);
        let mut space = Space::create(
            &catalog,
            &config.space,
            Some((data.channels, data.resolution, data.classes)),
        )?;
        space.build(device)?;
        let checkpoint = load_weights(&space, run_dir)?;
        Ok(TrainedRun {
            dir: run_dir.to_path_buf(),
            config,
            data,
            space,
            checkpoint,
            catalog,
        })
    }

    /// The split named `test` or `holdout`, refused when empty.
    pub fn split(&self, name: &str) -> Result<&crate::data::Split> {
        let split = match name {
            "test" => &self.data.test,
            "holdout" => &self.data.holdout,
            other => anyhow::bail!("--split `{other}`: use test or holdout"),
        };
        if split.is_empty() {
            anyhow::bail!(
                "the {name} split is empty (set data.holdout in the run's config to carve one)"
            );
        }
        Ok(split)
    }
}

/// The run configuration stored in a run folder.
pub fn load_run_config(run_dir: &Path) -> Result<RunConfig> {
    let path = run_dir.join("config.toml");
    RunConfig::load(Some(&path), &[]).with_context(|| {
        format!(
            "{} is not a run folder of `nas train` (its config.toml is missing or invalid)",
            run_dir.display()
        )
    })
}

/// Loads a run folder's latest checkpoint weights into a freshly built space.
pub fn load_weights(space: &Space, run_dir: &Path) -> Result<PathBuf> {
    let dir = checkpoint::latest(run_dir)?.with_context(|| {
        format!(
            "{} has no checkpoint (train it with `nas train` first)",
            run_dir.display()
        )
    })?;
    let (_, tensors) = checkpoint::load(&dir)?;
    checkpoint::copy_into(&space.parameters()?, &tensors.params, "parameter", &dir)?;
    checkpoint::copy_into(&space.buffers()?, &tensors.buffers, "buffer", &dir)?;
    Ok(dir)
}
