//! The run's architecture generator (ShiftNAS): built from the `[generator]` section, optimized
//! with its own Adam, checkpointed with the supernet, and probed on held-out data for Eq. 8.
//!
//! A sampler's `PathArch::Generate { target }` path asks [`RunGenerator::generate`] for the arch
//! of `target` with its gates and extra loss; the host trains the path like any other and adds
//! the extra loss. A plan's `probes` are answered by [`RunGenerator::probe`]: the held-out loss of
//! the generator's argmax arch for a target, and its derivative with respect to the target, under
//! the weights after the step's update and under the copy kept from before it.

use anyhow::{bail, Context, Result};
use nas_sdk::{Arch, ForwardOptions, GenerateMode, Generation, HeldoutProbe, HostContext, Metric};
use tch::{Device, Kind, Tensor};

use super::optim::Optimizer;
use crate::{
    config::{GeneratorSection, RunConfig},
    plugins::{Generator, Origin, SharedCatalog, Space},
};

/// A generator plugin with its parameters and optimizer.
pub struct RunGenerator {
    /// The plugin object.
    pub plugin: Generator,
    /// Its trainable parameters (shallow clones), in the plugin's order.
    pub params: Vec<(String, Tensor)>,
    /// Its own optimizer (AdamW at `generator.lr`).
    pub optimizer: Optimizer,
    /// The unit of targets (the plugin config's `metric`, MACs by default).
    pub metric: Metric,
    /// The config it was built with (JSON).
    pub config_json: String,
    lr: f64,
    device: Device,
}

/// The `metric` field of a component config after defaults (`macs` when the component has none).
pub fn configured_metric(defaults_json: &str, config_json: &str) -> Result<Metric> {
    let pick = |text: &str| -> Option<serde_json::Value> {
        serde_json::from_str::<serde_json::Value>(text)
            .ok()?
            .get("metric")
            .cloned()
    };
    match pick(config_json).or_else(|| pick(defaults_json)) {
        None => Ok(Metric::Macs),
        Some(value) => serde_json::from_value(value.clone()).with_context(|| {
            format!("config field `metric` is {value}: use \"macs\" or \"params\"")
        }),
    }
}

impl RunGenerator {
    /// Builds the generator of `section` (which must name one), starts it with the host's
    /// services, and creates its optimizer. The caller seeds libtorch before this call, since the
    /// generator initialises its parameters from libtorch's generator.
    pub fn create(
        catalog: &SharedCatalog,
        section: &GeneratorSection,
        host: HostContext,
        device: Device,
    ) -> Result<Self> {
        let config_json = section.config_json();
        let mut plugin = Generator::create(catalog, section)?;
        let metric = configured_metric(plugin.default_config(), &config_json)
            .with_context(|| format!("generator `{}`", section.name))?;
        plugin.start(host, device)?;
        let params = plugin.parameters()?;
        for (name, tensor) in &params {
            if !tensor.requires_grad() {
                bail!(
                    "generator `{}` returned parameter `{name}` without requires_grad; it cannot be trained",
                    plugin.origin().name
                );
            }
        }
        let optimizer = Optimizer::new(
            params.iter().map(|(_, t)| t.shallow_clone()).collect(),
            &section.optim(),
        );
        Ok(RunGenerator {
            plugin,
            params,
            optimizer,
            metric,
            config_json,
            lr: section.lr,
            device,
        })
    }

    /// The generator's arch, gates and extra loss for `target` (in its metric's units).
    pub fn generate(&mut self, target: f64, mode: GenerateMode) -> Result<(Tensor, Generation)> {
        let target = Tensor::from(target as f32)
            .to_device(self.device)
            .set_requires_grad(true);
        let generation = self.plugin.generate(&target, mode)?;
        Ok((target, generation))
    }

    /// The generator's argmax arch for `target` (deployment: `argmax AG(C)`).
    pub fn argmax_arch(&mut self, target: f64) -> Result<Arch> {
        let (_, generation) = tch::no_grad(|| self.generate(target, GenerateMode::Argmax))?;
        Ok(generation.arch)
    }

    /// Where the generator came from.
    pub fn origin(&self) -> &Origin {
        self.plugin.origin()
    }

    /// Clears the generator's gradients.
    pub fn zero_grad(&mut self) {
        self.optimizer.zero_grad();
    }

    /// One update of every generator parameter from the accumulated gradients.
    pub fn step(&mut self) {
        let all: Vec<usize> = (0..self.params.len()).collect();
        self.optimizer.step(&all, 0, self.lr);
    }

    /// The held-out loss of `argmax AG(target)` on `(images, labels)` and its derivative with
    /// respect to `target`, under the current weights and under `previous` (the supernet's
    /// parameters before the update, in `params` order). The weights are restored before return.
    pub fn probe(
        &mut self,
        space: &Space,
        params: &[(String, Tensor)],
        previous: &[Tensor],
        target: f64,
        images: &Tensor,
        labels: &Tensor,
    ) -> Result<HeldoutProbe> {
        let (loss_after, grad_after) = self.probe_once(space, target, images, labels)?;
        let current: Vec<Tensor> = tch::no_grad(|| {
            params
                .iter()
                .zip(previous)
                .map(|((_, live), before)| {
                    let kept = live.copy();
                    live.shallow_clone().copy_(before);
                    kept
                })
                .collect()
        });
        let before = self.probe_once(space, target, images, labels);
        tch::no_grad(|| {
            for ((_, live), kept) in params.iter().zip(&current) {
                live.shallow_clone().copy_(kept);
            }
        });
        let (loss_before, grad_before) = before?;
        Ok(HeldoutProbe {
            target,
            loss_after,
            loss_before,
            grad_after,
            grad_before,
        })
    }

    fn probe_once(
        &mut self,
        space: &Space,
        target: f64,
        images: &Tensor,
        labels: &Tensor,
    ) -> Result<(f64, f64)> {
        let (target_tensor, generation) = self.generate(target, GenerateMode::Argmax)?;
        let gates = (!generation.gates.is_empty()).then_some(generation.gates.as_slice());
        // Batch statistics without touching the running ones, and no dropout: the held-out loss
        // of the subnet as the weights stand.
        let logits = space.forward(
            images,
            &generation.arch,
            gates,
            &ForwardOptions::BATCH_STATS,
        )?;
        let loss = logits.cross_entropy_for_logits(labels);
        let value = loss.double_value(&[]);
        // `0 * target` keeps the target in the graph, so a generator whose arch does not depend
        // on it (e.g. `random`) gets a derivative of exactly 0 instead of an autograd error.
        let probed = &loss + &target_tensor.to_kind(Kind::Float) * 0.0;
        let grads = Tensor::run_backward(&[probed], &[&target_tensor], false, false);
        let grad = grads.first().map(|g| g.double_value(&[])).unwrap_or(0.0);
        if !(value.is_finite() && grad.is_finite()) {
            bail!("held-out probe at target {target}: loss {value}, gradient {grad} (not finite)");
        }
        Ok((value, grad))
    }
}

/// Refuses a sampler and generator that measure targets in different metrics.
pub fn check_metrics_agree(
    catalog: &SharedCatalog,
    config: &RunConfig,
    generator: &RunGenerator,
) -> Result<()> {
    let defaults = catalog
        .borrow_mut()
        .resolve(nas_sdk::ComponentKind::Sampler, &config.sampler.name)?
        .1
        .default_config
        .to_string();
    let has_metric = |text: &str| {
        serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .is_some_and(|v| v.get("metric").is_some())
    };
    let sampler_json = config.sampler.config_json();
    if !(has_metric(&defaults) || has_metric(&sampler_json)) {
        return Ok(());
    }
    let sampler_metric = configured_metric(&defaults, &sampler_json)?;
    if sampler_metric != generator.metric {
        bail!(
            "config: sampler `{}` draws targets in {:?} but generator `{}` reads them as {:?}; set the same `metric` in [sampler.config] and [generator.config]",
            config.sampler.name,
            sampler_metric,
            generator.origin().name,
            generator.metric
        );
    }
    Ok(())
}
