//! What a plugin sees of the host: [`HostContext`] (the host's services, passed to
//! [`crate::Sampler::start`] and [`crate::Generator::start`]) and [`SamplerClient`] (a sampler the
//! host created for a wrapper sampler).
//!
//! Both are typed wrappers over FFI objects, with `tch::Tensor` and `Result` again; they depend on
//! [`crate::ffi`] only. Wrapping an in-process implementation (`HostContext::from_services`,
//! `SamplerClient::from_sampler`) needs the adapters of [`crate::guard`] and lives in
//! [`crate::client`].

use abi_stable::std_types::RStr;

use crate::{
    ffi::{HostBox, SamplerBox},
    Arch, Complexity, CostTable, Decision, Metric, PluginResult, RunInfo, StepFeedback, StepInfo,
    StepPlan,
};

/// A sampler, whether loaded from a plugin or built in-process: what
/// [`HostContext::create_sampler`] returns to a wrapper sampler for its base sampler.
pub struct SamplerClient {
    inner: SamplerBox,
}

impl SamplerClient {
    /// Wraps an FFI object returned by a plugin (the host's side).
    #[doc(hidden)]
    pub fn from_box(inner: SamplerBox) -> Self {
        SamplerClient { inner }
    }
    /// The FFI object (to hand it across the boundary again).
    #[doc(hidden)]
    pub fn into_box(self) -> SamplerBox {
        self.inner
    }
    /// See [`Sampler::start`](crate::Sampler::start).
    pub fn start(&mut self, host: HostContext) -> PluginResult<()> {
        self.inner.start(host.inner).into_result()
    }
    /// See [`Sampler::plan`](crate::Sampler::plan).
    pub fn plan(&mut self, step: &StepInfo) -> PluginResult<StepPlan> {
        self.inner.plan(*step).into_result()
    }
    /// See [`Sampler::observe`](crate::Sampler::observe).
    pub fn observe(&mut self, feedback: &StepFeedback) -> PluginResult<()> {
        self.inner.observe(feedback).into_result()
    }
    /// See [`Sampler::save_state`](crate::Sampler::save_state).
    pub fn save_state(&self) -> PluginResult<String> {
        self.inner
            .save_state()
            .into_result()
            .map(|s| s.into_string())
    }
    /// See [`Sampler::load_state`](crate::Sampler::load_state).
    pub fn load_state(&mut self, state: &str) -> PluginResult<()> {
        self.inner.load_state(RStr::from_str(state)).into_result()
    }
}

/// The host's services as a sampler or generator sees them (passed to `start`). Cheap to clone.
///
/// In unit tests, [`crate::testing::FakeHost::context`] makes one.
#[derive(Clone)]
pub struct HostContext {
    inner: HostBox,
}

impl HostContext {
    /// Wraps the FFI object the host passed in (the SDK's side of `start`).
    #[doc(hidden)]
    pub fn from_box(inner: HostBox) -> Self {
        HostContext { inner }
    }

    /// The FFI object, to pass it across the boundary.
    pub(crate) fn into_box(self) -> HostBox {
        self.inner
    }

    /// See [`HostServices::run_info`](crate::HostServices::run_info).
    pub fn run_info(&self) -> RunInfo {
        self.inner.run_info()
    }
    /// See [`HostServices::decisions`](crate::HostServices::decisions).
    pub fn decisions(&self) -> PluginResult<Vec<Decision>> {
        self.inner.decisions().into_result().map(Into::into)
    }
    /// See [`HostServices::complexity`](crate::HostServices::complexity).
    pub fn complexity(&self, arch: &Arch) -> PluginResult<Complexity> {
        self.inner.complexity(arch).into_result()
    }
    /// See [`HostServices::extremes`](crate::HostServices::extremes).
    pub fn extremes(&self, metric: Metric) -> PluginResult<(Arch, Arch)> {
        self.inner
            .extremes(metric)
            .into_result()
            .map(|pair| pair.into_tuple())
    }
    /// See [`HostServices::cost_table`](crate::HostServices::cost_table).
    pub fn cost_table(&self, metric: Metric) -> PluginResult<CostTable> {
        self.inner.cost_table(metric).into_result()
    }
    /// See [`HostServices::create_sampler`](crate::HostServices::create_sampler).
    pub fn create_sampler(&self, name: &str, config: &str) -> PluginResult<SamplerClient> {
        self.inner
            .create_sampler(RStr::from_str(name), RStr::from_str(config))
            .into_result()
            .map(SamplerClient::from_box)
    }
}
