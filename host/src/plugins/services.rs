//! The host's side of [`HostServices`]: samplers and generators ask it for the space's facts,
//! cached complexity, and other samplers by name.

use std::rc::Rc;

use nas_sdk::{
    Arch, Complexity, CostTable, Decision, HostContext, HostServices, Metric, PluginError,
    PluginResult, RunInfo, SamplerClient,
};

use super::{catalog::SharedCatalog, space::Space};

/// What the host offers samplers and generators.
#[derive(Clone)]
pub struct Services {
    /// Run facts.
    pub run_info: RunInfo,
    /// The space.
    pub space: Rc<Space>,
    /// The plugin catalog (for samplers that load other samplers).
    pub catalog: SharedCatalog,
}

impl Services {
    /// The services as the handle a plugin's `start` receives.
    pub fn context(&self) -> HostContext {
        HostContext::from_services(self.clone())
    }
}

fn to_plugin_error(err: anyhow::Error) -> PluginError {
    PluginError::runtime(format!("{err:#}"))
}

impl HostServices for Services {
    fn run_info(&self) -> RunInfo {
        self.run_info
    }
    fn decisions(&self) -> Vec<Decision> {
        self.space.decisions().to_vec()
    }
    fn complexity(&self, arch: &Arch) -> PluginResult<Complexity> {
        self.space.cached_complexity(arch)
    }
    fn extremes(&self, metric: Metric) -> PluginResult<(Arch, Arch)> {
        self.space.client().extremes(metric)
    }
    fn cost_table(&self, metric: Metric) -> PluginResult<CostTable> {
        self.space.client().cost_table(metric)
    }
    fn create_sampler(&self, name: &str, config: &str) -> PluginResult<SamplerClient> {
        let mut catalog = self.catalog.borrow_mut();
        catalog
            .new_sampler(name, config)
            .map(|(client, _)| client)
            .map_err(to_plugin_error)
    }
}
