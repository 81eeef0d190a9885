//! Plain data that crosses the boundary: architectures, decisions, complexity, step plans.
//!
//! Every type here is `#[repr(C)]` + [`StableAbi`], so its layout is checked when a plugin loads.
//! Adding a field to any of them changes the layout and needs a major SDK version; forward-looking
//! fields that later methods use (gates, generator requests, momentum groups) are settled here now.

use abi_stable::{
    std_types::{ROption, RString, RVec},
    StableAbi,
};
use serde::{Deserialize, Serialize};

/// One architecture: a choice index per decision, in the order of the space's decisions.
///
/// ```
/// use nas_sdk::Arch;
/// let arch = Arch::new(vec![3, 3, 3, 3, 3, 3]);
/// assert_eq!(arch.choices(), &[3, 3, 3, 3, 3, 3]);
/// ```
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Arch {
    /// `choices[i]` indexes `decisions[i].options`.
    pub choices: RVec<u32>,
}

impl Arch {
    /// An arch from its choice indices.
    pub fn new(choices: Vec<u32>) -> Self {
        Arch {
            choices: choices.into(),
        }
    }

    /// The choice indices.
    pub fn choices(&self) -> &[u32] {
        &self.choices
    }

    /// Checks that the arch has one valid choice per decision.
    pub fn validate(&self, decisions: &[Decision]) -> Result<(), String> {
        if self.choices.len() != decisions.len() {
            return Err(format!(
                "arch has {} choices but the space has {} decisions",
                self.choices.len(),
                decisions.len()
            ));
        }
        for (choice, decision) in self.choices.iter().zip(decisions) {
            if *choice as usize >= decision.options.len() {
                return Err(format!(
                    "choice {choice} of decision `{}` is out of range (it has {} options)",
                    decision.name,
                    decision.options.len()
                ));
            }
        }
        Ok(())
    }
}

impl Serialize for Arch {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.choices.as_slice().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Arch {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<u32>::deserialize(deserializer).map(Arch::new)
    }
}

/// For entangled decisions (nested channels, heads, blocks, centre-cropped kernels): column `j`
/// of this `units x options` matrix is the keep-mask of option `j` (ShiftNAS Eq. 9, `p' = M p`).
///
/// ```
/// use nas_sdk::KeepMask;
/// // heads {1, 2, 3}: option j keeps the first j+1 heads
/// let mask = KeepMask::nested(&[1, 2, 3], 3);
/// assert_eq!(mask.get(1, 0), 0.0);
/// assert_eq!(mask.get(1, 1), 1.0);
/// ```
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct KeepMask {
    /// Number of rows (masked units: channels, heads, blocks, kernel positions).
    pub units: u32,
    /// Number of columns (the decision's options).
    pub options: u32,
    /// Row-major `units x options` values in {0, 1}.
    pub values: RVec<f32>,
}

impl KeepMask {
    /// The mask of nested options: option `j` keeps the first `kept[j]` of `units` units.
    pub fn nested(kept: &[u32], units: u32) -> Self {
        let options = kept.len() as u32;
        let mut values = vec![0.0f32; (units * options) as usize];
        for (j, &k) in kept.iter().enumerate() {
            for u in 0..k.min(units) {
                values[(u * options) as usize + j] = 1.0;
            }
        }
        KeepMask {
            units,
            options,
            values: values.into(),
        }
    }

    /// Entry `(unit, option)`.
    pub fn get(&self, unit: u32, option: u32) -> f32 {
        self.values[(unit * self.options + option) as usize]
    }
}

/// One searchable decision of a space.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct Decision {
    /// Unique name, e.g. `edge_2<-1`, `stage3.depth`, `layer4.heads`.
    pub name: RString,
    /// Human-readable label of each option (`nor_conv_3x3`, `64`, `3.5`).
    pub options: RVec<RString>,
    /// Where the decision sits (`cell`, `stage3`, `layer4`): samplers and generators group by it.
    pub group: RString,
    /// What it decides (`op`, `width`, `depth`, `kernel`, `expand`, `heads`, `mlp_ratio`,
    /// `embed_dim`): a generator keeps one output head per kind.
    pub kind: RString,
    /// Keep-mask of entangled options, `None` for path choices (e.g. NAS-Bench-201 ops).
    pub keep_mask: ROption<KeepMask>,
}

impl Decision {
    /// A path-choice decision (options are distinct ops, nothing is nested).
    pub fn choice(name: &str, group: &str, kind: &str, options: &[&str]) -> Self {
        Decision {
            name: name.into(),
            options: options.iter().map(|o| RString::from(*o)).collect(),
            group: group.into(),
            kind: kind.into(),
            keep_mask: ROption::RNone,
        }
    }
}

/// Complexity of the active subnet under the space's documented counting convention.
///
/// `macs` are multiply-accumulates of convolutions and linear layers (plus biases where the
/// space's convention counts them); NAS papers usually call this number "FLOPs".
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Complexity {
    /// Multiply-accumulates for one input (batch 1) at the space's resolution.
    pub macs: u64,
    /// Parameters of the active subnet.
    pub params: u64,
}

/// Which complexity number a budget, bin or cost refers to.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// [`Complexity::macs`].
    Macs,
    /// [`Complexity::params`].
    Params,
}

impl Metric {
    /// The metric's value in `complexity`.
    pub fn of(self, complexity: &Complexity) -> u64 {
        match self {
            Metric::Macs => complexity.macs,
            Metric::Params => complexity.params,
        }
    }
}

/// Additive cost model of a space: the cost of the fixed part plus, per decision, the cost of each
/// option. Generators use it as a differentiable complexity estimate (ShiftNAS Eq. 10).
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct CostTable {
    /// The metric the costs are in.
    pub metric: Metric,
    /// Cost of everything no decision changes.
    pub base: f64,
    /// `per_option[i][j]`: cost added by option `j` of decision `i`.
    pub per_option: RVec<RVec<f64>>,
}

impl CostTable {
    /// The model's cost of `arch`: `base` plus the cost of each chosen option.
    ///
    /// ```
    /// use nas_sdk::{Arch, CostTable, Metric};
    /// let table = CostTable {
    ///     metric: Metric::Macs,
    ///     base: 10.0,
    ///     per_option: vec![vec![0.0, 3.0].into(), vec![0.0, 5.0, 10.0].into()].into(),
    /// };
    /// assert_eq!(table.estimate(&Arch::new(vec![1, 2])), 23.0);
    /// ```
    pub fn estimate(&self, arch: &Arch) -> f64 {
        self.base
            + arch
                .choices()
                .iter()
                .zip(self.per_option.iter())
                .map(|(&j, costs)| costs[j as usize])
                .sum::<f64>()
    }
}

/// Where a supernet lives.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceSpec {
    /// `-1` for the CPU, otherwise a CUDA device index.
    pub cuda_index: i32,
}

impl DeviceSpec {
    /// The CPU.
    pub const CPU: DeviceSpec = DeviceSpec { cuda_index: -1 };

    /// As a `tch::Device`.
    pub fn to_device(self) -> tch::Device {
        if self.cuda_index < 0 {
            tch::Device::Cpu
        } else {
            tch::Device::Cuda(self.cuda_index as usize)
        }
    }

    /// From a `tch::Device` (anything but CUDA maps to the CPU).
    pub fn from_device(device: tch::Device) -> Self {
        match device {
            tch::Device::Cuda(index) => DeviceSpec {
                cuda_index: index as i32,
            },
            _ => DeviceSpec::CPU,
        }
    }
}

/// How batch normalisation behaves in one forward pass.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BnMode {
    /// Normalise with this batch's statistics and update running statistics
    /// (training, and BN recalibration).
    TrainUpdate,
    /// Normalise with this batch's statistics, leave running statistics alone
    /// (NAS-Bench-201's `batch-stats` evaluation).
    BatchStats,
    /// Normalise with running statistics (plain eval, after recalibration).
    Running,
}

/// Options of one supernet forward pass.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq)]
pub struct ForwardOptions {
    /// Dropout and other train-only regularisation on (the sandwich rule enables it only for the
    /// largest path).
    pub train: bool,
    /// Batch-norm behaviour.
    pub bn: BnMode,
    /// Running-statistics momentum for [`BnMode::TrainUpdate`]; negative means the layer's
    /// default. The host passes `1/(k+1)` on the k-th recalibration batch to get an exact
    /// cumulative average.
    pub bn_momentum: f64,
}

impl ForwardOptions {
    /// Training: regularisation on, batch statistics, running statistics updated at the default
    /// momentum.
    pub const TRAIN: ForwardOptions = ForwardOptions {
        train: true,
        bn: BnMode::TrainUpdate,
        bn_momentum: -1.0,
    };
    /// Evaluation with running statistics.
    pub const EVAL: ForwardOptions = ForwardOptions {
        train: false,
        bn: BnMode::Running,
        bn_momentum: -1.0,
    };
    /// Evaluation with this batch's statistics.
    pub const BATCH_STATS: ForwardOptions = ForwardOptions {
        train: false,
        bn: BnMode::BatchStats,
        bn_momentum: -1.0,
    };
}

/// The loss a path is trained with.
#[repr(C, u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq)]
pub enum LossKind {
    /// Cross-entropy against the labels, with label smoothing in `[0, 1)`.
    Labels {
        /// Label smoothing factor (0 for none).
        label_smoothing: f64,
    },
    /// Soft cross-entropy against path 0's detached predictions (inplace distillation).
    DistillFromFirst {
        /// Softmax temperature of teacher and student.
        temperature: f64,
    },
}

/// Which arch a path trains.
#[repr(C, u8)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub enum PathArch {
    /// A fixed arch chosen by the sampler.
    Fixed(Arch),
    /// Ask the run's generator for the arch of this target complexity (in the generator's metric
    /// units); the generator's gates and extra loss join the path.
    Generate {
        /// Target complexity.
        target: f64,
    },
}

/// One forward/backward pass of a step.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct PathPlan {
    /// The subnet.
    pub arch: PathArch,
    /// Its loss.
    pub loss: LossKind,
    /// Multiplies the path's loss before backward (e.g. `1/m` for a mean over m paths).
    pub loss_scale: f64,
    /// Which batch of the step the path sees: 0 = the step's first batch; paths with the same
    /// index share a batch. The host draws `max(batch) + 1` batches per step.
    pub batch: u32,
    /// Train-only regularisation (dropout) on for this path.
    pub regularize: bool,
}

impl PathPlan {
    /// A path training `arch` on the first batch with the plain label loss.
    pub fn labels(arch: Arch) -> Self {
        PathPlan {
            arch: PathArch::Fixed(arch),
            loss: LossKind::Labels {
                label_smoothing: 0.0,
            },
            loss_scale: 1.0,
            batch: 0,
            regularize: true,
        }
    }
}

/// How the learning rate of a step is set.
#[repr(C, u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq)]
pub enum LrOverride {
    /// The host's schedule.
    Schedule,
    /// The schedule's value times this factor.
    Scale(f64),
    /// This absolute learning rate (e.g. CaLR computes its own decay).
    Absolute(f64),
}

/// What a sampler asks the host to do in one step.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct StepPlan {
    /// One or more paths; gradients of all paths accumulate before the single optimizer update.
    pub paths: RVec<PathPlan>,
    /// Optimizer state to use for this update (momentum separation); 0 is the default group.
    /// Each group keeps full optimizer state over the same shared weights, created on first use.
    pub momentum_group: u32,
    /// Learning rate of this update.
    pub lr: LrOverride,
    /// Ask the host to keep a copy of the weights before this step's update (ShiftNAS Eq. 8).
    /// The copy lives only for this step: the host uses it for the step's [`StepPlan::probes`]
    /// and drops it.
    pub keep_previous_weights: bool,
    /// Held-out probes to run after this step's update (needs `keep_previous_weights`): for each
    /// target complexity, the run's generator's argmax arch for it is evaluated on one held-out
    /// batch under the weights after and before the update; the results come back in
    /// [`StepFeedback::probes`]. Empty for none.
    pub probes: RVec<f64>,
    /// Values the sampler wants logged with this step in `metrics.jsonl`, as a JSON object (empty
    /// for none). A `"distribution"` object with `"labels"` and `"probabilities"` lists is also
    /// drawn by the host as a heat map over the run.
    pub report: RString,
}

impl StepPlan {
    /// A plan training one path with the defaults.
    pub fn single(arch: Arch) -> Self {
        StepPlan {
            paths: vec![PathPlan::labels(arch)].into(),
            momentum_group: 0,
            lr: LrOverride::Schedule,
            keep_previous_weights: false,
            probes: RVec::new(),
            report: RString::new(),
        }
    }
}

/// Where training stands when a sampler plans a step.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepInfo {
    /// Global step, from 0 (the same on every data-parallel rank and after a resume).
    pub step: u64,
    /// Total number of steps of the run.
    pub total_steps: u64,
    /// Epoch of this step, from 0.
    pub epoch: u64,
    /// Steps per epoch.
    pub steps_per_epoch: u64,
}

/// What the host reports back after a step.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct StepFeedback {
    /// The step this is about.
    pub step: u64,
    /// The arch each path actually trained (generated archs resolved).
    pub archs: RVec<Arch>,
    /// Unscaled loss of each path.
    pub losses: RVec<f64>,
    /// Learning rate the update used.
    pub lr: f64,
    /// Results of the plan's [`StepPlan::probes`], in the same order.
    pub probes: RVec<HeldoutProbe>,
}

/// The held-out loss of the generator's arch for one target complexity, under the weights after
/// (`w_t`) and before (`w_{t-1}`) a step's update, with its derivative with respect to the target
/// (through the generator's policy and the space's gates). ShiftNAS's Eq. 8 is the difference of
/// the two gradients.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq)]
pub struct HeldoutProbe {
    /// The target complexity probed.
    pub target: f64,
    /// `L_val(w_t, AG(target))`.
    pub loss_after: f64,
    /// `L_val(w_{t-1}, AG(target))`.
    pub loss_before: f64,
    /// `d L_val(w_t, AG(target)) / d target` (0 when the generator's policy does not depend on it).
    pub grad_after: f64,
    /// `d L_val(w_{t-1}, AG(target)) / d target`.
    pub grad_before: f64,
}

/// The run facts a plugin may need at start.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunInfo {
    /// The run's seed; derive every random stream from it (see [`crate::rng`]).
    pub seed: u64,
    /// Total optimizer steps.
    pub total_steps: u64,
    /// Steps per epoch.
    pub steps_per_epoch: u64,
    /// Data-parallel rank (0 when not distributed).
    pub rank: u32,
    /// Data-parallel world size (1 when not distributed).
    pub world_size: u32,
}

/// Whether a generator samples or takes its most likely arch.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenerateMode {
    /// Straight-through Gumbel sample (training).
    Sample,
    /// Argmax policy (deployment: `argmax AG(C)`).
    Argmax,
}

/// The kind of a plugin component.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    /// A search space.
    Space,
    /// A sampler (training policy).
    Sampler,
    /// An architecture generator.
    Generator,
}

impl ComponentKind {
    /// Lower-case name (`space`, `sampler`, `generator`).
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Space => "space",
            ComponentKind::Sampler => "sampler",
            ComponentKind::Generator => "generator",
        }
    }
}

impl std::fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a plugin library says about one of its components.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct ComponentInfo {
    /// Space, sampler or generator.
    pub kind: ComponentKind,
    /// Name users refer to it by (`nb201`, `uniform`).
    pub name: RString,
    /// The component's own version (semver).
    pub version: RString,
    /// One line for `nas plugins list`.
    pub description: RString,
    /// The default config as a JSON object; a constructor given `{}` uses exactly these values.
    pub default_config: RString,
}
