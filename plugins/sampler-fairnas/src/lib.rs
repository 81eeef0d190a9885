//! FairNAS strict fairness (Chu, Zhang, Xu, ICCV 2021).
//!
//! Every step draws an independent random permutation of the `m` choices of every decision; path
//! `k` takes the `k`-th entry of every permutation, so each (decision, choice) pair is trained
//! exactly once per step. The `m` paths' gradients accumulate into one optimizer update.
//! Permutations are drawn afresh every step from `(seed, step)`.
//!
//! Options the paper leaves open (defaults are not from the paper): `same_batch` (all paths see
//! one batch, as NAS-Bench-201 reimplementations do; `false` gives every path its own batch, as
//! the paper's figure suggests) and `reduction` (`sum` of the path losses, or `mean`).
//! Every decision must have the same number of choices.

use nas_sdk::{
    rng, Arch, ConfiguredComponent, HostContext, PathPlan, PluginError, PluginResult, Sampler,
    StepInfo, StepPlan,
};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// How the path losses combine.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Reduction {
    /// Sum of the `m` losses.
    Sum,
    /// Mean of the `m` losses.
    Mean,
}

/// Configuration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FairnasConfig {
    /// All paths of a step see the same batch (else one batch per path).
    pub same_batch: bool,
    /// Sum or mean of the path losses.
    pub reduction: Reduction,
    /// Label smoothing of every path's loss.
    pub label_smoothing: f64,
}

impl Default for FairnasConfig {
    fn default() -> Self {
        FairnasConfig {
            same_batch: true,
            reduction: Reduction::Sum,
            label_smoothing: 0.0,
        }
    }
}

/// The sampler.
pub struct FairnasSampler {
    config: FairnasConfig,
    /// Number of choices of each decision.
    options: Vec<u32>,
    seed: u64,
}

impl ConfiguredComponent for FairnasSampler {
    const NAME: &'static str = "fairnas";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "FairNAS strict fairness: m paths per step, every (decision, choice) trained once, one update";
    type Config = FairnasConfig;

    fn from_parsed(config: FairnasConfig) -> PluginResult<Self> {
        if !(0.0..1.0).contains(&config.label_smoothing) {
            return Err(PluginError::config(format!(
                "fairnas: field `label_smoothing` must be in [0, 1), got {}",
                config.label_smoothing
            )));
        }
        Ok(FairnasSampler {
            config,
            options: Vec::new(),
            seed: 0,
        })
    }
}

impl FairnasSampler {
    /// The `m` archs of step `step`: path `k` takes the `k`-th entry of each decision's
    /// permutation.
    pub fn step_archs(&self, step: u64) -> Vec<Arch> {
        let m = self.options.first().copied().unwrap_or(0) as usize;
        let mut rng = rng::stream(self.seed, step, "fairnas");
        let permutations: Vec<Vec<u32>> = self
            .options
            .iter()
            .map(|&n| {
                let mut order: Vec<u32> = (0..n).collect();
                order.shuffle(&mut rng);
                order
            })
            .collect();
        (0..m)
            .map(|k| Arch::new(permutations.iter().map(|p| p[k]).collect()))
            .collect()
    }
}

impl Sampler for FairnasSampler {
    fn start(&mut self, host: HostContext) -> PluginResult<()> {
        let decisions = host.decisions()?;
        let options: Vec<u32> = decisions.iter().map(|d| d.options.len() as u32).collect();
        let m = options.first().copied().unwrap_or(0);
        if m == 0 || options.iter().any(|&n| n != m) {
            let listed: Vec<String> = decisions
                .iter()
                .map(|d| format!("{}: {}", d.name, d.options.len()))
                .collect();
            return Err(PluginError::unsupported(format!(
                "fairnas: strict fairness needs every decision to have the same number of choices; this space has {}",
                listed.join(", ")
            )));
        }
        self.options = options;
        self.seed = host.run_info().seed;
        Ok(())
    }

    fn plan(&mut self, step: &StepInfo) -> PluginResult<StepPlan> {
        let archs = self.step_archs(step.step);
        let m = archs.len() as f64;
        let paths = archs
            .into_iter()
            .enumerate()
            .map(|(k, arch)| {
                let mut path = PathPlan::labels(arch);
                path.loss = nas_sdk::LossKind::Labels {
                    label_smoothing: self.config.label_smoothing,
                };
                path.batch = if self.config.same_batch { 0 } else { k as u32 };
                path.loss_scale = match self.config.reduction {
                    Reduction::Sum => 1.0,
                    Reduction::Mean => 1.0 / m,
                };
                path
            })
            .collect();
        Ok(StepPlan {
            paths,
            ..StepPlan::single(Arch::new(Vec::new()))
        })
    }
}

nas_sdk::export_plugin!(nas_sdk::plugin::Registry::new().sampler::<FairnasSampler>());

#[cfg(test)]
mod tests {
    use super::*;
    use nas_sdk::{testing::FakeHost, Component, Decision};

    /// Decision `i` has `options[i]` choices.
    fn host(options: Vec<usize>) -> FakeHost {
        let names = ["a", "b", "c", "d", "e"];
        FakeHost::new(
            options
                .iter()
                .enumerate()
                .map(|(i, &n)| Decision::choice(&format!("d{i}"), "cell", "op", &names[..n]))
                .collect(),
        )
        .with_seed(3)
        .with_steps(100, 10)
    }

    fn info(step: u64) -> StepInfo {
        StepInfo {
            step,
            total_steps: 100,
            epoch: 0,
            steps_per_epoch: 10,
        }
    }

    fn archs(plan: &StepPlan) -> Vec<Vec<u32>> {
        plan.paths
            .iter()
            .map(|p| match &p.arch {
                nas_sdk::PathArch::Fixed(a) => a.choices().to_vec(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn every_pair_once_per_step_and_fresh_permutations() {
        let mut sampler = FairnasSampler::from_config("{}").unwrap();
        sampler.start(host(vec![5; 6]).context()).unwrap();
        let mut previous: Option<Vec<Vec<u32>>> = None;
        let mut changed = 0;
        for step in 0..50 {
            let plan = sampler.plan(&info(step)).unwrap();
            let archs = archs(&plan);
            assert_eq!(archs.len(), 5, "m paths");
            for d in 0..6 {
                let mut seen: Vec<u32> = archs.iter().map(|a| a[d]).collect();
                seen.sort_unstable();
                assert_eq!(seen, vec![0, 1, 2, 3, 4], "step {step} decision {d}");
            }
            assert!(plan
                .paths
                .iter()
                .all(|p| p.batch == 0 && p.loss_scale == 1.0));
            if let Some(prev) = &previous {
                if prev != &archs {
                    changed += 1;
                }
            }
            previous = Some(archs);
        }
        assert_eq!(changed, 49, "permutations must be re-drawn every step");
    }

    #[test]
    fn batches_and_mean_reduction_options() {
        let mut sampler =
            FairnasSampler::from_config(r#"{"same_batch": false, "reduction": "mean"}"#).unwrap();
        sampler.start(host(vec![3; 4]).context()).unwrap();
        let plan = sampler.plan(&info(0)).unwrap();
        let batches: Vec<u32> = plan.paths.iter().map(|p| p.batch).collect();
        assert_eq!(batches, vec![0, 1, 2]);
        assert!(plan
            .paths
            .iter()
            .all(|p| (p.loss_scale - 1.0 / 3.0).abs() < 1e-12));
    }

    #[test]
    fn unequal_choice_counts_are_refused() {
        let mut sampler = FairnasSampler::from_config("{}").unwrap();
        let err = sampler.start(host(vec![3, 2]).context()).unwrap_err();
        assert!(err.message.contains("same number of choices"), "{err}");
    }
}
