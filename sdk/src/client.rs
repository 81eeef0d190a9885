//! The host's side of the boundary: typed wrappers over the FFI objects of spaces and generators,
//! with `tch::Tensor` and `Result` again, and the constructors that put an in-process
//! implementation behind the FFI (the host's own services, test doubles, built-in components).
//!
//! Plugin authors need none of this: a sampler or generator is handed a [`HostContext`], and a
//! wrapper sampler gets its base sampler as a [`SamplerClient`] (both in [`crate::host`], and
//! re-exported here so their old paths keep working).

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, RSlice, RStr},
};
use tch::{Device, Tensor};

pub use crate::host::{HostContext, SamplerClient};
use crate::{
    api::{Generation, Generator, HostServices, Sampler, SearchSpace},
    ffi::{FfiGenerator_TO, FfiHost_TO, FfiSampler_TO, FfiSpace_TO, GeneratorBox, SpaceBox},
    guard::{GeneratorAdapter, HostAdapter, SamplerAdapter, SpaceAdapter},
    Arch, Complexity, Component, CostTable, Decision, DeviceSpec, ForwardOptions, GenerateMode,
    Metric, NamedTensor, PluginResult, TensorHandle, TensorRef,
};

fn unnamed(list: abi_stable::std_types::RVec<NamedTensor>) -> Vec<(String, Tensor)> {
    list.into_iter()
        .map(|named| (named.name.into_string(), named.tensor.into_tensor()))
        .collect()
}

/// A search space, whether loaded from a plugin or built in-process.
pub struct SpaceClient {
    inner: SpaceBox,
}

impl SpaceClient {
    /// Wraps an FFI object returned by a plugin.
    pub fn from_box(inner: SpaceBox) -> Self {
        SpaceClient { inner }
    }

    /// Wraps an in-process implementation (tests, built-in components).
    pub fn from_space<S: SearchSpace + Component>(space: S) -> Self {
        let adapter = SpaceAdapter {
            name: S::NAME,
            inner: space,
        };
        SpaceClient {
            inner: FfiSpace_TO::from_value(adapter, TD_Opaque),
        }
    }

    /// See [`SearchSpace::decisions`].
    pub fn decisions(&self) -> PluginResult<Vec<Decision>> {
        self.inner.decisions().into_result().map(Into::into)
    }
    /// See [`SearchSpace::build`].
    pub fn build(&mut self, device: Device) -> PluginResult<()> {
        self.inner
            .build(DeviceSpec::from_device(device))
            .into_result()
    }
    /// See [`SearchSpace::parameters`].
    pub fn parameters(&self) -> PluginResult<Vec<(String, Tensor)>> {
        self.inner.parameters().into_result().map(unnamed)
    }
    /// See [`SearchSpace::buffers`].
    pub fn buffers(&self) -> PluginResult<Vec<(String, Tensor)>> {
        self.inner.buffers().into_result().map(unnamed)
    }
    /// See [`SearchSpace::forward`].
    pub fn forward(
        &self,
        input: &Tensor,
        arch: &Arch,
        gates: Option<&[Tensor]>,
        options: &ForwardOptions,
    ) -> PluginResult<Tensor> {
        let gates: Vec<TensorHandle> = gates
            .unwrap_or(&[])
            .iter()
            .map(|g| TensorHandle::new(g.shallow_clone()))
            .collect();
        self.inner
            .forward(
                TensorRef::from_tensor(input),
                arch,
                RSlice::from_slice(&gates),
                *options,
            )
            .into_result()
            .map(TensorHandle::into_tensor)
    }
    /// See [`SearchSpace::active_parameters`].
    pub fn active_parameters(&self, arch: &Arch) -> PluginResult<Vec<usize>> {
        self.inner
            .active_parameters(arch)
            .into_result()
            .map(|list| list.into_iter().map(|i| i as usize).collect())
    }
    /// See [`SearchSpace::complexity`].
    pub fn complexity(&self, arch: &Arch) -> PluginResult<Complexity> {
        self.inner.complexity(arch).into_result()
    }
    /// See [`SearchSpace::extremes`].
    pub fn extremes(&self, metric: Metric) -> PluginResult<(Arch, Arch)> {
        self.inner
            .extremes(metric)
            .into_result()
            .map(|pair| pair.into_tuple())
    }
    /// See [`SearchSpace::cost_table`].
    pub fn cost_table(&self, metric: Metric) -> PluginResult<CostTable> {
        self.inner.cost_table(metric).into_result()
    }
    /// See [`SearchSpace::arch_to_text`].
    pub fn arch_to_text(&self, arch: &Arch) -> PluginResult<String> {
        self.inner
            .arch_to_text(arch)
            .into_result()
            .map(|s| s.into_string())
    }
    /// See [`SearchSpace::arch_from_text`].
    pub fn arch_from_text(&self, text: &str) -> PluginResult<Arch> {
        self.inner
            .arch_from_text(RStr::from_str(text))
            .into_result()
    }
    /// See [`SearchSpace::export_subnet`].
    pub fn export_subnet(&self, arch: &Arch) -> PluginResult<Vec<(String, Tensor)>> {
        self.inner.export_subnet(arch).into_result().map(unnamed)
    }
    /// See [`SearchSpace::subnet_config`].
    pub fn subnet_config(&self, arch: &Arch) -> PluginResult<String> {
        self.inner
            .subnet_config(arch)
            .into_result()
            .map(|text| text.into())
    }
}

/// A generator, whether loaded from a plugin or built in-process.
pub struct GeneratorClient {
    inner: GeneratorBox,
}

impl GeneratorClient {
    /// Wraps an FFI object returned by a plugin.
    pub fn from_box(inner: GeneratorBox) -> Self {
        GeneratorClient { inner }
    }
    /// Wraps an in-process implementation.
    pub fn from_generator<G: Generator + Component>(generator: G) -> Self {
        let adapter = GeneratorAdapter {
            name: G::NAME,
            inner: generator,
        };
        GeneratorClient {
            inner: FfiGenerator_TO::from_value(adapter, TD_Opaque),
        }
    }
    /// See [`Generator::start`].
    pub fn start(&mut self, host: HostContext, device: Device) -> PluginResult<()> {
        self.inner
            .start(host.into_box(), DeviceSpec::from_device(device))
            .into_result()
    }
    /// See [`Generator::generate`].
    pub fn generate(&mut self, target: &Tensor, mode: GenerateMode) -> PluginResult<Generation> {
        let generation = self
            .inner
            .generate(TensorRef::from_tensor(target), mode)
            .into_result()?;
        Ok(Generation {
            arch: generation.arch,
            gates: generation
                .gates
                .into_iter()
                .map(TensorHandle::into_tensor)
                .collect(),
            extra_loss: generation
                .extra_loss
                .into_option()
                .map(TensorHandle::into_tensor),
        })
    }
    /// See [`Generator::parameters`].
    pub fn parameters(&self) -> PluginResult<Vec<(String, Tensor)>> {
        self.inner.parameters().into_result().map(unnamed)
    }
    /// See [`Generator::save_state`].
    pub fn save_state(&self) -> PluginResult<String> {
        self.inner
            .save_state()
            .into_result()
            .map(|s| s.into_string())
    }
    /// See [`Generator::load_state`].
    pub fn load_state(&mut self, state: &str) -> PluginResult<()> {
        self.inner.load_state(RStr::from_str(state)).into_result()
    }
}

impl SamplerClient {
    /// Wraps an in-process implementation.
    pub fn from_sampler<S: Sampler + Component>(sampler: S) -> Self {
        let adapter = SamplerAdapter {
            name: S::NAME,
            inner: sampler,
        };
        SamplerClient::from_box(FfiSampler_TO::from_value(adapter, TD_Opaque))
    }
}

impl HostContext {
    /// Wraps a host implementation (the host itself, and test doubles).
    pub fn from_services<H: HostServices>(services: H) -> Self {
        let adapter = HostAdapter {
            inner: std::rc::Rc::new(services),
        };
        HostContext::from_box(FfiHost_TO::from_ptr(RArc::new(adapter), TD_Opaque))
    }
}
