//! The ABI itself: FFI-safe trait objects and the root module every plugin library exports.
#![allow(non_local_definitions)] // abi_stable 0.11's sabi_trait expansion
//!
//! Plugin authors do not implement these traits by hand: [`crate::export_plugin!`] wraps types
//! implementing [`crate::SearchSpace`], [`crate::Sampler`] and [`crate::Generator`]. Every method
//! returns an `RResult` so a panic can be reported instead of unwinding across the boundary.
//! Methods after `last_prefix_field` may be added in minor versions.

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RArc, RBox, RResult, RSlice, RStr, RString, RVec, Tuple2},
    StableAbi,
};

use crate::{
    Arch, Complexity, ComponentInfo, CostTable, Decision, DeviceSpec, ForwardOptions, GenerateMode,
    Metric, NamedTensor, PluginError, RunInfo, StepFeedback, StepInfo, StepPlan, TensorHandle,
    TensorRef,
};

/// FFI form of [`crate::SearchSpace`].
#[sabi_trait]
pub trait FfiSpace {
    /// See [`crate::SearchSpace::decisions`].
    fn decisions(&self) -> RResult<RVec<Decision>, PluginError>;
    /// See [`crate::SearchSpace::build`].
    fn build(&mut self, device: DeviceSpec) -> RResult<(), PluginError>;
    /// See [`crate::SearchSpace::parameters`].
    fn parameters(&self) -> RResult<RVec<NamedTensor>, PluginError>;
    /// See [`crate::SearchSpace::buffers`].
    fn buffers(&self) -> RResult<RVec<NamedTensor>, PluginError>;
    /// See [`crate::SearchSpace::forward`]; an empty `gates` slice means no gates.
    fn forward(
        &self,
        input: TensorRef<'_>,
        arch: &Arch,
        gates: RSlice<'_, TensorHandle>,
        options: ForwardOptions,
    ) -> RResult<TensorHandle, PluginError>;
    /// See [`crate::SearchSpace::active_parameters`].
    fn active_parameters(&self, arch: &Arch) -> RResult<RVec<u32>, PluginError>;
    /// See [`crate::SearchSpace::complexity`].
    fn complexity(&self, arch: &Arch) -> RResult<Complexity, PluginError>;
    /// See [`crate::SearchSpace::extremes`].
    fn extremes(&self, metric: Metric) -> RResult<Tuple2<Arch, Arch>, PluginError>;
    /// See [`crate::SearchSpace::cost_table`].
    fn cost_table(&self, metric: Metric) -> RResult<CostTable, PluginError>;
    /// See [`crate::SearchSpace::arch_to_text`].
    fn arch_to_text(&self, arch: &Arch) -> RResult<RString, PluginError>;
    /// See [`crate::SearchSpace::arch_from_text`].
    fn arch_from_text(&self, text: RStr<'_>) -> RResult<Arch, PluginError>;
    /// See [`crate::SearchSpace::export_subnet`].
    #[sabi(last_prefix_field)]
    fn export_subnet(&self, arch: &Arch) -> RResult<RVec<NamedTensor>, PluginError>;
    /// See [`crate::SearchSpace::subnet_config`] (added in SDK 0.2, after the last prefix field so
    /// a later 1.x can keep the vtable compatible).
    fn subnet_config(&self, arch: &Arch) -> RResult<RString, PluginError> {
        let _ = arch;
        RResult::RErr(PluginError::unsupported(
            "this space cannot describe a standalone subnet",
        ))
    }
}

/// FFI form of [`crate::Sampler`].
#[sabi_trait]
pub trait FfiSampler {
    /// See [`crate::Sampler::start`].
    fn start(&mut self, host: HostBox) -> RResult<(), PluginError>;
    /// See [`crate::Sampler::plan`].
    fn plan(&mut self, step: StepInfo) -> RResult<StepPlan, PluginError>;
    /// See [`crate::Sampler::observe`].
    fn observe(&mut self, feedback: &StepFeedback) -> RResult<(), PluginError>;
    /// See [`crate::Sampler::save_state`].
    fn save_state(&self) -> RResult<RString, PluginError>;
    /// See [`crate::Sampler::load_state`].
    #[sabi(last_prefix_field)]
    fn load_state(&mut self, state: RStr<'_>) -> RResult<(), PluginError>;
}

/// FFI form of [`crate::Generation`].
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiGeneration {
    /// The arch.
    pub arch: Arch,
    /// One gate per decision.
    pub gates: RVec<TensorHandle>,
    /// Extra loss term, if any.
    pub extra_loss: abi_stable::std_types::ROption<TensorHandle>,
}

/// FFI form of [`crate::Generator`].
#[sabi_trait]
pub trait FfiGenerator {
    /// See [`crate::Generator::start`].
    fn start(&mut self, host: HostBox, device: DeviceSpec) -> RResult<(), PluginError>;
    /// See [`crate::Generator::generate`].
    fn generate(
        &mut self,
        target: TensorRef<'_>,
        mode: GenerateMode,
    ) -> RResult<FfiGeneration, PluginError>;
    /// See [`crate::Generator::parameters`].
    fn parameters(&self) -> RResult<RVec<NamedTensor>, PluginError>;
    /// See [`crate::Generator::save_state`].
    fn save_state(&self) -> RResult<RString, PluginError>;
    /// See [`crate::Generator::load_state`].
    #[sabi(last_prefix_field)]
    fn load_state(&mut self, state: RStr<'_>) -> RResult<(), PluginError>;
}

/// FFI form of [`crate::HostServices`] (implemented by the host, called by plugins).
#[sabi_trait]
pub trait FfiHost: Clone {
    /// See [`crate::HostServices::run_info`].
    fn run_info(&self) -> RunInfo;
    /// See [`crate::HostServices::decisions`].
    fn decisions(&self) -> RResult<RVec<Decision>, PluginError>;
    /// See [`crate::HostServices::complexity`].
    fn complexity(&self, arch: &Arch) -> RResult<Complexity, PluginError>;
    /// See [`crate::HostServices::extremes`].
    fn extremes(&self, metric: Metric) -> RResult<Tuple2<Arch, Arch>, PluginError>;
    /// See [`crate::HostServices::cost_table`].
    fn cost_table(&self, metric: Metric) -> RResult<CostTable, PluginError>;
    /// See [`crate::HostServices::create_sampler`].
    #[sabi(last_prefix_field)]
    fn create_sampler(&self, name: RStr<'_>, config: RStr<'_>) -> RResult<SamplerBox, PluginError>;
}

/// An owned search-space object from a plugin.
pub type SpaceBox = FfiSpace_TO<'static, RBox<()>>;
/// An owned sampler object from a plugin.
pub type SamplerBox = FfiSampler_TO<'static, RBox<()>>;
/// An owned generator object from a plugin.
pub type GeneratorBox = FfiGenerator_TO<'static, RBox<()>>;
/// A shared host-services object.
pub type HostBox = FfiHost_TO<'static, RArc<()>>;

/// The root module of a plugin library: its components and their constructors.
///
/// Constructors take the component name and its config as a JSON object string.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// The library's components.
    pub components: extern "C" fn() -> RVec<ComponentInfo>,
    /// Builds the search space `name` from a JSON config.
    pub new_space:
        extern "C" fn(name: RStr<'_>, config: RStr<'_>) -> RResult<SpaceBox, PluginError>,
    /// Builds the sampler `name` from a JSON config.
    pub new_sampler:
        extern "C" fn(name: RStr<'_>, config: RStr<'_>) -> RResult<SamplerBox, PluginError>,
    /// Builds the generator `name` from a JSON config.
    #[sabi(last_prefix_field)]
    pub new_generator:
        extern "C" fn(name: RStr<'_>, config: RStr<'_>) -> RResult<GeneratorBox, PluginError>,
}

/// abi_stable's own version string for the root module. Only the major part is compared
/// (abi_stable refuses another major); the host checks the SDK's full semver itself, before this,
/// from [`crate::version::METADATA_SYMBOL`].
pub const ROOT_MODULE_VERSION: &str = "0.0.0";

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "nas_plugin";
    const NAME: &'static str = "nas_plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings {
        version: RStr::from_str(ROOT_MODULE_VERSION),
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_module_version_tracks_sdk_major() {
        let sdk_major = crate::SDK_VERSION.split('.').next().unwrap();
        let root_major = super::ROOT_MODULE_VERSION.split('.').next().unwrap();
        assert_eq!(
            sdk_major, root_major,
            "bump ROOT_MODULE_VERSION with the SDK major"
        );
    }
}
