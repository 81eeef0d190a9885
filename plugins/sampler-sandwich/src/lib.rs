//! The sandwich rule with inplace distillation (BigNAS, Yu et al. 2020; AttentiveNAS, Wang et al.
//! CVPR 2021).
//!
//! Each step, on one batch: the largest subnet with the label loss (label smoothing, default 0.1)
//! and train-only regularisation (dropout) on; then `random_paths` uniformly drawn subnets and the
//! smallest one, each trained on the largest subnet's detached soft predictions (soft
//! cross-entropy at `temperature`, default 1) with regularisation off; gradients accumulate into
//! one optimizer update. AttentiveNAS also clips gradients by value at 1.0: set
//! `optim.clip = "value"`, `optim.clip_value = 1.0` in the run config (the example recipe does).
//! Largest and smallest are the space's extremes under `metric`. The attentive (best/worst
//! Pareto) variant is not implemented.

use nas_sdk::{
    rng::{self, uniform_arch},
    Arch, ConfiguredComponent, Decision, HostContext, LossKind, Metric, PathArch, PathPlan,
    PluginError, PluginResult, Sampler, StepInfo, StepPlan,
};
use serde::{Deserialize, Serialize};

/// Configuration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SandwichConfig {
    /// Uniformly drawn subnets between the largest and the smallest (BigNAS: 2).
    pub random_paths: u32,
    /// Label smoothing of the largest subnet's loss.
    pub label_smoothing: f64,
    /// Distillation temperature.
    pub temperature: f64,
    /// Metric defining largest and smallest.
    pub metric: Metric,
}

impl Default for SandwichConfig {
    fn default() -> Self {
        SandwichConfig {
            random_paths: 2,
            label_smoothing: 0.1,
            temperature: 1.0,
            metric: Metric::Macs,
        }
    }
}

/// The sampler.
pub struct SandwichSampler {
    config: SandwichConfig,
    decisions: Vec<Decision>,
    smallest: Arch,
    largest: Arch,
    seed: u64,
}

impl ConfiguredComponent for SandwichSampler {
    const NAME: &'static str = "sandwich";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "sandwich rule: largest (labels) + N random + smallest (inplace distillation), one update";
    type Config = SandwichConfig;

    fn from_parsed(config: SandwichConfig) -> PluginResult<Self> {
        if !(0.0..1.0).contains(&config.label_smoothing) {
            return Err(PluginError::config(format!(
                "sandwich: field `label_smoothing` must be in [0, 1), got {}",
                config.label_smoothing
            )));
        }
        if config.temperature.is_nan() || config.temperature <= 0.0 {
            return Err(PluginError::config(format!(
                "sandwich: field `temperature` must be positive, got {}",
                config.temperature
            )));
        }
        Ok(SandwichSampler {
            config,
            decisions: Vec::new(),
            smallest: Arch::new(Vec::new()),
            largest: Arch::new(Vec::new()),
            seed: 0,
        })
    }
}

impl Sampler for SandwichSampler {
    fn start(&mut self, host: HostContext) -> PluginResult<()> {
        self.decisions = host.decisions()?;
        let (smallest, largest) = host.extremes(self.config.metric)?;
        self.smallest = smallest;
        self.largest = largest;
        self.seed = host.run_info().seed;
        Ok(())
    }

    fn plan(&mut self, step: &StepInfo) -> PluginResult<StepPlan> {
        let mut rng = rng::stream(self.seed, step.step, "sandwich");
        let distill = |arch: Arch| PathPlan {
            arch: PathArch::Fixed(arch),
            loss: LossKind::DistillFromFirst {
                temperature: self.config.temperature,
            },
            loss_scale: 1.0,
            batch: 0,
            regularize: false,
        };
        let mut paths = vec![PathPlan {
            loss: LossKind::Labels {
                label_smoothing: self.config.label_smoothing,
            },
            ..PathPlan::labels(self.largest.clone())
        }];
        for _ in 0..self.config.random_paths {
            paths.push(distill(uniform_arch(&self.decisions, &mut rng)));
        }
        paths.push(distill(self.smallest.clone()));
        Ok(StepPlan {
            paths: paths.into(),
            ..StepPlan::single(Arch::new(Vec::new()))
        })
    }
}

nas_sdk::export_plugin!(nas_sdk::plugin::Registry::new().sampler::<SandwichSampler>());

#[cfg(test)]
mod tests {
    use super::*;
    use nas_sdk::{testing::FakeHost, Component};

    /// Four path-choice decisions of three options; option 0 everywhere is the smallest arch.
    fn host() -> FakeHost {
        FakeHost::choices(4, &["a", "b", "c"])
            .with_seed(1)
            .with_steps(10, 10)
    }

    #[test]
    fn largest_then_random_then_smallest_with_distillation() {
        let mut sampler = SandwichSampler::from_config(r#"{"random_paths": 3}"#).unwrap();
        sampler.start(host().context()).unwrap();
        let plan = sampler
            .plan(&StepInfo {
                step: 4,
                total_steps: 10,
                epoch: 0,
                steps_per_epoch: 10,
            })
            .unwrap();
        assert_eq!(plan.paths.len(), 5);
        assert_eq!(plan.paths[0].arch, PathArch::Fixed(Arch::new(vec![2; 4])));
        assert_eq!(
            plan.paths[0].loss,
            LossKind::Labels {
                label_smoothing: 0.1
            }
        );
        assert!(plan.paths[0].regularize);
        assert_eq!(plan.paths[4].arch, PathArch::Fixed(Arch::new(vec![0; 4])));
        for path in &plan.paths[1..] {
            assert_eq!(path.loss, LossKind::DistillFromFirst { temperature: 1.0 });
            assert!(!path.regularize);
            assert_eq!(path.batch, 0);
        }
        assert_eq!(plan.momentum_group, 0);
    }
}
