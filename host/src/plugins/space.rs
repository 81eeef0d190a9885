//! A search space from a plugin: the supernet the host trains, evaluates and exports.

use std::{cell::RefCell, collections::HashMap};

use anyhow::Result;
use nas_sdk::{
    Arch, Complexity, ComponentKind, CostTable, Decision, ErrorKind, ForwardOptions, Metric,
    PluginResult, SpaceClient,
};
use tch::{Device, Tensor};

use super::catalog::{Origin, SharedCatalog};
use crate::config::ComponentSection;

/// A search space from a plugin, with its decisions and a complexity cache. Every method names
/// the plugin and the method in its error.
pub struct Space {
    client: SpaceClient,
    origin: Origin,
    decisions: Vec<Decision>,
    config_json: String,
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
        let (_, info) = catalog.resolve(ComponentKind::Space, &section.name)?;
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

    /// Where the space came from (recorded in results).
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Its decisions.
    pub fn decisions(&self) -> &[Decision] {
        &self.decisions
    }

    /// The JSON config it was built with.
    pub fn config_json(&self) -> &str {
        &self.config_json
    }

    /// Creates the supernet's weights on `device`.
    pub fn build(&mut self, device: Device) -> Result<()> {
        self.client
            .build(device)
            .map_err(|e| self.origin.error("build", e))
    }

    /// Exact complexity, cached.
    pub fn complexity(&self, arch: &Arch) -> Result<Complexity> {
        self.cached_complexity(arch)
            .map_err(|e| self.origin.error("complexity", e))
    }

    /// [`Space::complexity`] with the plugin's own error, for the host services.
    pub(super) fn cached_complexity(&self, arch: &Arch) -> PluginResult<Complexity> {
        if let Some(c) = self.complexity_cache.borrow().get(arch) {
            return Ok(*c);
        }
        let c = self.client.complexity(arch)?;
        self.complexity_cache.borrow_mut().insert(arch.clone(), c);
        Ok(c)
    }

    /// The plugin object itself, for the host services, which pass the plugin's errors through.
    pub(super) fn client(&self) -> &SpaceClient {
        &self.client
    }

    /// Logits of `arch` for `images` (gates: one per decision, for generated paths).
    pub fn forward(
        &self,
        images: &Tensor,
        arch: &Arch,
        gates: Option<&[Tensor]>,
        options: &ForwardOptions,
    ) -> Result<Tensor> {
        self.client
            .forward(images, arch, gates, options)
            .map_err(|e| self.origin.error("forward", e))
    }

    /// Indices (into [`Space::parameters`]) of the parameters `arch` uses.
    pub fn active_parameters(&self, arch: &Arch) -> Result<Vec<usize>> {
        self.client
            .active_parameters(arch)
            .map_err(|e| self.origin.error("active_parameters", e))
    }

    /// The smallest and the largest arch by `metric`.
    pub fn extremes(&self, metric: Metric) -> Result<(Arch, Arch)> {
        self.client
            .extremes(metric)
            .map_err(|e| self.origin.error("extremes", e))
    }

    /// The space's additive cost table for `metric`.
    pub fn cost_table(&self, metric: Metric) -> Result<CostTable> {
        self.client
            .cost_table(metric)
            .map_err(|e| self.origin.error("cost_table", e))
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

    /// The subnet's tensors with their plain shapes and conventional names.
    pub fn export_subnet(&self, arch: &Arch) -> Result<Vec<(String, Tensor)>> {
        self.client
            .export_subnet(arch)
            .map_err(|e| self.origin.error("export_subnet", e))
    }

    /// A config of this space that builds exactly the subnet `arch`, or `None` when the space
    /// cannot describe its subnets that way.
    pub fn subnet_config(&self, arch: &Arch) -> Result<Option<String>> {
        match self.client.subnet_config(arch) {
            Ok(config) => Ok(Some(config)),
            Err(err) if err.kind == ErrorKind::Unsupported => Ok(None),
            Err(err) => Err(self.origin.error("subnet_config", err)),
        }
    }
}
