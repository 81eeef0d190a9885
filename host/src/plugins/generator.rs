//! An architecture generator from a plugin (ShiftNAS): target complexity in, arch and gates out.

use anyhow::{Context, Result};
use nas_sdk::{GenerateMode, Generation, GeneratorClient, HostContext};
use tch::{Device, Tensor};

use super::catalog::{Origin, SharedCatalog};
use crate::config::GeneratorSection;

/// A generator plugin object and where it came from. Every method names the plugin and the
/// method in its error.
pub struct Generator {
    client: GeneratorClient,
    origin: Origin,
    default_config: String,
}

impl Generator {
    /// Builds the generator of `section` (which must name one) from the catalog.
    pub fn create(catalog: &SharedCatalog, section: &GeneratorSection) -> Result<Self> {
        let (client, origin) = catalog
            .borrow_mut()
            .new_generator(&section.name, &section.config_json())
            .with_context(|| format!("config field `generator.name` = `{}`", section.name))?;
        let default_config = catalog
            .borrow_mut()
            .resolve(nas_sdk::ComponentKind::Generator, &section.name)?
            .1
            .default_config
            .to_string();
        Ok(Generator {
            client,
            origin,
            default_config,
        })
    }

    /// Where the generator came from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The component's default config (JSON), as its library declares it.
    pub fn default_config(&self) -> &str {
        &self.default_config
    }

    /// Creates the generator's parameters on `device`, with the host's services.
    pub fn start(&mut self, host: HostContext, device: Device) -> Result<()> {
        self.client
            .start(host, device)
            .map_err(|e| self.origin.error("start", e))
    }

    /// The arch, gates and extra loss for `target`.
    pub fn generate(&mut self, target: &Tensor, mode: GenerateMode) -> Result<Generation> {
        self.client
            .generate(target, mode)
            .map_err(|e| self.origin.error("generate", e))
    }

    /// Its trainable parameters, in the plugin's order.
    pub fn parameters(&self) -> Result<Vec<(String, Tensor)>> {
        self.client
            .parameters()
            .map_err(|e| self.origin.error("parameters", e))
    }

    /// The plugin's state for a checkpoint.
    pub fn save_state(&self) -> Result<String> {
        self.client
            .save_state()
            .map_err(|e| self.origin.error("save_state", e))
    }

    /// Restores a state from [`Generator::save_state`].
    pub fn load_state(&mut self, state: &str) -> Result<()> {
        self.client
            .load_state(state)
            .map_err(|e| self.origin.error("load_state", e))
    }
}
