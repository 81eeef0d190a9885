//! A built supernet with its plugins: what `train`, `eval` and `complexity` share.
//!
//! Also the host's side of [`HostServices`]: samplers and generators ask it for the space's
//! facts, cached complexity, and other samplers by name.

use std::{cell::RefCell, collections::HashMap, path::PathBuf, rc::Rc};

use anyhow::{Context, Result};
use nas_sdk::{
    Arch, Complexity, CostTable, Decision, HostServices, Metric, PluginError, PluginResult,
    RunInfo, SamplerClient, SpaceClient,
};
use tch::{Device, Tensor};

use crate::{
    config::{ComponentSection, RunConfig},
    plugins::{search_path, Origin, PluginCatalog},
};

/// The plugin catalog of a command, shared with the host services.
pub type SharedCatalog = Rc<RefCell<PluginCatalog>>;

/// Discovers plugins on the search path of `config` plus `extra` folders.
pub fn catalog(config_dirs: &[PathBuf], extra: &[PathBuf]) -> SharedCatalog {
    let mut dirs = extra.to_vec();
    dirs.extend(config_dirs.iter().cloned());
    Rc::new(RefCell::new(PluginCatalog::discover(search_path(&dirs))))
}

/// A search space from a plugin, with its decisions and a complexity cache.
pub struct Space {
    /// The plugin object.
    pub client: SpaceClient,
    /// Where it came from.
    pub origin: Origin,
    /// Its decisions.
    pub decisions: Vec<Decision>,
    /// The JSON config it was built with.
    pub config_json: String,
    complexity_cache: RefCell<HashMap<Arch, Complexity>>,
}

impl Space {
    /// Builds the space `section` from the catalog. `dataset` = (input channels, resolution,
    /// classes) fills `input_channels`, `resolution` and `num_classes` when the space has those
    /// fields and the config does not set them.
    pub fn create(
        catalog_handle: &SharedCatalog,
        section: &ComponentSection,
        dataset: Option<(i64, i64, i64)>,
    ) -> Result<Self> {
        let mut catalog = catalog_handle.borrow_mut();
        let (_, info) = catalog.resolve(nas_sdk::ComponentKind::Space, &section.name)?;
        let defaults: serde_json::Value =
            serde_json::from_str(&info.default_config).unwrap_or_default();
        let mut config: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&section.config_json()).expect("tables are objects");
        if let (Some((channels, resolution, classes)), Some(defaults)) =
            (dataset, defaults.as_object())
        {
            for (field, value) in [
                ("input_channels", channels),
                ("resolution", resolution),
                ("num_classes", classes),
            ] {
                if defaults.contains_key(field) && !config.contains_key(field) {
                    config.insert(field.into(), value.into());
                }
            }
        }
        drop(catalog);
        let config_json = serde_json::Value::Object(config).to_string();
        Self::from_json(catalog_handle, &section.name, &config_json)
    }

    /// Builds space `name` from a complete JSON config (e.g. a subnet config from
    /// [`nas_sdk::SearchSpace::subnet_config`]).
    pub fn from_json(catalog: &SharedCatalog, name: &str, config_json: &str) -> Result<Self> {
        let (client, origin) = catalog.borrow_mut().new_space(name, config_json)?;
        let decisions = client
            .decisions()
            .map_err(|e| origin.error("decisions", e))?;
        Ok(Space {
            client,
            origin,
            decisions,
            config_json: config_json.to_string(),
            complexity_cache: RefCell::new(HashMap::new()),
        })
    }

    /// Creates the supernet's weights on `device`.
    pub fn build(&mut self, device: Device) -> Result<()> {
        self.client
            .build(device)
            .map_err(|e| self.origin.error("build", e))
    }

    /// Exact complexity, cached.
    pub fn complexity(&self, arch: &Arch) -> PluginResult<Complexity> {
        if let Some(c) = self.complexity_cache.borrow().get(arch) {
            return Ok(*c);
        }
        let c = self.client.complexity(arch)?;
        self.complexity_cache.borrow_mut().insert(arch.clone(), c);
        Ok(c)
    }

    /// Parses an arch in the space's text form or as a JSON list.
    pub fn parse_arch(&self, text: &str) -> Result<Arch> {
        self.client
            .arch_from_text(text)
            .map_err(|e| self.origin.error("arch_from_text", e))
    }

    /// The arch in the space's text form.
    pub fn arch_text(&self, arch: &Arch) -> Result<String> {
        self.client
            .arch_to_text(arch)
            .map_err(|e| self.origin.error("arch_to_text", e))
    }

    /// Named parameters.
    pub fn parameters(&self) -> Result<Vec<(String, Tensor)>> {
        self.client
            .parameters()
            .map_err(|e| self.origin.error("parameters", e))
    }

    /// Named buffers.
    pub fn buffers(&self) -> Result<Vec<(String, Tensor)>> {
        self.client
            .buffers()
            .map_err(|e| self.origin.error("buffers", e))
    }
}

/// What the host offers samplers and generators.
pub struct Services {
    /// Run facts.
    pub run_info: RunInfo,
    /// The space.
    pub space: Rc<Space>,
    /// The plugin catalog (for samplers that load other samplers).
    pub catalog: SharedCatalog,
}

fn to_plugin_error(err: anyhow::Error) -> PluginError {
    PluginError::runtime(format!("{err:#}"))
}

impl HostServices for Services {
    fn run_info(&self) -> RunInfo {
        self.run_info
    }
    fn decisions(&self) -> Vec<Decision> {
        self.space.decisions.clone()
    }
    fn complexity(&self, arch: &Arch) -> PluginResult<Complexity> {
        self.space.complexity(arch)
    }
    fn extremes(&self, metric: Metric) -> PluginResult<(Arch, Arch)> {
        self.space.client.extremes(metric)
    }
    fn cost_table(&self, metric: Metric) -> PluginResult<CostTable> {
        self.space.client.cost_table(metric)
    }
    fn create_sampler(&self, name: &str, config: &str) -> PluginResult<SamplerClient> {
        let mut catalog = self.catalog.borrow_mut();
        catalog
            .new_sampler(name, config)
            .map(|(client, _)| client)
            .map_err(to_plugin_error)
    }
}

/// A trained run opened for evaluation, search or export: its config, data, and supernet with
/// the latest checkpoint's weights.
pub struct TrainedRun {
    /// The run's config.toml.
    pub config: RunConfig,
    /// Its dataset (with the same held-out split as training).
    pub data: crate::data::Dataset,
    /// The supernet.
    pub space: Space,
    /// The checkpoint folder loaded.
    pub checkpoint: PathBuf,
}

impl TrainedRun {
    /// Opens `run_dir` with plugins from its config's search path plus `plugin_path`.
    pub fn open(run_dir: &std::path::Path, plugin_path: &[PathBuf]) -> Result<Self> {
        let config = load_run_config(run_dir)?;
        if config.run.threads > 0 {
            tch::set_num_threads(config.run.threads as i32);
        }
        let device = crate::device::select(&config.run.device)?;
        let data = crate::data::Dataset::load(&config.data, config.run.seed, device)?;
        let catalog = catalog(&config.plugins.path, plugin_path);
        let mut space = Space::create(
            &catalog,
            &config.space,
            Some((data.channels, data.resolution, data.classes)),
        )?;
        space.build(device)?;
        let checkpoint = crate::trainer::load_weights(&space, run_dir)?;
        Ok(TrainedRun {
            config,
            data,
            space,
            checkpoint,
        })
    }
}

/// The run configuration stored in a run folder.
pub fn load_run_config(run_dir: &std::path::Path) -> Result<RunConfig> {
    let path = run_dir.join("config.toml");
    RunConfig::load(Some(&path), &[]).with_context(|| {
        format!(
            "{} is not a run folder of `nas train` (its config.toml is missing or invalid)",
            run_dir.display()
        )
    })
}
