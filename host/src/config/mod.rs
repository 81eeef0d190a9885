//! The run configuration: TOML files, `--set key=value` overrides, defaults, validation.
//!
//! Every field has a default, so an empty file is a valid config; unknown fields are refused with
//! their name. `nas config` prints the full default config.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

mod augment;
mod bn;

pub use augment::{AugmentSection, BadImagePolicy};
pub use bn::BnPolicy;

/// The whole configuration of a training run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Run identity, seed and hardware.
    pub run: RunSection,
    /// The dataset.
    pub data: DataSection,
    /// The search space plugin and its config.
    pub space: ComponentSection,
    /// The sampler plugin and its config.
    pub sampler: ComponentSection,
    /// The architecture generator plugin (ShiftNAS), if the sampler asks for generated archs.
    pub generator: GeneratorSection,
    /// Optimizer and learning-rate schedule.
    pub optim: OptimSection,
    /// Length of training, batch size, checkpoints.
    pub train: TrainSection,
    /// How subnets are evaluated.
    pub eval: EvalSection,
    /// Where plugins are looked for.
    pub plugins: PluginsSection,
}

/// `[run]`
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RunSection {
    /// Run name: the run folder is `<out_dir>/<name>`.
    pub name: String,
    /// Parent folder of run folders.
    pub out_dir: PathBuf,
    /// Seed of every random stream (data order, sampling, initialisation).
    pub seed: u64,
    /// `auto` (CUDA when available, else CPU), `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// libtorch intra-op threads (0 = libtorch's default).
    pub threads: usize,
    /// Seconds a data-parallel collective may wait for the other ranks before the run fails
    /// (a dead or stuck rank).
    pub collective_timeout: f64,
}

impl Default for RunSection {
    fn default() -> Self {
        RunSection {
            name: "run".into(),
            out_dir: "runs".into(),
            seed: 0,
            device: "auto".into(),
            threads: 0,
            collective_timeout: 300.0,
        }
    }
}

/// `[data]`
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DataSection {
    /// `fashion-mnist`, `cifar10` (the binary version's folder), `image-folder` (see
    /// [`ImageFolderSection`]) or `synthetic`.
    pub dataset: String,
    /// Folder of the dataset files; empty = look in `$NAS_DATA_DIR/<dataset>`, `./data/<dataset>`
    /// and (Fashion-MNIST) `/usr/share/datasets/fashion-mnist`.
    pub path: PathBuf,
    /// Images carved from the training split (seeded) as a held-out split for search and
    /// validation; never trained on.
    pub holdout: usize,
    /// Synthetic dataset: training images.
    pub synthetic_train: usize,
    /// Synthetic dataset: test images.
    pub synthetic_test: usize,
    /// Synthetic dataset: classes.
    pub synthetic_classes: i64,
    /// Synthetic dataset: image channels.
    pub synthetic_channels: i64,
    /// Synthetic dataset: image height = width.
    pub synthetic_resolution: i64,
    /// Image-folder dataset: how images are read.
    pub image_folder: ImageFolderSection,
    /// Training augmentation (a published preset and overrides).
    pub augment: AugmentSection,
    /// Threads that read, decode and augment training images (0 = in the training thread).
    pub workers: usize,
    /// Batches prepared ahead of the trainer (the bound of the queue between them).
    pub prefetch: usize,
    /// What to do with a training image that cannot be read: `skip` (warn and count) or `fail`.
    pub on_bad_image: BadImagePolicy,
}

/// `[data.image_folder]`: a folder with `train/<class>/*` and `test/<class>/*` images (PNG, JPEG
/// or BMP; `val/` is accepted for `test/`), classes in sorted folder-name order. Images are
/// streamed: indexed once, then read and decoded by the pipeline's workers as batches need them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ImageFolderSection {
    /// The resolution images reach the space at (`size x size`): the training crop and the
    /// evaluation view (shorter side resized, centre crop; see `data.augment.eval_crop`).
    pub size: u32,
    /// Read images as one grey channel instead of RGB.
    pub grayscale: bool,
    /// Per-channel mean of pixels scaled to [0, 1]; empty = ImageNet's (grey: their luma).
    pub mean: Vec<f64>,
    /// Per-channel standard deviation, as `mean`.
    pub std: Vec<f64>,
}

impl Default for ImageFolderSection {
    fn default() -> Self {
        ImageFolderSection {
            size: 32,
            grayscale: false,
            mean: Vec::new(),
            std: Vec::new(),
        }
    }
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection {
            dataset: "fashion-mnist".into(),
            path: PathBuf::new(),
            holdout: 0,
            synthetic_train: 2048,
            synthetic_test: 512,
            synthetic_classes: 10,
            synthetic_channels: 3,
            synthetic_resolution: 32,
            image_folder: ImageFolderSection::default(),
            augment: AugmentSection::default(),
            workers: 2,
            prefetch: 4,
            on_bad_image: BadImagePolicy::Skip,
        }
    }
}

/// `[space]` and `[sampler]`: a plugin component by name and its JSON-like config.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ComponentSection {
    /// Component name (`nb201`), or `path/to/libfoo.so:name`.
    pub name: String,
    /// The component's config; missing fields take the component's defaults.
    pub config: toml::Table,
}

impl Default for ComponentSection {
    fn default() -> Self {
        ComponentSection {
            name: String::new(),
            config: toml::Table::new(),
        }
    }
}

impl ComponentSection {
    /// The config as a JSON object string for the plugin constructor.
    pub fn config_json(&self) -> String {
        serde_json::to_string(&self.config).expect("TOML tables convert to JSON")
    }
}

/// `[generator]`: the architecture generator a sampler's `Generate` paths use (none when `name` is
/// empty), its optimizer, and the held-out probes of ShiftNAS's Eq. 8.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GeneratorSection {
    /// Component name (`shiftnas`, `random`), or `path/to/libfoo.so:name`; empty = no generator.
    pub name: String,
    /// The component's config; missing fields take the component's defaults.
    pub config: toml::Table,
    /// Learning rate of the generator's own Adam optimizer (constant; not from the paper).
    pub lr: f64,
    /// Adam's moment decay rates.
    pub betas: [f64; 2],
    /// Decoupled weight decay of the generator's parameters.
    pub weight_decay: f64,
    /// Held-out images per probe (one batch, the same for both weight snapshots).
    pub probe_batch_size: usize,
}

impl Default for GeneratorSection {
    fn default() -> Self {
        GeneratorSection {
            name: String::new(),
            config: toml::Table::new(),
            lr: 1e-3,
            betas: [0.9, 0.999],
            weight_decay: 0.0,
            probe_batch_size: 256,
        }
    }
}

impl GeneratorSection {
    /// The config as a JSON object string for the plugin constructor.
    pub fn config_json(&self) -> String {
        serde_json::to_string(&self.config).expect("TOML tables convert to JSON")
    }

    /// The optimizer settings of the generator: AdamW at a constant rate, no clipping.
    pub fn optim(&self) -> OptimSection {
        OptimSection {
            optimizer: OptimizerKind::Adamw,
            lr: self.lr,
            betas: self.betas,
            weight_decay: self.weight_decay,
            inactive: InactiveRule::Include,
            schedule: Schedule::Constant,
            ..OptimSection::default()
        }
    }
}

/// What happens to parameters the step's subnets did not use.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InactiveRule {
    /// Leave them untouched: no weight decay, no momentum (SPOS's official behaviour).
    Exclude,
    /// Update every parameter, with a zero gradient where unused (plain SGD over all weights).
    Include,
}

/// Learning-rate schedule shape.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// `lr` throughout.
    Constant,
    /// Linear decay from `lr` to `min_lr`.
    Linear,
    /// Cosine decay from `lr` to `min_lr`.
    Cosine,
}

/// The update rule.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with (Nesterov) momentum and L2 weight decay (the NAS-Bench-201 / SPOS recipes).
    Sgd,
    /// AdamW with decoupled weight decay (the usual ViT recipe, AutoFormer).
    Adamw,
}

/// Gradient clipping.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClipKind {
    /// No clipping.
    None,
    /// Scale all gradients so their global L2 norm is at most `clip_value`.
    Norm,
    /// Clamp every gradient element to `[-clip_value, clip_value]`.
    Value,
}

/// `[optim]`
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OptimSection {
    /// `sgd` or `adamw`.
    pub optimizer: OptimizerKind,
    /// Peak learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Nesterov momentum (SGD).
    pub nesterov: bool,
    /// AdamW's moment decay rates.
    pub betas: [f64; 2],
    /// AdamW's denominator term.
    pub eps: f64,
    /// Weight decay: L2 added to the gradient (SGD, as PyTorch's SGD) or decoupled (AdamW).
    pub weight_decay: f64,
    /// The inactive-parameter rule.
    pub inactive: InactiveRule,
    /// Schedule after warm-up.
    pub schedule: Schedule,
    /// Final learning rate of `linear` and `cosine`.
    pub min_lr: f64,
    /// Linear warm-up steps from `warmup_start_lr` to `lr`.
    pub warmup_steps: u64,
    /// Learning rate at step 0 of the warm-up.
    pub warmup_start_lr: f64,
    /// Gradient clipping kind.
    pub clip: ClipKind,
    /// Max norm or max absolute value for clipping.
    pub clip_value: f64,
}

impl Default for OptimSection {
    fn default() -> Self {
        OptimSection {
            optimizer: OptimizerKind::Sgd,
            lr: 0.05,
            momentum: 0.9,
            nesterov: true,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 5e-4,
            inactive: InactiveRule::Exclude,
            schedule: Schedule::Cosine,
            min_lr: 0.0,
            warmup_steps: 0,
            warmup_start_lr: 0.0,
            clip: ClipKind::None,
            clip_value: 5.0,
        }
    }
}

/// `[train]`
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrainSection {
    /// Epochs over the training split (ignored when `steps` is set).
    pub epochs: u64,
    /// Total optimizer steps; 0 = `epochs` x steps per epoch.
    pub steps: u64,
    /// Images per batch.
    pub batch_size: usize,
    /// Write a checkpoint every this many steps (and always at the end); 0 = only at the end.
    pub checkpoint_every: u64,
    /// Checkpoints kept on disk (latest ones).
    pub keep_checkpoints: usize,
    /// Show a progress bar (off when not a terminal).
    pub progress: bool,
    /// In a data-parallel run, ranks other than 0 also log their steps, to
    /// `<run>/ranks/metrics-rank<R>.jsonl` (to check that all ranks train the same subnets).
    pub rank_metrics: bool,
}

impl TrainSection {
    /// Optimizer steps of the whole run, given the steps of one epoch.
    pub fn total_steps(&self, steps_per_epoch: u64) -> u64 {
        if self.steps > 0 {
            self.steps
        } else {
            self.epochs * steps_per_epoch
        }
    }
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            epochs: 1,
            steps: 0,
            batch_size: 64,
            checkpoint_every: 500,
            keep_checkpoints: 2,
            progress: true,
            rank_metrics: false,
        }
    }
}

/// `[eval]`
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EvalSection {
    /// `batch-stats` or `recalibrate`.
    pub bn: String,
    /// Training batches forwarded to recalibrate BN statistics.
    pub calib_batches: usize,
    /// Evaluation batch size (with `batch-stats`, also the size of the normalisation batch).
    pub batch_size: usize,
}

impl Default for EvalSection {
    fn default() -> Self {
        EvalSection {
            bn: "batch-stats".into(),
            calib_batches: 64,
            batch_size: 256,
        }
    }
}

/// `[plugins]`
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsSection {
    /// Extra folders searched for plugin libraries, before `NAS_PLUGIN_PATH` and the folder
    /// beside the `nas` binary.
    pub path: Vec<PathBuf>,
}

impl RunConfig {
    /// The defaults with the NB201 space and uniform sampler named.
    pub fn with_default_components() -> Self {
        let mut config = RunConfig::default();
        config.space.name = "nb201".into();
        config.sampler.name = "uniform".into();
        config
    }

    /// Loads `path` (if given) over the defaults, then applies `key=value` overrides.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Self> {
        Self::load_over(RunConfig::with_default_components(), path, overrides)
    }

    /// Loads `path` (if given) over `base`, then applies `key=value` overrides.
    pub fn load_over(base: RunConfig, path: Option<&Path>, overrides: &[String]) -> Result<Self> {
        let mut value = toml::Value::try_from(base).expect("config serialises");
        if let Some(path) = path {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config file {}", path.display()))?;
            let file: toml::Table = toml::from_str(&text)
                .with_context(|| format!("parsing config file {} as TOML", path.display()))?;
            merge(&mut value, toml::Value::Table(file));
        }
        for item in overrides {
            apply_override(&mut value, item)?;
        }
        let origin = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the defaults".into());
        let config: RunConfig = value
            .try_into()
            .with_context(|| format!("invalid config (from {origin} and --set overrides)"))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<()> {
        if !(self.run.collective_timeout.is_finite() && self.run.collective_timeout > 0.0) {
            bail!(
                "config field `run.collective_timeout` must be a positive number of seconds, got {}",
                self.run.collective_timeout
            );
        }
        if self.train.batch_size == 0 {
            bail!("config field `train.batch_size` must be at least 1");
        }
        if self.optim.betas.iter().any(|b| !(0.0..1.0).contains(b)) {
            bail!(
                "config field `optim.betas` must be two numbers in [0, 1), got {:?}",
                self.optim.betas
            );
        }
        if self.optim.eps.is_nan() || self.optim.eps <= 0.0 {
            bail!(
                "config field `optim.eps` must be positive, got {}",
                self.optim.eps
            );
        }
        if self.train.steps == 0 && self.train.epochs == 0 {
            bail!("config: set `train.epochs` or `train.steps` to at least 1");
        }
        if self.optim.lr.is_nan() || self.optim.lr <= 0.0 {
            bail!(
                "config field `optim.lr` must be positive, got {}",
                self.optim.lr
            );
        }
        if !(0.0..1.0).contains(&self.optim.momentum) {
            bail!(
                "config field `optim.momentum` must be in [0, 1), got {}",
                self.optim.momentum
            );
        }
        if self.optim.nesterov && self.optim.momentum == 0.0 {
            bail!("config: `optim.nesterov = true` needs `optim.momentum` > 0");
        }
        if self.optim.clip != ClipKind::None
            && (self.optim.clip_value.is_nan() || self.optim.clip_value <= 0.0)
        {
            bail!("config field `optim.clip_value` must be positive when clipping");
        }
        if self.space.name.is_empty() {
            bail!("config field `space.name` is empty: name a search space (e.g. \"nb201\"; `nas plugins list` shows them)");
        }
        if self.sampler.name.is_empty() {
            bail!("config field `sampler.name` is empty: name a sampler (e.g. \"uniform\")");
        }
        BnPolicy::parse(&self.eval.bn, self.eval.calib_batches)?;
        if self.generator.lr.is_nan() || self.generator.lr <= 0.0 {
            bail!(
                "config field `generator.lr` must be positive, got {}",
                self.generator.lr
            );
        }
        if self.generator.betas.iter().any(|b| !(0.0..1.0).contains(b)) {
            bail!(
                "config field `generator.betas` must be two numbers in [0, 1), got {:?}",
                self.generator.betas
            );
        }
        if self.generator.probe_batch_size == 0 {
            bail!("config field `generator.probe_batch_size` must be at least 1");
        }
        Ok(())
    }

    /// The config as TOML text (what the run folder keeps).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }

    /// A hash of everything that determines the training trajectory (not the run name, output
    /// folder, progress display or checkpoint cadence), to refuse resuming with another config.
    pub fn trajectory_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut relevant = self.clone();
        relevant.run.name.clear();
        relevant.run.out_dir.clear();
        relevant.run.threads = 0;
        relevant.run.collective_timeout = 0.0;
        relevant.train.progress = true;
        relevant.train.rank_metrics = false;
        relevant.train.checkpoint_every = 0;
        relevant.train.keep_checkpoints = 0;
        relevant.plugins = PluginsSection::default();
        let mut value = serde_json::to_value(&relevant).expect("config serialises");
        if relevant.generator.name.is_empty() {
            // Generator settings do not move a run without one (and runs from before generators
            // existed keep their hash).
            if let Some(root) = value.as_object_mut() {
                root.remove("generator");
            }
        }
        if let Some(data) = value.get_mut("data").and_then(|d| d.as_object_mut()) {
            // Worker count and queue depth never change a batch; the pipeline settings at their
            // defaults are left out so runs from before the pipeline keep their hash.
            data.remove("workers");
            data.remove("prefetch");
            let defaults = DataSection::default();
            if self.data.augment == defaults.augment {
                data.remove("augment");
            }
            if self.data.on_bad_image == defaults.on_bad_image {
                data.remove("on_bad_image");
            }
            if let Some(folder) = data.get_mut("image_folder").and_then(|f| f.as_object_mut()) {
                if self.data.image_folder.mean.is_empty() && self.data.image_folder.std.is_empty() {
                    folder.remove("mean");
                    folder.remove("std");
                }
            }
        }
        if relevant.optim.optimizer == OptimizerKind::Sgd {
            // AdamW's settings do not move an SGD run (and runs from before AdamW existed keep
            // their hash).
            if let Some(optim) = value.get_mut("optim").and_then(|o| o.as_object_mut()) {
                for key in ["optimizer", "betas", "eps"] {
                    optim.remove(key);
                }
            }
        }
        let text = serde_json::to_string(&value).expect("config serialises");
        let digest = Sha256::digest(text.as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// Merges `overlay` into `base` (tables recursively, anything else replaced).
fn merge(base: &mut toml::Value, overlay: toml::Value) {
    match (base, overlay) {
        (toml::Value::Table(base), toml::Value::Table(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

/// Applies `a.b.c=value`; the value is read as TOML (`3`, `true`, `"x"`, `[1, 2]`) or else as a
/// plain string.
fn apply_override(root: &mut toml::Value, item: &str) -> Result<()> {
    let (key, raw) = item
        .split_once('=')
        .with_context(|| format!("--set `{item}`: expected KEY=VALUE, e.g. train.epochs=2"))?;
    let key = key.trim();
    let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("--set `{item}`: empty key segment in `{key}`");
    }
    let mut node = root;
    for part in &parts[..parts.len() - 1] {
        let table = node
            .as_table_mut()
            .with_context(|| format!("--set `{item}`: `{part}` is not a table"))?;
        node = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    let table = node
        .as_table_mut()
        .with_context(|| format!("--set `{item}`: parent of `{key}` is not a table"))?;
    table.insert(parts[parts.len() - 1].to_string(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_and_files_merge_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[train]\nepochs = 3\n[space.config]\nchannels = 8\n").unwrap();
        let config = RunConfig::load(
            Some(&file),
            &[
                "train.batch_size=32".into(),
                "space.config.cells_per_stage=1".into(),
                "run.name=x y".into(),
            ],
        )
        .unwrap();
        assert_eq!(config.train.epochs, 3);
        assert_eq!(config.train.batch_size, 32);
        assert_eq!(config.run.name, "x y");
        assert_eq!(config.space.config["channels"].as_integer(), Some(8));
        assert_eq!(config.space.config["cells_per_stage"].as_integer(), Some(1));
        assert_eq!(config.space.name, "nb201");
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = RunConfig::load(None, &["train.epoch=3".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("epoch"), "{err:#}");
        let err = RunConfig::load(None, &["train.batch_size=0".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("batch_size"), "{err:#}");
    }

    #[test]
    fn trajectory_hash_ignores_cosmetics() {
        let a = RunConfig::with_default_components();
        let mut b = a.clone();
        b.run.name = "other".into();
        b.train.checkpoint_every = 7;
        assert_eq!(a.trajectory_hash(), b.trajectory_hash());
        b.optim.lr = 0.1;
        assert_ne!(a.trajectory_hash(), b.trajectory_hash());
    }
}
