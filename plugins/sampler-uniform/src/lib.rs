//! Uniform single-path sampling (SPOS, Guo et al., ECCV 2020).
//!
//! Two modes:
//! - `uniform`: every decision drawn uniformly and independently, one path per step.
//! - `flops-bin`: the official SPOS code's variant: draw a complexity bin uniformly (bins of
//!   `bin_width` over the space's `[min, max]`), then draw uniform paths until one falls in the
//!   bin, at most `max_tries` times, then take the last path drawn whatever its complexity.
//!
//! Randomness comes from `nas_sdk::rng::stream(seed, step, "uniform")`, so the sampler has no
//! state to checkpoint and a resumed or data-parallel run draws the same paths.

use nas_sdk::{
    rng::{self, uniform_arch},
    Arch, ConfiguredComponent, Decision, HostContext, Metric, PluginError, PluginResult, Sampler,
    StepInfo, StepPlan,
};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Sampling mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Every decision uniform.
    Uniform,
    /// SPOS's bin-then-rejection sampling.
    FlopsBin,
}

/// Configuration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UniformConfig {
    /// `uniform` or `flops-bin`.
    pub mode: Mode,
    /// Complexity metric of the bins (`macs` or `params`).
    pub metric: Metric,
    /// Bin width in metric units (SPOS: 10 MFLOPs).
    pub bin_width: f64,
    /// Rejection tries before giving up on the bin (SPOS: 500).
    pub max_tries: u32,
}

impl Default for UniformConfig {
    fn default() -> Self {
        UniformConfig {
            mode: Mode::Uniform,
            metric: Metric::Macs,
            bin_width: 10e6,
            max_tries: 500,
        }
    }
}

/// The sampler component.
pub struct UniformSampler {
    config: UniformConfig,
    host: Option<HostContext>,
    decisions: Vec<Decision>,
    seed: u64,
    /// `[min, max]` complexity of the space under the bin metric.
    range: (f64, f64),
}

impl ConfiguredComponent for UniformSampler {
    const NAME: &'static str = "uniform";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "SPOS uniform single-path sampling, or its FLOPs-bin rejection variant (mode = \"flops-bin\")";
    type Config = UniformConfig;

    fn from_parsed(config: UniformConfig) -> PluginResult<Self> {
        if config.bin_width.is_nan() || config.bin_width <= 0.0 {
            return Err(PluginError::config(format!(
                "uniform: field `bin_width` must be positive, got {}",
                config.bin_width
            )));
        }
        if config.max_tries == 0 {
            return Err(PluginError::config(
                "uniform: field `max_tries` must be at least 1",
            ));
        }
        Ok(UniformSampler {
            config,
            host: None,
            decisions: Vec::new(),
            seed: 0,
            range: (0.0, 0.0),
        })
    }
}

impl UniformSampler {
    /// Number of complexity bins over the space's range.
    pub fn bin_count(&self) -> u64 {
        (((self.range.1 - self.range.0) / self.config.bin_width).floor() as u64) + 1
    }

    /// `[low, high)` of bin `bin` (the last bin is closed).
    pub fn bin_bounds(&self, bin: u64) -> (f64, f64) {
        let low = self.range.0 + bin as f64 * self.config.bin_width;
        (low, low + self.config.bin_width)
    }

    /// Rejection-samples a path in `bin`; returns the path and whether it is in the bin.
    pub fn sample_in_bin(&self, bin: u64, rng: &mut impl Rng) -> PluginResult<(Arch, bool)> {
        let host = self.host()?;
        let (low, high) = self.bin_bounds(bin);
        let mut arch = uniform_arch(&self.decisions, rng);
        for _ in 0..self.config.max_tries {
            let value = self.config.metric.of(&host.complexity(&arch)?) as f64;
            if value >= low && value < high {
                return Ok((arch, true));
            }
            arch = uniform_arch(&self.decisions, rng);
        }
        Ok((arch, false))
    }

    fn host(&self) -> PluginResult<&HostContext> {
        self.host
            .as_ref()
            .ok_or_else(|| PluginError::runtime("uniform: plan() called before start()"))
    }
}

impl Sampler for UniformSampler {
    fn start(&mut self, host: HostContext) -> PluginResult<()> {
        self.decisions = host.decisions()?;
        if self.decisions.iter().any(|d| d.options.is_empty()) {
            return Err(PluginError::runtime(
                "uniform: a decision of the space has no options",
            ));
        }
        self.seed = host.run_info().seed;
        if self.config.mode == Mode::FlopsBin {
            let (smallest, largest) = host.extremes(self.config.metric)?;
            let metric = self.config.metric;
            self.range = (
                metric.of(&host.complexity(&smallest)?) as f64,
                metric.of(&host.complexity(&largest)?) as f64,
            );
        }
        self.host = Some(host);
        Ok(())
    }

    fn plan(&mut self, step: &StepInfo) -> PluginResult<StepPlan> {
        let mut rng = rng::stream(self.seed, step.step, "uniform");
        let arch = match self.config.mode {
            Mode::Uniform => uniform_arch(&self.decisions, &mut rng),
            Mode::FlopsBin => {
                let bin = rng.gen_range(0..self.bin_count());
                self.sample_in_bin(bin, &mut rng)?.0
            }
        };
        Ok(StepPlan::single(arch))
    }
}

/// Configuration of [`FixedSampler`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct FixedConfig {
    /// The arch's choice indices.
    pub choices: Vec<u32>,
}

/// Trains one fixed arch every step: stand-alone training of a subnet (`nas retrain`), since a
/// supernet restricted to one path, with the inactive-parameter rule, is that subnet.
pub struct FixedSampler {
    arch: Arch,
}

impl ConfiguredComponent for FixedSampler {
    const NAME: &'static str = "fixed";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "one fixed arch every step (stand-alone training of a subnet)";
    type Config = FixedConfig;

    fn from_parsed(config: FixedConfig) -> PluginResult<Self> {
        Ok(FixedSampler {
            arch: Arch::new(config.choices),
        })
    }
}

impl Sampler for FixedSampler {
    fn start(&mut self, host: HostContext) -> PluginResult<()> {
        self.arch
            .validate(&host.decisions()?)
            .map_err(|msg| PluginError::config(format!("fixed: field `choices`: {msg}")))
    }

    fn plan(&mut self, _step: &StepInfo) -> PluginResult<StepPlan> {
        Ok(StepPlan::single(self.arch.clone()))
    }
}

nas_sdk::export_plugin!(nas_sdk::plugin::Registry::new()
    .sampler::<UniformSampler>()
    .sampler::<FixedSampler>());

#[cfg(test)]
mod tests {
    use super::*;
    use nas_sdk::{testing::FakeHost, Complexity, Component, HostServices};

    /// A NAS-Bench-201-shaped host: 6 decisions of 5 options, the benchmark's closed-form FLOPs.
    fn fake_host() -> FakeHost {
        let ops = [
            "none",
            "skip_connect",
            "nor_conv_1x1",
            "nor_conv_3x3",
            "avg_pool_3x3",
        ];
        FakeHost::new(
            (0..6)
                .map(|i| Decision::choice(&format!("edge{i}"), "cell", "op", &ops))
                .collect(),
        )
        .with_seed(42)
        .with_steps(1000, 100)
        .with_complexity(|arch| {
            let n1 = arch.choices().iter().filter(|&&c| c == 2).count() as u64;
            let n3 = arch.choices().iter().filter(|&&c| c == 3).count() as u64;
            Ok(Complexity {
                macs: 7_783_050 + 35_389_440 * n3 + 3_932_160 * n1,
                params: 0,
            })
        })
        .with_extremes(Arch::new(vec![0; 6]), Arch::new(vec![3; 6]))
    }

    fn started(config: serde_json::Value) -> UniformSampler {
        let mut sampler = UniformSampler::from_config(&config.to_string()).unwrap();
        sampler.start(fake_host().context()).unwrap();
        sampler
    }

    fn step(step: u64) -> StepInfo {
        StepInfo {
            step,
            total_steps: 100_000,
            epoch: 0,
            steps_per_epoch: 100,
        }
    }

    fn path_arch(plan: &StepPlan) -> Arch {
        assert_eq!(plan.paths.len(), 1);
        match &plan.paths[0].arch {
            nas_sdk::PathArch::Fixed(arch) => arch.clone(),
            other => panic!("unexpected path {other:?}"),
        }
    }

    #[test]
    fn choice_frequencies_pass_chi_square() {
        let mut sampler = started(serde_json::json!({}));
        let draws = 20_000u64;
        let mut counts = [[0u64; 5]; 6];
        for s in 0..draws {
            let arch = path_arch(&sampler.plan(&step(s)).unwrap());
            for (d, &c) in arch.choices().iter().enumerate() {
                counts[d][c as usize] += 1;
            }
        }
        let expected = draws as f64 / 5.0;
        for (d, row) in counts.iter().enumerate() {
            let chi2: f64 = row
                .iter()
                .map(|&n| (n as f64 - expected).powi(2) / expected)
                .sum();
            // 4 degrees of freedom, p = 0.001.
            assert!(
                chi2 < 18.467,
                "decision {d}: chi2 = {chi2:.2}, counts {row:?}"
            );
        }
    }

    #[test]
    fn plans_depend_only_on_seed_and_step() {
        let mut a = started(serde_json::json!({}));
        let mut b = started(serde_json::json!({}));
        let seq_a: Vec<Arch> = (0..50)
            .map(|s| path_arch(&a.plan(&step(s)).unwrap()))
            .collect();
        // A fresh sampler asked out of order gives the same arch for the same step.
        let late = path_arch(&b.plan(&step(37)).unwrap());
        assert_eq!(late, seq_a[37]);
        assert_ne!(
            seq_a[0..10],
            seq_a[10..20],
            "consecutive steps should differ"
        );
    }

    #[test]
    fn flops_bin_sampler_stays_in_its_bin() {
        let sampler = started(serde_json::json!({"mode": "flops-bin", "bin_width": 10e6}));
        let host = fake_host();
        let mut rng = rng::stream(1, 0, "test");
        let mut reachable = 0;
        for bin in 0..sampler.bin_count() {
            let (low, high) = sampler.bin_bounds(bin);
            for _ in 0..20 {
                let (arch, inside) = sampler.sample_in_bin(bin, &mut rng).unwrap();
                let macs = host.complexity(&arch).unwrap().macs as f64;
                if inside {
                    reachable += 1;
                    assert!(
                        macs >= low && macs < high,
                        "bin {bin} [{low}, {high}) got {macs}"
                    );
                }
            }
        }
        assert!(reachable > 0, "no bin was reachable");
        // The lowest bin holds the conv-free archs, which uniform draws hit often.
        let (arch, inside) = sampler.sample_in_bin(0, &mut rng).unwrap();
        assert!(inside, "bin 0 should be reachable, got {arch:?}");
    }

    #[test]
    fn fixed_sampler_plans_its_arch_and_checks_it() {
        let mut fixed = FixedSampler::from_config(r#"{"choices": [3, 3, 2, 1, 0, 4]}"#).unwrap();
        fixed.start(fake_host().context()).unwrap();
        assert_eq!(
            path_arch(&fixed.plan(&step(9)).unwrap()).choices(),
            &[3, 3, 2, 1, 0, 4]
        );
        let mut bad = FixedSampler::from_config(r#"{"choices": [7]}"#).unwrap();
        let err = bad.start(fake_host().context()).unwrap_err();
        assert!(err.message.contains("choices"), "{err}");
    }

    #[test]
    fn bad_config_is_refused_with_the_field_name() {
        let err = UniformSampler::from_config(r#"{"bin_width": 0}"#)
            .err()
            .unwrap();
        assert!(err.message.contains("bin_width"));
        let err = UniformSampler::from_config(r#"{"mode": "sideways"}"#)
            .err()
            .unwrap();
        assert!(err.message.contains("sideways"), "{err}");
    }
}
