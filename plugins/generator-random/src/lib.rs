//! Random generator `random`: the baseline for ablating ShiftNAS's sampler from its generator
//! (Su et al., "ShiftNAS: Improving One-shot NAS via Probability Shift", ICCV 2023, whose
//! architecture generator `AG` this replaces by rejection sampling). It has no parameters and no
//! policy; it exists so the `shiftnas` sampler's learned distribution over complexity bins can be
//! run with a generator that learns nothing.
//!
//! # Method
//!
//! For a target complexity `C` (the scalar tensor's value, in `metric` units), draw uniform archs
//! (every decision uniform and independent, [`nas_sdk::rng::uniform_arch`]) and return the first
//! whose exact complexity (the host's, cached) lies in `[C - w/2, C + w/2]`, `w` the bin width.
//! After `max_tries` draws without a hit, the draw closest to `C` is returned (the first of equal
//! distance); that is not an error, so a target outside the space's range or in an empty bin still
//! gets the nearest arch found.
//!
//! # Values left open (each **not from the paper**, which has no such generator)
//!
//! - `metric` (`"macs"` | `"params"`, default `macs`): the unit of targets; it must be the
//!   sampler's (the host checks).
//! - `bin_width` (metric units, must be positive): default null, meaning `(max - min) / 10` over
//!   the space's `[min, max]` (from `HostServices::extremes`).
//! - `max_tries = 1000` draws before falling back to the closest.
//! - **Randomness.** [`GenerateMode::Sample`] (training) draws from
//!   `rng::stream(seed, counter, "generator-random")` with a counter incremented by every Sample
//!   call and kept in `save_state`, so a resumed run continues the same stream.
//!   [`GenerateMode::Argmax`] (deployment, held-out probes) is deterministic per target: the
//!   stream `rng::stream(seed, target.to_bits(), "generator-random-argmax")` (the target as an
//!   `f64` read from the tensor), so `argmax AG(C)` is reproducible and does not advance the
//!   Sample counter.
//!
//! # No gradient
//!
//! The generated arch does not depend differentiably on the target: `gates` is empty (the host
//! runs the space without gates) and there is no extra loss. The host's held-out probes therefore
//! see a target derivative of exactly 0; with the `shiftnas` sampler use `estimator = "per-bin"`,
//! which needs only the probes' losses. The generator has no keep-mask requirement: it works with
//! any space, path-choice spaces such as NAS-Bench-201 included.

use nas_sdk::{
    rng, Arch, ConfiguredComponent, Decision, GenerateMode, Generation, Generator, HostContext,
    Metric, PluginError, PluginResult,
};
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

/// Configuration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RandomConfig {
    /// Unit of targets (`macs` or `params`); must be the sampler's.
    pub metric: Metric,
    /// Acceptance window around the target, in metric units; null for `(max - min) / 10`.
    pub bin_width: Option<f64>,
    /// Uniform draws before returning the closest one.
    pub max_tries: u32,
}

impl Default for RandomConfig {
    fn default() -> Self {
        RandomConfig {
            metric: Metric::Macs,
            bin_width: None,
            max_tries: 1000,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct State {
    /// Sample-mode calls so far.
    counter: u64,
}

/// The generator component.
pub struct RandomGenerator {
    config: RandomConfig,
    host: Option<HostContext>,
    decisions: Vec<Decision>,
    seed: u64,
    range: (f64, f64),
    width: f64,
    counter: u64,
}

impl ConfiguredComponent for RandomGenerator {
    const NAME: &'static str = "random";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "baseline generator: a uniform arch whose exact complexity falls in the target's bin (no gradient; any space)";
    type Config = RandomConfig;

    fn from_parsed(config: RandomConfig) -> PluginResult<Self> {
        if let Some(width) = config.bin_width {
            if !(width.is_finite() && width > 0.0) {
                return Err(PluginError::config(format!(
                    "random: field `bin_width` must be positive (or null), got {width}"
                )));
            }
        }
        if config.max_tries == 0 {
            return Err(PluginError::config(
                "random: field `max_tries` must be at least 1",
            ));
        }
        Ok(RandomGenerator {
            config,
            host: None,
            decisions: Vec::new(),
            seed: 0,
            range: (0.0, 0.0),
            width: 0.0,
            counter: 0,
        })
    }
}

impl RandomGenerator {
    /// The acceptance window's width in metric units (after `start`).
    pub fn bin_width(&self) -> f64 {
        self.width
    }

    /// `[min, max]` complexity of the space in metric units (after `start`).
    pub fn range(&self) -> (f64, f64) {
        self.range
    }

    /// Sample-mode calls so far.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    fn host(&self) -> PluginResult<&HostContext> {
        self.host
            .as_ref()
            .ok_or_else(|| PluginError::runtime("random: generate() called before start()"))
    }

    /// The first uniform draw from `rng` within the target's window, else the closest of
    /// `max_tries` draws; with whether it is in the window.
    pub fn search(&self, target: f64, rng: &mut rng::StepRng) -> PluginResult<(Arch, bool)> {
        let host = self.host()?;
        let half = self.width / 2.0;
        let mut closest: Option<(f64, Arch)> = None;
        for _ in 0..self.config.max_tries {
            let arch = rng::uniform_arch(&self.decisions, rng);
            let value = self.config.metric.of(&host.complexity(&arch)?) as f64;
            if value >= target - half && value <= target + half {
                return Ok((arch, true));
            }
            let distance = (value - target).abs();
            if closest.as_ref().is_none_or(|(best, _)| distance < *best) {
                closest = Some((distance, arch));
            }
        }
        Ok((closest.expect("max_tries >= 1").1, false))
    }
}

impl Generator for RandomGenerator {
    fn start(&mut self, host: HostContext, _device: Device) -> PluginResult<()> {
        self.decisions = host.decisions()?;
        if let Some(d) = self.decisions.iter().find(|d| d.options.is_empty()) {
            return Err(PluginError::runtime(format!(
                "random: decision `{}` of the space has no options",
                d.name
            )));
        }
        let metric = self.config.metric;
        let (smallest, largest) = host.extremes(metric)?;
        let min = metric.of(&host.complexity(&smallest)?) as f64;
        let max = metric.of(&host.complexity(&largest)?) as f64;
        self.range = (min, max);
        self.width = self.config.bin_width.unwrap_or((max - min) / 10.0);
        self.seed = host.run_info().seed;
        self.host = Some(host);
        Ok(())
    }

    fn generate(&mut self, target: &Tensor, mode: GenerateMode) -> PluginResult<Generation> {
        self.host()?;
        if target.numel() != 1 {
            return Err(PluginError::runtime(format!(
                "random: the target must be a scalar tensor, got shape {:?}",
                target.size()
            )));
        }
        let value = target.double_value(&[]);
        if !value.is_finite() {
            return Err(PluginError::runtime(format!(
                "random: the target is not finite: {value}"
            )));
        }
        let mut rng = match mode {
            GenerateMode::Sample => {
                let rng = rng::stream(self.seed, self.counter, "generator-random");
                self.counter += 1;
                rng
            }
            GenerateMode::Argmax => {
                rng::stream(self.seed, value.to_bits(), "generator-random-argmax")
            }
        };
        let (arch, _) = self.search(value, &mut rng)?;
        Ok(Generation {
            arch,
            gates: Vec::new(),
            extra_loss: None,
        })
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    fn save_state(&self) -> PluginResult<String> {
        serde_json::to_string(&State {
            counter: self.counter,
        })
        .map_err(|e| PluginError::runtime(format!("random: {e}")))
    }

    fn load_state(&mut self, state: &str) -> PluginResult<()> {
        let state: State = serde_json::from_str(state)
            .map_err(|e| PluginError::runtime(format!("random: unreadable saved state: {e}")))?;
        self.counter = state.counter;
        Ok(())
    }
}

nas_sdk::export_plugin!(nas_sdk::plugin::Registry::new().generator::<RandomGenerator>());

#[cfg(test)]
mod tests {
    use super::*;
    use nas_sdk::{testing::FakeHost, Complexity, Component, HostServices};

    /// Four path-choice decisions of 3 options (NB201-like, no keep-masks); MACs
    /// `1e6 * (10 + sum of choices)`, i.e. 10M..18M with most archs in the middle.
    fn fake_host() -> FakeHost {
        FakeHost::new(
            (0..4)
                .map(|i| Decision::choice(&format!("edge{i}"), "cell", "op", &["a", "b", "c"]))
                .collect(),
        )
        .with_seed(3)
        .with_steps(100, 10)
        .with_complexity(|arch| {
            let sum: u64 = arch.choices().iter().map(|&c| c as u64).sum();
            Ok(Complexity {
                macs: 1_000_000 * (10 + sum),
                params: 1000 * (1 + sum),
            })
        })
    }

    fn started(config: serde_json::Value) -> RandomGenerator {
        let mut generator = RandomGenerator::from_config(&config.to_string()).unwrap();
        generator.start(fake_host().context(), Device::Cpu).unwrap();
        generator
    }

    /// The target as the host passes it (an `f32` scalar that requires grad).
    fn target(value: f64) -> Tensor {
        Tensor::from(value as f32).set_requires_grad(true)
    }

    fn macs(arch: &Arch) -> f64 {
        fake_host().complexity(arch).unwrap().macs as f64
    }

    #[test]
    fn accepted_archs_fall_in_the_targets_bin_across_the_range() {
        let mut generator = started(serde_json::json!({}));
        assert_eq!(generator.range(), (10e6, 18e6));
        assert!((generator.bin_width() - 0.8e6).abs() < 1e-6);
        for mode in [GenerateMode::Sample, GenerateMode::Argmax] {
            for i in 0..=8 {
                let goal = 10e6 + 1e6 * i as f64;
                let generation = generator.generate(&target(goal), mode).unwrap();
                assert!(generation.gates.is_empty());
                assert!(generation.extra_loss.is_none());
                generation.arch.validate(&fake_host().decisions()).unwrap();
                let value = macs(&generation.arch);
                assert!(
                    (value - goal).abs() <= 0.4e6,
                    "{mode:?}: target {goal} got {value}"
                );
            }
        }
        // A wider window accepts off-grid targets too.
        let mut wide = started(serde_json::json!({"bin_width": 1.2e6}));
        for i in 0..=16 {
            let goal = 10e6 + 0.5e6 * i as f64;
            let arch = wide
                .generate(&target(goal), GenerateMode::Sample)
                .unwrap()
                .arch;
            assert!((macs(&arch) - goal).abs() <= 0.6e6, "target {goal}");
        }
        // The first draw in the window is taken, not the closest: with a window holding every
        // arch, the draws spread over the range.
        let mut everything = started(serde_json::json!({"bin_width": 100e6}));
        let values: std::collections::BTreeSet<u64> = (0..30)
            .map(|_| {
                let arch = everything
                    .generate(&target(14e6), GenerateMode::Sample)
                    .unwrap()
                    .arch;
                macs(&arch) as u64
            })
            .collect();
        assert!(values.len() > 2, "{values:?}");
        // Params work the same way.
        let mut generator = started(serde_json::json!({"metric": "params", "bin_width": 1.0}));
        let arch = generator
            .generate(&target(5000.0), GenerateMode::Sample)
            .unwrap()
            .arch;
        assert_eq!(fake_host().complexity(&arch).unwrap().params, 5000);
    }

    #[test]
    fn an_empty_bin_falls_back_to_the_closest_draw() {
        let mut generator = started(serde_json::json!({"bin_width": 0.2e6}));
        // [14.3M, 14.5M] holds no arch: the closest are the 14M ones.
        let arch = generator
            .generate(&target(14.4e6), GenerateMode::Sample)
            .unwrap()
            .arch;
        assert_eq!(macs(&arch), 14e6);
        // Far outside the range: the largest arch.
        let arch = generator
            .generate(&target(40e6), GenerateMode::Argmax)
            .unwrap()
            .arch;
        assert_eq!(arch.choices(), &[2, 2, 2, 2]);
        let arch = generator
            .generate(&target(-5e6), GenerateMode::Sample)
            .unwrap()
            .arch;
        assert_eq!(arch.choices(), &[0, 0, 0, 0]);
        // With a single try the fallback is that one draw, still no error.
        let mut once = started(serde_json::json!({"bin_width": 0.2e6, "max_tries": 1}));
        assert!(once.generate(&target(14.4e6), GenerateMode::Sample).is_ok());
    }

    #[test]
    fn argmax_is_deterministic_per_target() {
        let mut a = started(serde_json::json!({"bin_width": 3e6}));
        let mut b = started(serde_json::json!({"bin_width": 3e6}));
        // Sample calls in between change neither the Argmax answer nor are changed by it.
        let first = a
            .generate(&target(14e6), GenerateMode::Argmax)
            .unwrap()
            .arch;
        for _ in 0..5 {
            a.generate(&target(14e6), GenerateMode::Sample).unwrap();
        }
        assert_eq!(a.counter(), 5);
        let again = a
            .generate(&target(14e6), GenerateMode::Argmax)
            .unwrap()
            .arch;
        assert_eq!(first, again);
        assert_eq!(a.counter(), 5);
        assert_eq!(
            b.generate(&target(14e6), GenerateMode::Argmax)
                .unwrap()
                .arch,
            first
        );
        // Sampling, unlike argmax, varies between calls for one target.
        let samples: std::collections::BTreeSet<Arch> = (0..20)
            .map(|_| {
                b.generate(&target(14e6), GenerateMode::Sample)
                    .unwrap()
                    .arch
            })
            .collect();
        assert!(samples.len() > 1);
    }

    #[test]
    fn the_sample_stream_resumes_through_save_and_load_state() {
        let targets: Vec<f64> = (0..12).map(|i| 10e6 + 0.7e6 * i as f64).collect();
        let mut straight = started(serde_json::json!({}));
        let all: Vec<Arch> = targets
            .iter()
            .map(|&t| {
                straight
                    .generate(&target(t), GenerateMode::Sample)
                    .unwrap()
                    .arch
            })
            .collect();
        let mut first = started(serde_json::json!({}));
        for &t in &targets[..5] {
            first.generate(&target(t), GenerateMode::Sample).unwrap();
        }
        let state = first.save_state().unwrap();
        let mut resumed = started(serde_json::json!({}));
        resumed.load_state(&state).unwrap();
        let tail: Vec<Arch> = targets[5..]
            .iter()
            .map(|&t| {
                resumed
                    .generate(&target(t), GenerateMode::Sample)
                    .unwrap()
                    .arch
            })
            .collect();
        assert_eq!(tail, all[5..]);
        // Without the state, a fresh generator starts the stream over: different draws.
        let mut fresh = started(serde_json::json!({}));
        let restarted: Vec<Arch> = targets[5..]
            .iter()
            .map(|&t| {
                fresh
                    .generate(&target(t), GenerateMode::Sample)
                    .unwrap()
                    .arch
            })
            .collect();
        assert_ne!(restarted, tail);
    }

    #[test]
    fn no_parameters_and_no_gradient() {
        let mut generator = started(serde_json::json!({}));
        assert!(generator.parameters().is_empty());
        let generation = generator
            .generate(&target(12e6), GenerateMode::Argmax)
            .unwrap();
        assert!(generation.gates.is_empty() && generation.extra_loss.is_none());
        let err = generator
            .generate(&Tensor::from_slice(&[1.0f32, 2.0]), GenerateMode::Sample)
            .err()
            .unwrap();
        assert!(err.message.contains("scalar"), "{err}");
    }

    #[test]
    fn bad_configs_name_the_field() {
        for (config, field) in [
            (r#"{"bin_width": 0}"#, "bin_width"),
            (r#"{"bin_width": -3}"#, "bin_width"),
            (r#"{"max_tries": 0}"#, "max_tries"),
            (r#"{"metric": "flops"}"#, "flops"),
            (r#"{"bogus": 1}"#, "bogus"),
        ] {
            let err = RandomGenerator::from_config(config).err().unwrap();
            assert_eq!(err.kind, nas_sdk::ErrorKind::Config, "{config}");
            assert!(err.message.contains(field), "{config}: {err}");
        }
        let default: RandomConfig =
            serde_json::from_value(RandomGenerator::default_config()).unwrap();
        assert_eq!(default, RandomGenerator::from_config("{}").unwrap().config);
    }
}
