//! # nas-sdk: the plugin contract of the `nas` one-shot NAS platform
//!
//! A plugin is a `cdylib` crate that depends on this SDK (and `abi_stable`, which the export macro
//! names) and exports one or more **components**:
//!
//! - a **search space** ([`SearchSpace`]): decisions, a weight-sharing supernet, exact complexity;
//! - a **sampler** ([`Sampler`]): the training policy, one [`StepPlan`] per optimizer step;
//! - a **generator** ([`Generator`]): target complexity in, arch and differentiable gates out.
//!
//! The contract is stated once, in [`api`] (what a plugin implements) and [`ffi`] (the ABI it
//! becomes); imports between the SDK's modules go one way only, as in abi_stable's examples.
//!
//! What a plugin author uses:
//!
//! | module | role |
//! |---|---|
//! | [`api`] | the traits to implement, in plain Rust with `tch::Tensor`: [`Component`] (or [`ConfiguredComponent`] for a serde config), [`SearchSpace`], [`Sampler`], [`Generator`] |
//! | [`host`] | what a sampler or generator calls: [`HostContext`], and [`SamplerClient`] for a base sampler |
//! | [`types`], [`error`] | the data that crosses the boundary, and [`PluginError`] |
//! | [`nn`], [`elastic`] | supernet building blocks: a parameter store, plain and elastic (sliced) layers, an exact complexity counter |
//! | [`rng`] | seeded random streams keyed by (seed, step) |
//! | [`plugin`] | the component [`plugin::Registry`], [`export_plugin!`] and config parsing |
//! | [`testing`] | [`testing::FakeHost`], the host's services for unit tests |
//! | [`reexports`] | `tch`, `abi_stable` and `serde_json`, the versions the SDK was built with |
//!
//! The rest is the boundary itself and the host's side of it: [`ffi`] (`#[sabi_trait]` objects and
//! the root module, checked at load time), [`tensor`] (tensors cross as [`TensorHandle`] /
//! [`TensorRef`] over the one libtorch that host and plugins share; see there for ownership),
//! [`version`] (what the host checks before it trusts a library), and two modules hidden from
//! these docs: `guard` (adapters from [`api`] to [`ffi`] that catch panics in every call) and
//! `client` (the host's typed wrappers over loaded spaces and generators).
//!
//! Each module imports only modules listed before it: the leaves (`types`, `error`, `tensor`,
//! `version`, `rng`, config parsing), `ffi`, `host`, `api`, `guard`, then `client`, `plugin` and
//! `testing`; and `nn` before `elastic`.
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
mod config;
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
pub mod testing;
pub mod types;
pub mod version;

#[cfg(test)]
mod test_support;

pub use api::{
    Component, ConfiguredComponent, Generation, Generator, HostServices, Sampler, SearchSpace,
};
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
