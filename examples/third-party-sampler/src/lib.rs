//! A third-party sampler plugin (the one `docs/sdk-guide.md` walks through): each step trains the
//! largest subnet and a uniformly drawn one, with the mean of their losses.

use nas_sdk::{
    rng, Arch, ConfiguredComponent, Decision, HostContext, Metric, PathPlan,
    PluginError, PluginResult, Sampler, StepInfo, StepPlan,
};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Configuration.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Uniform paths added to the largest one each step.
    pub random_paths: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config { random_paths: 1 }
    }
}

/// The sampler.
pub struct LargestPlusRandom {
    config: Config,
    decisions: Vec<Decision>,
    largest: Arch,
    seed: u64,
}

impl ConfiguredComponent for LargestPlusRandom {
    const NAME: &'static str = "largest-plus-random";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "the largest subnet and uniform ones each step (example plugin)";
    type Config = Config;

    fn from_parsed(config: Config) -> PluginResult<Self> {
        if config.random_paths > 16 {
            return Err(PluginError::config(format!(
                "largest-plus-random: field `random_paths` must be at most 16, got {}",
                config.random_paths
            )));
        }
        Ok(LargestPlusRandom {
            config,
            decisions: Vec::new(),
            largest: Arch::new(Vec::new()),
            seed: 0,
        })
    }
}

impl Sampler for LargestPlusRandom {
    fn start(&mut self, host: HostContext) -> PluginResult<()> {
        self.decisions = host.decisions()?;
        self.largest = host.extremes(Metric::Macs)?.1;
        self.seed = host.run_info().seed;
        Ok(())
    }

    fn plan(&mut self, step: &StepInfo) -> PluginResult<StepPlan> {
        // Keyed by (seed, step): a resumed run and every data-parallel rank plan the same step.
        let mut rng = rng::stream(self.seed, step.step, "largest-plus-random");
        let mut plan = StepPlan::single(self.largest.clone());
        for _ in 0..self.config.random_paths {
            let arch = self
                .decisions
                .iter()
                .map(|d| rng.gen_range(0..d.options.len() as u32))
                .collect();
            plan.paths.push(PathPlan::labels(Arch::new(arch)));
        }
        let paths = plan.paths.len() as f64;
        for path in plan.paths.iter_mut() {
            path.loss_scale = 1.0 / paths;
        }
        Ok(plan)
    }
}

nas_sdk::export_plugin!(nas_sdk::plugin::Registry::new().sampler::<LargestPlusRandom>());
