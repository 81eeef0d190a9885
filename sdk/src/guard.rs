//! Adapters from the author-facing traits to the FFI traits. Each call runs under
//! `catch_unwind`: a panic becomes a [`PluginError`] of kind [`ErrorKind::Panic`] naming the
//! component and the method, never an unwind across `extern "C"` (which would abort the host).

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec, Tuple2};

use crate::{
    api::{Generator, HostServices, Sampler, SearchSpace},
    ffi::{FfiGeneration, FfiGenerator, FfiHost, FfiSampler, FfiSpace, HostBox, SamplerBox},
    host::{HostContext, SamplerClient},
    Arch, Complexity, CostTable, Decision, DeviceSpec, ErrorKind, ForwardOptions, GenerateMode,
    Metric, NamedTensor, PluginError, PluginResult, RunInfo, StepFeedback, StepInfo, StepPlan,
    TensorHandle, TensorRef,
};

/// Runs `body`, turning a panic into an error naming `component` and `method`.
pub fn guard<T>(
    component: &str,
    method: &str,
    body: impl FnOnce() -> PluginResult<T>,
) -> RResult<T, PluginError> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => RResult::ROk(value),
        Ok(Err(err)) => RResult::RErr(err),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_string());
            RResult::RErr(PluginError::new(
                ErrorKind::Panic,
                format!("`{component}` panicked in {method}: {message}"),
            ))
        }
    }
}

fn named(list: Vec<(String, tch::Tensor)>) -> RVec<NamedTensor> {
    list.into_iter()
        .map(|(name, tensor)| NamedTensor::new(name, tensor))
        .collect()
}

/// A [`SearchSpace`] behind the FFI.
pub struct SpaceAdapter<S> {
    /// Component name, for panic messages.
    pub name: &'static str,
    /// The implementation.
    pub inner: S,
}

impl<S: SearchSpace> FfiSpace for SpaceAdapter<S> {
    fn decisions(&self) -> RResult<RVec<Decision>, PluginError> {
        guard(self.name, "SearchSpace::decisions", || {
            Ok(self.inner.decisions().into())
        })
    }
    fn build(&mut self, device: DeviceSpec) -> RResult<(), PluginError> {
        let name = self.name;
        guard(name, "SearchSpace::build", || {
            self.inner.build(device.to_device())
        })
    }
    fn parameters(&self) -> RResult<RVec<NamedTensor>, PluginError> {
        guard(self.name, "SearchSpace::parameters", || {
            Ok(named(self.inner.parameters()))
        })
    }
    fn buffers(&self) -> RResult<RVec<NamedTensor>, PluginError> {
        guard(self.name, "SearchSpace::buffers", || {
            Ok(named(self.inner.buffers()))
        })
    }
    fn forward(
        &self,
        input: TensorRef<'_>,
        arch: &Arch,
        gates: RSlice<'_, TensorHandle>,
        options: ForwardOptions,
    ) -> RResult<TensorHandle, PluginError> {
        guard(self.name, "SearchSpace::forward", || {
            let gates: Vec<tch::Tensor> = gates.iter().map(|g| g.to_tensor()).collect();
            let gates = (!gates.is_empty()).then_some(gates.as_slice());
            input
                .with(|x| self.inner.forward(x, arch, gates, &options))
                .map(TensorHandle::new)
        })
    }
    fn active_parameters(&self, arch: &Arch) -> RResult<RVec<u32>, PluginError> {
        guard(self.name, "SearchSpace::active_parameters", || {
            Ok(self
                .inner
                .active_parameters(arch)?
                .into_iter()
                .map(|i| i as u32)
                .collect())
        })
    }
    fn complexity(&self, arch: &Arch) -> RResult<Complexity, PluginError> {
        guard(self.name, "SearchSpace::complexity", || {
            self.inner.complexity(arch)
        })
    }
    fn extremes(&self, metric: Metric) -> RResult<Tuple2<Arch, Arch>, PluginError> {
        guard(self.name, "SearchSpace::extremes", || {
            let (low, high) = self.inner.extremes(metric)?;
            Ok(Tuple2(low, high))
        })
    }
    fn cost_table(&self, metric: Metric) -> RResult<CostTable, PluginError> {
        guard(self.name, "SearchSpace::cost_table", || {
            self.inner.cost_table(metric)
        })
    }
    fn arch_to_text(&self, arch: &Arch) -> RResult<RString, PluginError> {
        guard(self.name, "SearchSpace::arch_to_text", || {
            self.inner.arch_to_text(arch).map(RString::from)
        })
    }
    fn arch_from_text(&self, text: RStr<'_>) -> RResult<Arch, PluginError> {
        guard(self.name, "SearchSpace::arch_from_text", || {
            self.inner.arch_from_text(text.as_str())
        })
    }
    fn export_subnet(&self, arch: &Arch) -> RResult<RVec<NamedTensor>, PluginError> {
        guard(self.name, "SearchSpace::export_subnet", || {
            Ok(named(self.inner.export_subnet(arch)?))
        })
    }
    fn subnet_config(&self, arch: &Arch) -> RResult<RString, PluginError> {
        guard(self.name, "SearchSpace::subnet_config", || {
            self.inner.subnet_config(arch).map(RString::from)
        })
    }
}

/// A [`Sampler`] behind the FFI.
pub struct SamplerAdapter<S> {
    /// Component name, for panic messages.
    pub name: &'static str,
    /// The implementation.
    pub inner: S,
}

impl<S: Sampler> FfiSampler for SamplerAdapter<S> {
    fn start(&mut self, host: HostBox) -> RResult<(), PluginError> {
        let name = self.name;
        guard(name, "Sampler::start", || {
            self.inner.start(HostContext::from_box(host))
        })
    }
    fn plan(&mut self, step: StepInfo) -> RResult<StepPlan, PluginError> {
        let name = self.name;
        guard(name, "Sampler::plan", || self.inner.plan(&step))
    }
    fn observe(&mut self, feedback: &StepFeedback) -> RResult<(), PluginError> {
        let name = self.name;
        guard(name, "Sampler::observe", || self.inner.observe(feedback))
    }
    fn save_state(&self) -> RResult<RString, PluginError> {
        guard(self.name, "Sampler::save_state", || {
            self.inner.save_state().map(RString::from)
        })
    }
    fn load_state(&mut self, state: RStr<'_>) -> RResult<(), PluginError> {
        let name = self.name;
        guard(name, "Sampler::load_state", || {
            self.inner.load_state(state.as_str())
        })
    }
}

/// A [`Generator`] behind the FFI.
pub struct GeneratorAdapter<G> {
    /// Component name, for panic messages.
    pub name: &'static str,
    /// The implementation.
    pub inner: G,
}

impl<G: Generator> FfiGenerator for GeneratorAdapter<G> {
    fn start(&mut self, host: HostBox, device: DeviceSpec) -> RResult<(), PluginError> {
        let name = self.name;
        guard(name, "Generator::start", || {
            self.inner
                .start(HostContext::from_box(host), device.to_device())
        })
    }
    fn generate(
        &mut self,
        target: TensorRef<'_>,
        mode: GenerateMode,
    ) -> RResult<FfiGeneration, PluginError> {
        let name = self.name;
        guard(name, "Generator::generate", || {
            let generation = target.with(|t| self.inner.generate(t, mode))?;
            Ok(FfiGeneration {
                arch: generation.arch,
                gates: generation
                    .gates
                    .into_iter()
                    .map(TensorHandle::new)
                    .collect(),
                extra_loss: generation.extra_loss.map(TensorHandle::new).into(),
            })
        })
    }
    fn parameters(&self) -> RResult<RVec<NamedTensor>, PluginError> {
        guard(self.name, "Generator::parameters", || {
            Ok(named(self.inner.parameters()))
        })
    }
    fn save_state(&self) -> RResult<RString, PluginError> {
        guard(self.name, "Generator::save_state", || {
            self.inner.save_state().map(RString::from)
        })
    }
    fn load_state(&mut self, state: RStr<'_>) -> RResult<(), PluginError> {
        let name = self.name;
        guard(name, "Generator::load_state", || {
            self.inner.load_state(state.as_str())
        })
    }
}

/// [`HostServices`] behind the FFI (the host's side of the boundary is guarded too).
pub struct HostAdapter<H> {
    /// The implementation (shared: clones of the host object call the same services).
    pub inner: std::rc::Rc<H>,
}

impl<H> Clone for HostAdapter<H> {
    fn clone(&self) -> Self {
        HostAdapter {
            inner: self.inner.clone(),
        }
    }
}

impl<H: HostServices> FfiHost for HostAdapter<H> {
    fn run_info(&self) -> RunInfo {
        self.inner.run_info()
    }
    fn decisions(&self) -> RResult<RVec<Decision>, PluginError> {
        guard("host", "HostServices::decisions", || {
            Ok(self.inner.decisions().into())
        })
    }
    fn complexity(&self, arch: &Arch) -> RResult<Complexity, PluginError> {
        guard("host", "HostServices::complexity", || {
            self.inner.complexity(arch)
        })
    }
    fn extremes(&self, metric: Metric) -> RResult<Tuple2<Arch, Arch>, PluginError> {
        guard("host", "HostServices::extremes", || {
            let (low, high) = self.inner.extremes(metric)?;
            Ok(Tuple2(low, high))
        })
    }
    fn cost_table(&self, metric: Metric) -> RResult<CostTable, PluginError> {
        guard("host", "HostServices::cost_table", || {
            self.inner.cost_table(metric)
        })
    }
    fn create_sampler(&self, name: RStr<'_>, config: RStr<'_>) -> RResult<SamplerBox, PluginError> {
        guard("host", "HostServices::create_sampler", || {
            self.inner
                .create_sampler(name.as_str(), config.as_str())
                .map(SamplerClient::into_box)
        })
    }
}
