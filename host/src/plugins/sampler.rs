//! A sampler from a plugin: the training policy that plans every step.

use anyhow::Result;
use nas_sdk::{HostContext, SamplerClient, StepFeedback, StepInfo, StepPlan};

use super::catalog::{Origin, SharedCatalog};
use crate::config::ComponentSection;

/// A sampler plugin object and where it came from. Every method names the plugin and the method
/// in its error.
pub struct Sampler {
    client: SamplerClient,
    origin: Origin,
}

impl Sampler {
    /// Builds the sampler of `section` from the catalog.
    pub fn create(catalog: &SharedCatalog, section: &ComponentSection) -> Result<Self> {
        let (client, origin) = catalog
            .borrow_mut()
            .new_sampler(&section.name, &section.config_json())?;
        Ok(Sampler { client, origin })
    }

    /// Where the sampler came from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Its component name (for messages).
    pub fn name(&self) -> &str {
        &self.origin.name
    }

    /// Called once before the first step, and before `load_state` on resume.
    pub fn start(&mut self, host: HostContext) -> Result<()> {
        self.client
            .start(host)
            .map_err(|e| self.origin.error("start", e))
    }

    /// The plan of one step.
    pub fn plan(&mut self, step: &StepInfo) -> Result<StepPlan> {
        self.client
            .plan(step)
            .map_err(|e| self.origin.error("plan", e))
    }

    /// What the step did.
    pub fn observe(&mut self, feedback: &StepFeedback) -> Result<()> {
        self.client
            .observe(feedback)
            .map_err(|e| self.origin.error("observe", e))
    }

    /// The sampler's state for a checkpoint.
    pub fn save_state(&self) -> Result<String> {
        self.client
            .save_state()
            .map_err(|e| self.origin.error("save_state", e))
    }

    /// Restores a state from [`Sampler::save_state`].
    pub fn load_state(&mut self, state: &str) -> Result<()> {
        self.client
            .load_state(state)
            .map_err(|e| self.origin.error("load_state", e))
    }
}
