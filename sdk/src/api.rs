//! The traits plugin authors implement: plain Rust with `tch::Tensor` and `Result`.
//!
//! The SDK turns each implementation into an FFI-safe object (see [`crate::ffi`]) that catches
//! panics in every call, so a plugin never needs `unsafe` or `extern "C"` code.

use serde::{de::DeserializeOwned, Serialize};
use tch::{Device, Tensor};

use crate::{
    config::parse_config,
    host::{HostContext, SamplerClient},
    Arch, Complexity, CostTable, Decision, ForwardOptions, GenerateMode, Metric, PluginError,
    PluginResult, StepFeedback, StepInfo, StepPlan,
};

/// Static facts about a component and how to build it from its JSON config.
///
/// A component whose config is a serde type implements [`ConfiguredComponent`] instead and gets
/// this trait from the SDK. Implement `Component` by hand only for configs that are not one serde
/// type with a `Default` (e.g. presets, see [`crate::plugin::parse_preset_config`]).
///
/// ```
/// use nas_sdk::{Component, PluginResult};
/// struct Fixed;
/// impl Component for Fixed {
///     const NAME: &'static str = "fixed";
///     const VERSION: &'static str = "0.1.0";
///     const DESCRIPTION: &'static str = "always the same arch";
///     fn default_config() -> serde_json::Value { serde_json::json!({}) }
///     fn from_config(_config: &str) -> PluginResult<Self> { Ok(Fixed) }
/// }
/// assert_eq!(Fixed::NAME, "fixed");
/// ```
pub trait Component: Sized + 'static {
    /// Name users refer to the component by.
    const NAME: &'static str;
    /// The component's version.
    const VERSION: &'static str;
    /// One line for `nas plugins list`.
    const DESCRIPTION: &'static str;
    /// The full default config; [`Component::from_config`] given `{}` must use exactly these values.
    fn default_config() -> serde_json::Value;
    /// Builds the component from a JSON object (fields missing from it take their defaults).
    fn from_config(config: &str) -> PluginResult<Self>;
}

/// A [`Component`] configured by one serde type: implement this and the SDK implements
/// [`Component`] for you.
///
/// - [`Component::default_config`] is `Self::Config::default()` serialised, so `Default` is the
///   one place the defaults are written down;
/// - [`Component::from_config`] is [`ConfiguredComponent::parse`] (by default
///   [`crate::plugin::parse_config`]: empty text means `{}`, errors read
///   ``config of `NAME`: ...``), then [`ConfiguredComponent::from_parsed`], where the component
///   checks ranges and builds itself.
///
/// Give the config type `#[serde(default, deny_unknown_fields)]` so fields left out take their
/// defaults and misspelt ones are refused.
///
/// ```
/// use nas_sdk::{Component, ConfiguredComponent, PluginError, PluginResult};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// #[serde(default, deny_unknown_fields)]
/// struct Config { paths: u32 }
/// impl Default for Config {
///     fn default() -> Self { Config { paths: 2 } }
/// }
///
/// struct MyComponent { paths: u32 }
///
/// impl ConfiguredComponent for MyComponent {
///     const NAME: &'static str = "mine";
///     const VERSION: &'static str = "0.1.0";
///     const DESCRIPTION: &'static str = "an example";
///     type Config = Config;
///     fn from_parsed(config: Config) -> PluginResult<Self> {
///         if config.paths == 0 {
///             return Err(PluginError::config("mine: field `paths` must be at least 1"));
///         }
///         Ok(MyComponent { paths: config.paths })
///     }
/// }
///
/// assert_eq!(MyComponent::default_config().to_string(), r#"{"paths":2}"#);
/// assert_eq!(MyComponent::from_config("").unwrap().paths, 2);
/// assert_eq!(MyComponent::from_config(r#"{"paths": 3}"#).unwrap().paths, 3);
/// let err = MyComponent::from_config(r#"{"path": 3}"#).err().unwrap();
/// assert!(err.message.starts_with("config of `mine`: unknown field `path`"), "{err}");
/// assert!(MyComponent::from_config(r#"{"paths": 0}"#).is_err());
/// ```
pub trait ConfiguredComponent: Sized + 'static {
    /// Name users refer to the component by ([`Component::NAME`]).
    const NAME: &'static str;
    /// The component's version ([`Component::VERSION`]).
    const VERSION: &'static str;
    /// One line for `nas plugins list` ([`Component::DESCRIPTION`]).
    const DESCRIPTION: &'static str;
    /// The config; its `Default` is the component's default config.
    type Config: Serialize + DeserializeOwned + Default;
    /// Builds the component from its parsed config (check value ranges here).
    fn from_parsed(config: Self::Config) -> PluginResult<Self>;
    /// Parses the config text. The default is [`crate::plugin::parse_config`] with
    /// [`ConfiguredComponent::NAME`]; override it for checks that need the text itself (e.g.
    /// which fields the user gave).
    fn parse(config: &str) -> PluginResult<Self::Config> {
        parse_config(<Self as ConfiguredComponent>::NAME, config)
    }
}

impl<T: ConfiguredComponent> Component for T {
    const NAME: &'static str = <T as ConfiguredComponent>::NAME;
    const VERSION: &'static str = <T as ConfiguredComponent>::VERSION;
    const DESCRIPTION: &'static str = <T as ConfiguredComponent>::DESCRIPTION;
    fn default_config() -> serde_json::Value {
        serde_json::to_value(T::Config::default()).expect("config serialises")
    }
    fn from_config(config: &str) -> PluginResult<Self> {
        T::from_parsed(T::parse(config)?)
    }
}

/// A search space: its decisions, its supernet, and the exact complexity of every arch.
pub trait SearchSpace: 'static {
    /// The decisions, in arch order.
    fn decisions(&self) -> Vec<Decision>;
    /// Creates the supernet's parameters and buffers on `device` (called once, before anything
    /// that needs weights). Initialisation draws from libtorch's generator, which the host seeds.
    fn build(&mut self, device: Device) -> PluginResult<()>;
    /// All trainable parameters, in a fixed order, as shallow clones (in-place updates by the host
    /// change the supernet).
    fn parameters(&self) -> Vec<(String, Tensor)>;
    /// All buffers (BN running statistics), in a fixed order, as shallow clones.
    fn buffers(&self) -> Vec<(String, Tensor)>;
    /// Logits of `arch` for `input` (`[batch, channels, height, width]` -> `[batch, classes]`).
    ///
    /// `gates`, when given, holds one tensor per decision: the mask-mapped policy `p' = M p` of
    /// entangled decisions, or the one-hot policy of path choices. The space multiplies the
    /// corresponding activations by it so gradients reach a generator; all-ones gates must not
    /// change the result.
    fn forward(
        &self,
        input: &Tensor,
        arch: &Arch,
        gates: Option<&[Tensor]>,
        options: &ForwardOptions,
    ) -> PluginResult<Tensor>;
    /// Indices (into [`SearchSpace::parameters`]) of the parameters `arch` uses; the host's
    /// inactive-parameter rule leaves all others untouched.
    fn active_parameters(&self, arch: &Arch) -> PluginResult<Vec<usize>>;
    /// Exact complexity of the active subnet (a pure function of the arch).
    fn complexity(&self, arch: &Arch) -> PluginResult<Complexity>;
    /// The arch of smallest and of largest complexity under `metric`.
    fn extremes(&self, metric: Metric) -> PluginResult<(Arch, Arch)>;
    /// The additive per-option cost table; spaces without one return `Unsupported`.
    fn cost_table(&self, metric: Metric) -> PluginResult<CostTable> {
        let _ = metric;
        Err(PluginError::unsupported(
            "this space has no additive cost table",
        ))
    }
    /// The arch in the space's text form (e.g. NAS-Bench-201's `|op~0|+|...|`).
    fn arch_to_text(&self, arch: &Arch) -> PluginResult<String>;
    /// Parses the space's text form (and, by convention, a JSON list of choice indices).
    fn arch_from_text(&self, text: &str) -> PluginResult<Arch>;
    /// The standalone subnet's weights with plain (sliced) shapes and conventional names.
    fn export_subnet(&self, arch: &Arch) -> PluginResult<Vec<(String, Tensor)>> {
        let _ = arch;
        Err(PluginError::unsupported(
            "this space cannot export subnets yet",
        ))
    }
    /// The JSON config of this space with `arch` as its only arch: every decision narrowed to the
    /// chosen option, so the built space's parameters and buffers are exactly the tensors of
    /// [`SearchSpace::export_subnet`] (same names and shapes). The host builds it, loads the
    /// exported tensors and traces its forward into a standalone TorchScript module. Spaces
    /// without one are traced from the supernet itself.
    fn subnet_config(&self, arch: &Arch) -> PluginResult<String> {
        let _ = arch;
        Err(PluginError::unsupported(
            "this space cannot describe a standalone subnet",
        ))
    }
}

/// A training policy: which subnets each step trains, with which loss, LR and optimizer state.
///
/// Draw randomness from [`crate::rng::stream`] keyed by the run seed and the step, so a resumed
/// or data-parallel run plans exactly the same steps.
pub trait Sampler: 'static {
    /// Called once before the first plan, with the host's services (space facts, complexity,
    /// other samplers by name).
    fn start(&mut self, host: HostContext) -> PluginResult<()>;
    /// The plan of one step.
    fn plan(&mut self, step: &StepInfo) -> PluginResult<StepPlan>;
    /// What happened in the step just planned.
    fn observe(&mut self, feedback: &StepFeedback) -> PluginResult<()> {
        let _ = feedback;
        Ok(())
    }
    /// State for a checkpoint (JSON). Stateless samplers return `{}`.
    fn save_state(&self) -> PluginResult<String> {
        Ok("{}".to_string())
    }
    /// Restores [`Sampler::save_state`]'s output.
    fn load_state(&mut self, state: &str) -> PluginResult<()> {
        let _ = state;
        Ok(())
    }
}

/// What a generator returns for one target.
pub struct Generation {
    /// The generated arch.
    pub arch: Arch,
    /// One gate tensor per decision (see [`SearchSpace::forward`]), carrying the policy's gradient.
    pub gates: Vec<Tensor>,
    /// An extra loss term the host adds to the path's loss (ShiftNAS's complexity loss), if any.
    pub extra_loss: Option<Tensor>,
}

/// An architecture generator: target complexity in, arch and differentiable gates out.
pub trait Generator: 'static {
    /// Called once: host services and the device to create parameters on.
    fn start(&mut self, host: HostContext, device: Device) -> PluginResult<()>;
    /// The arch for `target` (a scalar tensor, so gradients can flow into it).
    fn generate(&mut self, target: &Tensor, mode: GenerateMode) -> PluginResult<Generation>;
    /// Trainable parameters (the host optimizes them with the generator's own optimizer).
    fn parameters(&self) -> Vec<(String, Tensor)>;
    /// Non-tensor state for a checkpoint (JSON); parameters are saved by the host.
    fn save_state(&self) -> PluginResult<String> {
        Ok("{}".to_string())
    }
    /// Restores [`Generator::save_state`]'s output.
    fn load_state(&mut self, state: &str) -> PluginResult<()> {
        let _ = state;
        Ok(())
    }
}

/// Services the host offers to samplers and generators. Implemented by the host; plugins use it
/// through [`HostContext`].
pub trait HostServices: 'static {
    /// Seed, step counts, rank.
    fn run_info(&self) -> crate::RunInfo;
    /// The space's decisions.
    fn decisions(&self) -> Vec<Decision>;
    /// Exact complexity of an arch (cached by the host).
    fn complexity(&self, arch: &Arch) -> PluginResult<Complexity>;
    /// The space's smallest and largest arch under `metric`.
    fn extremes(&self, metric: Metric) -> PluginResult<(Arch, Arch)>;
    /// The space's additive cost table.
    fn cost_table(&self, metric: Metric) -> PluginResult<CostTable>;
    /// Loads another sampler by name through the host's plugin search path (for wrappers such
    /// as CaLR + MS over a base sampler).
    fn create_sampler(&self, name: &str, config: &str) -> PluginResult<SamplerClient>;
}
