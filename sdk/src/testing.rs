//! Test doubles for plugin unit tests: [`FakeHost`] stands in for the host's services, so a
//! sampler or generator can be started and driven without the `nas` binary, through the same
//! FFI objects the host would pass.
//!
//! ```
//! use nas_sdk::{testing::FakeHost, Arch, Complexity, Metric, PathArch, Sampler};
//! # use nas_sdk::{Component, HostContext, PluginResult, StepInfo, StepPlan};
//! # struct Largest { arch: Arch }
//! # impl Component for Largest {
//! #     const NAME: &'static str = "largest";
//! #     const VERSION: &'static str = "0.1.0";
//! #     const DESCRIPTION: &'static str = "always the largest arch";
//! #     fn default_config() -> serde_json::Value { serde_json::json!({}) }
//! #     fn from_config(_: &str) -> PluginResult<Self> { Ok(Largest { arch: Arch::new(vec![]) }) }
//! # }
//! # impl Sampler for Largest {
//! #     fn start(&mut self, host: HostContext) -> PluginResult<()> {
//! #         self.arch = host.extremes(Metric::Macs)?.1;
//! #         Ok(())
//! #     }
//! #     fn plan(&mut self, _: &StepInfo) -> PluginResult<StepPlan> {
//! #         Ok(StepPlan::single(self.arch.clone()))
//! #     }
//! # }
//!
//! // Four decisions of three options; MACs grow with every choice.
//! let host = FakeHost::choices(4, &["a", "b", "c"])
//!     .with_seed(7)
//!     .with_complexity(|arch| {
//!         let sum: u64 = arch.choices().iter().map(|&c| c as u64).sum();
//!         Ok(Complexity { macs: 1_000_000 * (1 + sum), params: 0 })
//!     });
//! let mut sampler = Largest::from_config("{}").unwrap();
//! sampler.start(host.context()).unwrap();
//! let plan = sampler.plan(&host.step_info(0)).unwrap();
//! assert_eq!(plan.paths[0].arch, PathArch::Fixed(Arch::new(vec![2; 4])));
//! assert_eq!(host.context().complexity(&Arch::new(vec![2; 4])).unwrap().macs, 9_000_000);
//! ```

use std::rc::Rc;

use crate::{
    api::{Component, HostServices, Sampler, SearchSpace},
    host::{HostContext, SamplerClient},
    Arch, Complexity, CostTable, Decision, ErrorKind, Metric, PluginError, PluginResult, RunInfo,
    StepInfo,
};

type ComplexityFn = Rc<dyn Fn(&Arch) -> PluginResult<Complexity>>;
type ExtremesFn = Rc<dyn Fn(Metric) -> PluginResult<(Arch, Arch)>>;
type CostTableFn = Rc<dyn Fn(Metric) -> PluginResult<CostTable>>;
type SamplerFn = Rc<dyn Fn(&str) -> PluginResult<SamplerClient>>;

/// A configurable stand-in for the host's [`HostServices`].
///
/// Out of the box it has the given decisions and
///
/// - run info: seed 0, 100 steps of which 10 per epoch, rank 0 of 1;
/// - complexity: zero for every arch that fits the decisions (others are refused, as a space
///   refuses them);
/// - extremes: every decision's first option, and every decision's last option;
/// - no cost table and no samplers (both answer with an error).
///
/// Each `with_*` method replaces one of these. [`FakeHost::context`] hands it to a plugin's
/// `start` as the [`HostContext`] the host would pass; clones share nothing mutable.
#[derive(Clone)]
pub struct FakeHost {
    run_info: RunInfo,
    decisions: Vec<Decision>,
    complexity: ComplexityFn,
    extremes: ExtremesFn,
    cost_table: CostTableFn,
    samplers: Vec<(String, SamplerFn)>,
}

impl FakeHost {
    /// A host over `decisions` with the defaults above.
    pub fn new(decisions: Vec<Decision>) -> Self {
        let sizes: Vec<u32> = decisions.iter().map(|d| d.options.len() as u32).collect();
        FakeHost {
            run_info: RunInfo {
                seed: 0,
                total_steps: 100,
                steps_per_epoch: 10,
                rank: 0,
                world_size: 1,
            },
            decisions,
            complexity: Rc::new(|_| Ok(Complexity { macs: 0, params: 0 })),
            extremes: Rc::new(move |_| {
                Ok((
                    Arch::new(vec![0; sizes.len()]),
                    Arch::new(sizes.iter().map(|&n| n.saturating_sub(1)).collect()),
                ))
            }),
            cost_table: Rc::new(|_| {
                Err(PluginError::unsupported(
                    "the fake host has no cost table (see FakeHost::with_cost_table)",
                ))
            }),
            samplers: Vec::new(),
        }
    }

    /// `count` path-choice decisions `d0`, `d1`, ... over `options` (group `cell`, kind `op`), as
    /// [`Decision::choice`] makes them.
    pub fn choices(count: usize, options: &[&str]) -> Self {
        FakeHost::new(
            (0..count)
                .map(|i| Decision::choice(&format!("d{i}"), "cell", "op", options))
                .collect(),
        )
    }

    /// A host whose decisions, complexity, extremes and cost table are those of `space` (which
    /// need not be built: none of these needs weights), as the real host forwards them.
    pub fn for_space<S: SearchSpace>(space: S) -> Self {
        let space = Rc::new(space);
        let mut host = FakeHost::new(space.decisions());
        let (a, b, c) = (space.clone(), space.clone(), space);
        host.complexity = Rc::new(move |arch| a.complexity(arch));
        host.extremes = Rc::new(move |metric| b.extremes(metric));
        host.cost_table = Rc::new(move |metric| c.cost_table(metric));
        host
    }

    /// Replaces the run info.
    pub fn with_run_info(mut self, run_info: RunInfo) -> Self {
        self.run_info = run_info;
        self
    }

    /// Sets the run seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.run_info.seed = seed;
        self
    }

    /// Sets the run's total steps and steps per epoch.
    pub fn with_steps(mut self, total_steps: u64, steps_per_epoch: u64) -> Self {
        self.run_info.total_steps = total_steps;
        self.run_info.steps_per_epoch = steps_per_epoch;
        self
    }

    /// Sets this process's rank and the number of processes (data-parallel runs).
    pub fn with_rank(mut self, rank: u32, world_size: u32) -> Self {
        self.run_info.rank = rank;
        self.run_info.world_size = world_size;
        self
    }

    /// Computes complexity with `complexity`, for archs that fit the decisions.
    pub fn with_complexity(
        mut self,
        complexity: impl Fn(&Arch) -> PluginResult<Complexity> + 'static,
    ) -> Self {
        self.complexity = Rc::new(complexity);
        self
    }

    /// Answers `extremes` with `(smallest, largest)` for every metric.
    pub fn with_extremes(mut self, smallest: Arch, largest: Arch) -> Self {
        self.extremes = Rc::new(move |_| Ok((smallest.clone(), largest.clone())));
        self
    }

    /// Answers `cost_table` with `cost_table`.
    pub fn with_cost_table(
        mut self,
        cost_table: impl Fn(Metric) -> PluginResult<CostTable> + 'static,
    ) -> Self {
        self.cost_table = Rc::new(cost_table);
        self
    }

    /// Lets `create_sampler` build `S` (by [`Component::NAME`], from the config it is given) in
    /// process, as the host would load it from a plugin library.
    pub fn with_sampler<S: Sampler + Component>(mut self) -> Self {
        self.samplers.push((
            S::NAME.to_string(),
            Rc::new(|config| S::from_config(config).map(SamplerClient::from_sampler)),
        ));
        self
    }

    /// The [`HostContext`] a plugin's `start` receives, over a clone of this host.
    pub fn context(&self) -> HostContext {
        HostContext::from_services(self.clone())
    }

    /// The [`StepInfo`] the host passes to `plan` at `step`, from this host's run info.
    pub fn step_info(&self, step: u64) -> StepInfo {
        StepInfo {
            step,
            total_steps: self.run_info.total_steps,
            epoch: step / self.run_info.steps_per_epoch.max(1),
            steps_per_epoch: self.run_info.steps_per_epoch,
        }
    }
}

impl HostServices for FakeHost {
    fn run_info(&self) -> RunInfo {
        self.run_info
    }
    fn decisions(&self) -> Vec<Decision> {
        self.decisions.clone()
    }
    fn complexity(&self, arch: &Arch) -> PluginResult<Complexity> {
        arch.validate(&self.decisions).map_err(PluginError::arch)?;
        (self.complexity)(arch)
    }
    fn extremes(&self, metric: Metric) -> PluginResult<(Arch, Arch)> {
        (self.extremes)(metric)
    }
    fn cost_table(&self, metric: Metric) -> PluginResult<CostTable> {
        (self.cost_table)(metric)
    }
    fn create_sampler(&self, name: &str, config: &str) -> PluginResult<SamplerClient> {
        let (_, create) = self
            .samplers
            .iter()
            .find(|(known, _)| known == name)
            .ok_or_else(|| {
                PluginError::new(
                    ErrorKind::NotFound,
                    format!("the fake host has no sampler `{name}` (see FakeHost::with_sampler)"),
                )
            })?;
        create(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StepInfo as Info, StepPlan};

    /// Plans option 0 everywhere; records the seed it was started with.
    struct Zeros {
        decisions: usize,
        seed: u64,
    }

    impl Component for Zeros {
        const NAME: &'static str = "zeros";
        const VERSION: &'static str = "0.1.0";
        const DESCRIPTION: &'static str = "option 0 everywhere";
        fn default_config() -> serde_json::Value {
            serde_json::json!({})
        }
        fn from_config(config: &str) -> PluginResult<Self> {
            if config.contains("bad") {
                return Err(PluginError::config("zeros: bad config"));
            }
            Ok(Zeros {
                decisions: 0,
                seed: 0,
            })
        }
    }

    impl Sampler for Zeros {
        fn start(&mut self, host: HostContext) -> PluginResult<()> {
            self.decisions = host.decisions()?.len();
            self.seed = host.run_info().seed;
            Ok(())
        }
        fn plan(&mut self, _: &Info) -> PluginResult<StepPlan> {
            Ok(StepPlan::single(Arch::new(vec![
                self.seed as u32;
                self.decisions
            ])))
        }
    }

    #[test]
    fn defaults_and_overrides() {
        let host = FakeHost::choices(3, &["a", "b"]);
        let context = host.context();
        assert_eq!(context.run_info().total_steps, 100);
        assert_eq!(context.decisions().unwrap().len(), 3);
        let (low, high) = context.extremes(Metric::Macs).unwrap();
        assert_eq!(
            (low.choices(), high.choices()),
            (&[0, 0, 0][..], &[1, 1, 1][..])
        );
        assert_eq!(context.complexity(&high).unwrap().macs, 0);
        let err = context.complexity(&Arch::new(vec![2, 0, 0])).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Arch);
        assert_eq!(
            context.cost_table(Metric::Macs).unwrap_err().kind,
            ErrorKind::Unsupported
        );
        let host = host
            .with_seed(5)
            .with_steps(40, 4)
            .with_rank(1, 2)
            .with_extremes(Arch::new(vec![1, 0, 0]), Arch::new(vec![0, 1, 1]));
        let info = host.context().run_info();
        assert_eq!(
            (
                info.seed,
                info.total_steps,
                info.steps_per_epoch,
                info.rank,
                info.world_size
            ),
            (5, 40, 4, 1, 2)
        );
        assert_eq!(host.step_info(9).epoch, 2);
        let (low, _) = host.context().extremes(Metric::Params).unwrap();
        assert_eq!(low.choices(), &[1, 0, 0]);
    }

    #[test]
    fn samplers_are_created_by_name() {
        let host = FakeHost::choices(2, &["a", "b"])
            .with_seed(1)
            .with_sampler::<Zeros>();
        let context = host.context();
        let mut base = context.create_sampler("zeros", "{}").unwrap();
        base.start(host.context()).unwrap();
        let plan = base.plan(&host.step_info(0)).unwrap();
        assert_eq!(plan.paths.len(), 1);
        let err = context.create_sampler("zeros", "bad").err().unwrap();
        assert_eq!(err.kind, ErrorKind::Config);
        let err = context.create_sampler("other", "{}").err().unwrap();
        assert_eq!(err.kind, ErrorKind::NotFound);
    }
}
