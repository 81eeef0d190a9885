//! # nas-sdk: the plugin contract of the `nas` one-shot NAS platform
//!
//! A plugin is a `cdylib` crate that depends on this SDK (and `abi_stable`, which the export macro
//! names) and exports one or more **components**:
//!
//! - a **search space** ([`SearchSpace`]): decisions, a weight-sharing supernet, exact complexity;
//! - a **sampler** ([`Sampler`]): the training policy, one [`StepPlan`] per optimizer step;
//! - a **generator** ([`Generator`]): target complexity in, arch and differentiable gates out.
//!
//! The layout follows abi_stable's interface / implementation / user split:
//!
//! | module | role |
//! |---|---|
//! | [`api`] | the traits plugin authors implement, in plain Rust with `tch::Tensor` |
//! | [`ffi`] | the ABI: `#[sabi_trait]` objects and the root module (checked at load time) |
//! | [`guard`] | adapters from `api` to `ffi` that catch panics in every call |
//! | [`client`] | typed wrappers over `ffi` objects, for the host and for wrapper samplers |
//! | [`plugin`] | the component [`plugin::Registry`] and [`export_plugin!`] |
//! | [`version`] | versions the host checks before it trusts a library |
//!
//! Tensors cross as [`TensorHandle`] / [`TensorRef`] over the one libtorch that host and plugins
//! share; see [`tensor`] for ownership rules.
//!
//! ## A minimal sampler plugin
//!
//! ```
//! use nas_sdk::{Arch, Component, HostContext, PluginResult, Sampler, StepInfo, StepPlan};
//!
//! /// Always trains the first option of every decision.
//! struct FirstChoice { decisions: usize }
//!
//! impl Component for FirstChoice {
//!     const NAME: &'static str = "first-choice";
//!     const VERSION: &'static str = "0.1.0";
//!     const DESCRIPTION: &'static str = "trains option 0 of every decision";
//!     fn default_config() -> serde_json::Value { serde_json::json!({}) }
//!     fn from_config(_config: &str) -> PluginResult<Self> { Ok(FirstChoice { decisions: 0 }) }
//! }
//!
//! impl Sampler for FirstChoice {
//!     fn start(&mut self, host: HostContext) -> PluginResult<()> {
//!         self.decisions = host.decisions()?.len();
//!         Ok(())
//!     }
//!     fn plan(&mut self, _step: &StepInfo) -> PluginResult<StepPlan> {
//!         Ok(StepPlan::single(Arch::new(vec![0; self.decisions])))
//!     }
//! }
//!
//! // In the plugin crate's lib.rs:
//! // nas_sdk::export_plugin!(nas_sdk::plugin::Registry::new().sampler::<FirstChoice>());
//! ```
#![warn(missing_docs)]

pub mod api;
#[doc(hidden)]
pub mod client;
pub mod elastic;
pub mod error;
pub mod ffi;
#[doc(hidden)]
pub mod guard;
pub mod host;
pub mod nn;
pub mod plugin;
pub mod rng;
pub mod tensor;
pub mod types;
pub mod version;

#[cfg(test)]
mod test_support;

pub use api::{Component, Generation, Generator, HostServices, Sampler, SearchSpace};
#[doc(hidden)]
pub use client::{GeneratorClient, SpaceClient};
pub use error::{ErrorKind, PluginError, PluginResult};
pub use host::{HostContext, SamplerClient};
pub use tensor::{NamedTensor, TensorHandle, TensorRef};
pub use types::{
    Arch, BnMode, Complexity, ComponentInfo, ComponentKind, CostTable, Decision, DeviceSpec,
    ForwardOptions, GenerateMode, HeldoutProbe, KeepMask, LossKind, LrOverride, Metric, PathArch,
    PathPlan, RunInfo, StepFeedback, StepInfo, StepPlan,
};
pub use version::{LIBTORCH_VERSION, SDK_VERSION};

/// Re-exports plugin crates commonly need alongside the SDK.
pub mod reexports {
    pub use abi_stable;
    pub use serde_json;
    pub use tch;
}
