//! DYNAS (Jeon et al., "Subnet-Aware Dynamic Supernet Training for Neural Architecture Search",
//! CVPR 2025): complexity-aware learning rate (CaLR) and momentum separation (MS), as a wrapper
//! over any base sampler, which the host loads by name through the normal plugin path.
//!
//! **CaLR.** `lr_t(a) = lr0 * ((1 - eta_min) * (1 - t/T)^gamma(a) + eta_min)` with `t` the global
//! step and `T` the total steps; `gamma(a) = w ln C(a) + tau`, `C` the parameter count of the
//! active subnet from the space's own counter, chosen so that `gamma(C_min) = gamma_max` and
//! `gamma(C_max) = 1 / gamma_max`; `C_min`, `C_max` are the space's smallest and largest subnets.
//! Large subnets keep a larger LR, small ones decay fast. CaLR sets the learning rate itself
//! (`lr0`): the host's `optim.lr` and schedule are not used while it is on.
//!
//! With several paths per step (FairNAS, sandwich) the update uses the mean of the paths' LR
//! factors, and each path's loss is scaled by its factor over that mean, so every path's gradient
//! is applied at its own CaLR rate and weight decay at the mean rate (not from the paper, which
//! has one path per update). `calr_mode = "loss-scale"` instead reproduces the official FairNAS
//! code: the LR stays `lr0` and each path's loss is scaled by `(1 - t/T)^gamma(a)` (not
//! equivalent under weight decay).
//!
//! **MS.** One decision (the split) is drawn once from the run seed (or set by `split_decision`);
//! subnets are grouped by their choice on it, and each group has its own optimizer state (momentum
//! buffers) over the shared weights. A one-path step uses its path's group. A multi-path step
//! draws one group uniformly (seeded by the step; not from the paper) and all its paths take that
//! group's choice on the split decision, the other decisions keeping the base sampler's draws (as
//! the official FairNAS variant does).
//!
//! **Generated paths** (a base sampler such as `shiftnas` that plans `PathArch::Generate`): the
//! arch is not known when planning, only its target complexity, so (not from either paper) CaLR
//! takes `gamma` from the target on a second line through the space's extremes in the target's
//! metric (`generated_metric`, which must be the generator's), and MS groups such a path by its
//! target: the metric's range split into as many equal groups as the split decision has options.

use nas_sdk::{
    rng, Arch, ConfiguredComponent, Decision, HostContext, LrOverride, Metric, PathArch,
    PluginError, PluginResult, Sampler, SamplerClient, StepFeedback, StepInfo, StepPlan,
};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// How CaLR acts on a step.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CalrMode {
    /// Set the learning rate (the paper's CaLR).
    Lr,
    /// Scale each path's loss by `(1 - t/T)^gamma` at a constant `lr0` (official FairNAS code).
    LossScale,
}

/// Configuration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DynasConfig {
    /// Base sampler name (`uniform`, `fairnas`, `sandwich`, or `path/lib.so:name`).
    pub base: String,
    /// The base sampler's config.
    pub base_config: serde_json::Value,
    /// Complexity-aware learning rate on.
    pub calr: bool,
    /// Momentum separation on.
    pub ms: bool,
    /// Initial learning rate of CaLR (official: 0.025).
    pub lr0: f64,
    /// `gamma` of the smallest subnet; the largest gets its inverse (official: 4).
    pub gamma_max: f64,
    /// Floor of the LR factor (official: 0).
    pub eta_min: f64,
    /// `lr` or `loss-scale`.
    pub calr_mode: CalrMode,
    /// Index of the split decision; `null` draws it from the run seed.
    pub split_decision: Option<u32>,
    /// The metric of generated paths' targets (`macs` or `params`; the generator's metric).
    pub generated_metric: Metric,
}

impl Default for DynasConfig {
    fn default() -> Self {
        DynasConfig {
            base: "uniform".into(),
            base_config: serde_json::json!({}),
            calr: true,
            ms: true,
            lr0: 0.025,
            gamma_max: 4.0,
            eta_min: 0.0,
            calr_mode: CalrMode::Lr,
            split_decision: None,
            generated_metric: Metric::Macs,
        }
    }
}

/// CaLR's exponent as a function of the parameter count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gamma {
    /// Slope `w`.
    pub w: f64,
    /// Offset `tau`.
    pub tau: f64,
}

impl Gamma {
    /// The line through `(ln c_min, gamma_max)` and `(ln c_max, 1 / gamma_max)`.
    pub fn new(c_min: u64, c_max: u64, gamma_max: f64) -> PluginResult<Self> {
        if c_min == 0 || c_max <= c_min {
            return Err(PluginError::unsupported(format!(
                "dynas: CaLR needs subnets of different positive sizes (smallest {c_min}, largest {c_max} parameters)"
            )));
        }
        let gamma_min = 1.0 / gamma_max;
        let w = -(gamma_max - gamma_min) / ((c_max as f64).ln() - (c_min as f64).ln());
        let tau = gamma_min - w * (c_max as f64).ln();
        Ok(Gamma { w, tau })
    }

    /// `gamma(C)`.
    pub fn at(&self, params: u64) -> f64 {
        self.w * (params as f64).ln() + self.tau
    }
}

#[derive(Serialize, Deserialize)]
struct State {
    split: u32,
    base: String,
}

/// The wrapper sampler.
pub struct DynasSampler {
    config: DynasConfig,
    base: Option<SamplerClient>,
    host: Option<HostContext>,
    decisions: Vec<Decision>,
    gamma: Option<Gamma>,
    /// CaLR's line and the range for generated paths, in `generated_metric` units.
    target_gamma: Option<Gamma>,
    target_range: (u64, u64),
    split: u32,
    seed: u64,
}

impl ConfiguredComponent for DynasSampler {
    const NAME: &'static str = "dynas";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "DYNAS CaLR + momentum separation over any base sampler (config `base`)";
    type Config = DynasConfig;

    fn from_parsed(config: DynasConfig) -> PluginResult<Self> {
        if config.base.is_empty() {
            return Err(PluginError::config(
                "dynas: field `base` must name a sampler",
            ));
        }
        if config.lr0.is_nan() || config.lr0 <= 0.0 {
            return Err(PluginError::config(format!(
                "dynas: field `lr0` must be positive, got {}",
                config.lr0
            )));
        }
        if config.gamma_max.is_nan() || config.gamma_max <= 1.0 {
            return Err(PluginError::config(format!(
                "dynas: field `gamma_max` must be greater than 1, got {}",
                config.gamma_max
            )));
        }
        if !(0.0..1.0).contains(&config.eta_min) {
            return Err(PluginError::config(format!(
                "dynas: field `eta_min` must be in [0, 1), got {}",
                config.eta_min
            )));
        }
        if !config.base_config.is_object() {
            return Err(PluginError::config(
                "dynas: field `base_config` must be an object",
            ));
        }
        Ok(DynasSampler {
            config,
            base: None,
            host: None,
            decisions: Vec::new(),
            gamma: None,
            target_gamma: None,
            target_range: (0, 0),
            split: 0,
            seed: 0,
        })
    }
}

impl DynasSampler {
    /// The split decision (after `start`).
    pub fn split_decision(&self) -> u32 {
        self.split
    }

    /// CaLR's `gamma` for a parameter count (after `start`).
    pub fn gamma(&self, params: u64) -> Option<f64> {
        self.gamma.map(|g| g.at(params))
    }

    /// CaLR's LR factor `(1 - eta_min) (1 - t/T)^gamma + eta_min` for `params` at step `t` of `T`.
    pub fn lr_factor(&self, params: u64, step: u64, total: u64) -> Option<f64> {
        let progress = 1.0 - (step as f64 / total.max(1) as f64).min(1.0);
        self.gamma(params)
            .map(|gamma| (1.0 - self.config.eta_min) * progress.powf(gamma) + self.config.eta_min)
    }

    fn host(&self) -> PluginResult<&HostContext> {
        self.host
            .as_ref()
            .ok_or_else(|| PluginError::runtime("dynas: plan() called before start()"))
    }

    fn base(&mut self) -> PluginResult<&mut SamplerClient> {
        self.base
            .as_mut()
            .ok_or_else(|| PluginError::runtime("dynas: plan() called before start()"))
    }
}

fn fixed_arch(path: &mut nas_sdk::PathPlan) -> PluginResult<&mut Arch> {
    match &mut path.arch {
        PathArch::Fixed(arch) => Ok(arch),
        PathArch::Generate { .. } => Err(PluginError::unsupported(
            "dynas: the base sampler mixed generated paths with several paths per step; MS needs every path's arch when planning",
        )),
    }
}

impl DynasSampler {
    /// The MS group of a generated path: which of `options` equal slices of the complexity range
    /// its target falls in.
    fn target_group(&self, target: f64, options: u32) -> u32 {
        let (low, high) = self.target_range;
        let share = (target - low as f64) / (high - low).max(1) as f64;
        ((share * options as f64).floor().max(0.0) as u32).min(options - 1)
    }

    /// CaLR's `(lr factor, loss-scale decay)` for one path at `step`.
    fn path_factors(&self, path: &nas_sdk::PathPlan, step: &StepInfo) -> PluginResult<(f64, f64)> {
        let progress = 1.0 - (step.step as f64 / step.total_steps.max(1) as f64).min(1.0);
        let gamma = match &path.arch {
            PathArch::Fixed(arch) => {
                let params = self.host()?.complexity(arch)?.params;
                self.gamma(params).expect("calr is on")
            }
            PathArch::Generate { target } => self
                .target_gamma
                .expect("calr is on")
                .at(target.max(1.0) as u64),
        };
        Ok((
            (1.0 - self.config.eta_min) * progress.powf(gamma) + self.config.eta_min,
            progress.powf(gamma),
        ))
    }
}

impl Sampler for DynasSampler {
    fn start(&mut self, host: HostContext) -> PluginResult<()> {
        let base_config = self.config.base_config.to_string();
        let mut base = host
            .create_sampler(&self.config.base, &base_config)
            .map_err(|err| {
                PluginError::new(
                    err.kind,
                    format!(
                        "dynas: base sampler `{}`: {}",
                        self.config.base, err.message
                    ),
                )
            })?;
        base.start(host.clone())?;
        self.decisions = host.decisions()?;
        if self.decisions.is_empty() {
            return Err(PluginError::unsupported(
                "dynas: the space has no decisions",
            ));
        }
        self.seed = host.run_info().seed;
        self.split = match self.config.split_decision {
            Some(index) if (index as usize) < self.decisions.len() => index,
            Some(index) => {
                return Err(PluginError::config(format!(
                    "dynas: field `split_decision` is {index}, the space has {} decisions",
                    self.decisions.len()
                )))
            }
            None => {
                rng::stream(self.seed, 0, "dynas-split").gen_range(0..self.decisions.len() as u32)
            }
        };
        if self.config.calr {
            let (smallest, largest) = host.extremes(Metric::Params)?;
            let c_min = host.complexity(&smallest)?.params;
            let c_max = host.complexity(&largest)?.params;
            self.gamma = Some(Gamma::new(c_min, c_max, self.config.gamma_max)?);
        }
        let metric = self.config.generated_metric;
        let (smallest, largest) = host.extremes(metric)?;
        self.target_range = (
            metric.of(&host.complexity(&smallest)?),
            metric.of(&host.complexity(&largest)?),
        );
        if self.config.calr {
            let (low, high) = self.target_range;
            // Only needed (and only required to be well formed) for generated paths.
            self.target_gamma = Gamma::new(low, high, self.config.gamma_max).ok();
        }
        self.base = Some(base);
        self.host = Some(host);
        Ok(())
    }

    fn plan(&mut self, step: &StepInfo) -> PluginResult<StepPlan> {
        let mut plan = self.base()?.plan(step)?;
        let split = self.split as usize;
        if self.config.ms {
            let options = self.decisions[split].options.len() as u32;
            let group = if plan.paths.len() == 1 {
                match &plan.paths[0].arch {
                    PathArch::Fixed(arch) => arch.choices[split],
                    PathArch::Generate { target } => self.target_group(*target, options),
                }
            } else {
                let group = rng::stream(self.seed, step.step, "dynas-group").gen_range(0..options);
                for path in plan.paths.iter_mut() {
                    fixed_arch(path)?.choices[split] = group;
                }
                group
            };
            plan.momentum_group = group;
        }
        if self.config.calr {
            if self.target_gamma.is_none()
                && plan
                    .paths
                    .iter()
                    .any(|p| matches!(p.arch, PathArch::Generate { .. }))
            {
                return Err(PluginError::unsupported(format!(
                    "dynas: CaLR over generated paths needs subnets of different sizes in {:?} (range {:?})",
                    self.config.generated_metric, self.target_range
                )));
            }
            let mut factors = Vec::with_capacity(plan.paths.len());
            let mut decays = Vec::with_capacity(plan.paths.len());
            for path in plan.paths.iter() {
                let (factor, decay) = self.path_factors(path, step)?;
                factors.push(factor);
                decays.push(decay);
            }
            let base_scale = match plan.lr {
                LrOverride::Schedule => 1.0,
                LrOverride::Scale(scale) => scale,
                LrOverride::Absolute(_) => return Err(PluginError::unsupported(
                    "dynas: the base sampler set an absolute learning rate; CaLR sets it itself",
                )),
            };
            match self.config.calr_mode {
                CalrMode::Lr => {
                    let mean = factors.iter().sum::<f64>() / factors.len() as f64;
                    plan.lr = LrOverride::Absolute(self.config.lr0 * mean * base_scale);
                    if plan.paths.len() > 1 && mean > 0.0 {
                        for (path, factor) in plan.paths.iter_mut().zip(&factors) {
                            path.loss_scale *= factor / mean;
                        }
                    }
                }
                CalrMode::LossScale => {
                    plan.lr = LrOverride::Absolute(self.config.lr0 * base_scale);
                    for (path, decay) in plan.paths.iter_mut().zip(&decays) {
                        path.loss_scale *= decay;
                    }
                }
            }
        }
        Ok(plan)
    }

    fn observe(&mut self, feedback: &StepFeedback) -> PluginResult<()> {
        self.base()?.observe(feedback)
    }

    fn save_state(&self) -> PluginResult<String> {
        let base = self
            .base
            .as_ref()
            .ok_or_else(|| PluginError::runtime("dynas: save_state() before start()"))?
            .save_state()?;
        serde_json::to_string(&State {
            split: self.split,
            base,
        })
        .map_err(|e| PluginError::runtime(format!("dynas: {e}")))
    }

    fn load_state(&mut self, state: &str) -> PluginResult<()> {
        let state: State = serde_json::from_str(state)
            .map_err(|e| PluginError::runtime(format!("dynas: unreadable saved state: {e}")))?;
        if state.split != self.split {
            return Err(PluginError::runtime(format!(
                "dynas: the checkpoint split decision is {}, this run's is {}",
                state.split, self.split
            )));
        }
        self.base()?.load_state(&state.base)
    }
}

nas_sdk::export_plugin!(nas_sdk::plugin::Registry::new().sampler::<DynasSampler>());

#[cfg(test)]
mod tests {
    use super::*;
    use nas_sdk::Component;

    #[test]
    fn gamma_reproduces_the_nb201_table() {
        // algorithms.md section 5: C(a) = 432 + 26880 n1 + 241920 n3 + 71680 + 640, gamma_max 4.
        let gamma = Gamma::new(72_752, 1_524_272, 4.0).unwrap();
        let table = [
            (72_752u64, 4.000, 0.0625),
            (234_032, 2.560, 0.170),
            (314_672, 2.195, 0.218),
            (798_512, 1.047, 0.484),
            (879_152, 0.928, 0.526),
            (1_524_272, 0.250, 0.841),
        ];
        for (params, expected_gamma, expected_factor) in table {
            let g = gamma.at(params);
            assert!(
                (g - expected_gamma).abs() < 1e-3,
                "C={params}: gamma {g:.4} vs {expected_gamma}"
            );
            let factor = 0.5f64.powf(g);
            assert!(
                (factor - expected_factor).abs() < 1e-3,
                "C={params}: factor {factor:.4} vs {expected_factor}"
            );
        }
    }

    #[test]
    fn bad_configs_name_the_field() {
        for (config, field) in [
            (r#"{"gamma_max": 0.5}"#, "gamma_max"),
            (r#"{"lr0": 0}"#, "lr0"),
            (r#"{"base": ""}"#, "base"),
            (r#"{"eta_min": 1.5}"#, "eta_min"),
            (r#"{"bogus": 1}"#, "bogus"),
        ] {
            let err = DynasSampler::from_config(config).err().unwrap();
            assert!(err.message.contains(field), "{config}: {err}");
        }
    }
}
