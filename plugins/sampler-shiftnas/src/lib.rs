//! ShiftNAS sampler (Su et al., "ShiftNAS: Improving One-shot NAS via Probability Shift",
//! ICCV 2023): a learned distribution over complexity bins, from which each step draws the target
//! complexity that the run's architecture generator turns into the trained subnet.
//!
//! # Method (from the paper)
//!
//! Uniform per-decision sampling concentrates training on mid-complexity subnets. ShiftNAS
//! instead splits the space's complexity range `[min, max]` into `K` bins (the paper: steps of
//! 0.1 GFLOPs) and learns logits `B` (`1 x K`, initialised uniform, i.e. zeros). Each step a
//! target `C` is drawn from `B` by Gumbel-softmax, `G(B)`, and the generator turns it into an arch
//! (`AG(C)`): the plan's single path is `PathArch::Generate { target }`.
//!
//! `B` is updated only from a held-out split, by Eq. 8:
//!
//! ```text
//! grad_B = d/dB L_val(w_t, AG(G(B))) - d/dB L_val(w_{t-1}, AG(G(B)))
//! ```
//!
//! the gradient of the held-out loss *decrease* between two consecutive weight snapshots, so
//! descent favours the bins whose loss is still falling; the optimizer is Adam with lr `1e-3`.
//! There is no update during a warm-up (the paper: 50 epochs), then one update every `P`
//! iterations (the paper: 100); `B` is frozen in between.
//!
//! # How it runs here
//!
//! - **Draw.** At step `t`, Gumbel noise `g_k = -ln(-ln u_k)` comes from
//!   `rng::stream(seed, t, "shiftnas-target")`; the bin is `k* = argmax_k (B_k + g_k)` (an exact
//!   sample of `softmax(B)`), and the target's value is the bin centre `c_{k*}`. The relaxed
//!   target is `C~ = sum_k y_k c_k` with `y = softmax((B + g) / tau)`; as in straight-through
//!   Gumbel-softmax the value is the hard bin's centre and the gradient is that of `C~`:
//!   `dC~/dB_k = y_k (c_k - C~) / tau`.
//! - **Update steps** are `t >= warmup_steps` with `(t - warmup_steps) % update_every == 0`. Their
//!   plans set `keep_previous_weights` and ask the host for held-out `probes`; the host trains the
//!   step, then evaluates the generator's argmax arch for each probed target on one held-out batch
//!   under `w_t` and `w_{t-1}` and returns the losses and their derivatives with respect to the
//!   target. `observe` turns them into `grad_B` and takes one Adam step on `B`.
//! - **Estimator `generator`** (default; the paper's Eq. 8 chained through the generator): one
//!   probe at the step's drawn target; `grad_B_k = (grad_after - grad_before) * dC~/dB_k`.
//! - **Estimator `per-bin`** (**not from the paper**; for generators that pass no gradient to the
//!   target, such as `random`): one probe at every bin centre;
//!   `L_val(B) = sum_k softmax(B)_k L_k`, so with `q = softmax(B)` and
//!   `dL_k = loss_after_k - loss_before_k`, `grad_B_k = q_k (dL_k - sum_j q_j dL_j)`.
//! - **Adam** on `B` is plain `f64` arithmetic (B is `K` numbers), with the usual bias
//!   correction; its step count is the number of updates so far. The checkpoint keeps `B` and
//!   Adam's moments as `f64` bit patterns, so a resumed run continues bit for bit.
//! - **Report.** The plan's `report` holds
//!   `{"distribution": {"labels", "probabilities", "updates", "centres"}}` (`softmax(B)`, bin
//!   centres formatted with a unit suffix) on the first plan after `start` and on the plan after
//!   each update; otherwise it is empty. Whether a report is due is part of the saved state, so a
//!   resumed run logs exactly what the uninterrupted one logs (**not from the paper**).
//!
//! # Values the paper leaves open (each **not from the paper**)
//!
//! - `metric` (`"macs"` | `"params"`, default `macs`): the unit of the bins; it must be the
//!   generator's (the host checks).
//! - `bins = 10` when `bin_width` is null: the range split into `K` equal bins. With `bin_width`
//!   (the paper's 0.1 GFLOPs is `1e8` MACs), `K = ceil((max - min) / bin_width)` (at least 1, a
//!   quotient within `1e-9` of an integer counts as that integer), bins start at `min`, and the
//!   last bin is cut at `max`: its centre is the middle of `[low, max]`, so every target lies in
//!   `[min, max]`.
//! - `tau = 1.0`: the temperature of `G(B)` (it only shapes the gradient `dC~/dB`; the hard draw
//!   does not depend on it).
//! - `betas = [0.9, 0.999]`, `eps = 1e-8`: Adam's remaining constants (PyTorch's defaults); the
//!   paper gives only the learning rate `1e-3`.
//! - `warmup_epochs = 50.0` is the paper's; `warmup_fraction` (a share of the run's total steps,
//!   null by default) is for runs much shorter than the paper's 500 epochs. Setting both is an
//!   error; giving only `warmup_fraction` replaces the default epochs. Warm-up steps are
//!   `ceil(warmup_epochs * steps_per_epoch)` or `ceil(warmup_fraction * total_steps)` (a product
//!   within `1e-9` of an integer counts as that integer); both null means no warm-up.
//! - `update_every = 100` is the paper's `P`.
//! - The per-bin estimator (above) and `label_smoothing = 0.0` of the path's label loss.
//! - The Gumbel noise's uniform draw is `u = (n + 0.5) / 2^53` for a 53-bit integer `n`, never 0
//!   or 1.
//!
//! # Limitation (stated by the paper)
//!
//! The generator's mask mapping needs a weight-entangled space; a space with any decision without
//! a keep-mask (a path choice, as in NAS-Bench-201) is refused at `start`. With a
//! non-differentiable generator the `generator` estimator sees zero gradients and `B` stays put:
//! use `per-bin` there.

use nas_sdk::{
    plugin::parse_config, rng, ConfiguredComponent, HeldoutProbe, HostContext, LossKind, Metric,
    PathArch, PathPlan, PluginError, PluginResult, Sampler, StepFeedback, StepInfo, StepPlan,
};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// How `grad_B` is estimated from the held-out probes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Estimator {
    /// Eq. 8 chained through the generator: one probe at the drawn target (the paper).
    Generator,
    /// One probe per bin centre, `B` weighting the bins' losses (not from the paper).
    PerBin,
}

/// Configuration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ShiftnasConfig {
    /// Unit of the bins and targets (`macs` or `params`); must be the generator's.
    pub metric: Metric,
    /// Number of bins `K` when `bin_width` is null.
    pub bins: u32,
    /// Bin width in metric units (the paper: 0.1 GFLOPs, i.e. `1e8` MACs); null splits the range
    /// into `bins` equal bins.
    pub bin_width: Option<f64>,
    /// Gumbel-softmax temperature of `G(B)` (not from the paper).
    pub tau: f64,
    /// Adam learning rate on `B` (the paper: 1e-3).
    pub lr: f64,
    /// Adam's `beta1`, `beta2` (not from the paper).
    pub betas: [f64; 2],
    /// Adam's `eps` (not from the paper).
    pub eps: f64,
    /// Warm-up without updates, in epochs (the paper: 50).
    pub warmup_epochs: Option<f64>,
    /// Warm-up as a share of the run's total steps (not from the paper); exclusive with
    /// `warmup_epochs`.
    pub warmup_fraction: Option<f64>,
    /// One update of `B` every this many steps after the warm-up (the paper's `P`: 100).
    pub update_every: u64,
    /// `generator` (the paper) or `per-bin` (not from the paper).
    pub estimator: Estimator,
    /// Label smoothing of the path's loss (not from the paper).
    pub label_smoothing: f64,
}

impl Default for ShiftnasConfig {
    fn default() -> Self {
        ShiftnasConfig {
            metric: Metric::Macs,
            bins: 10,
            bin_width: None,
            tau: 1.0,
            lr: 1e-3,
            betas: [0.9, 0.999],
            eps: 1e-8,
            warmup_epochs: Some(50.0),
            warmup_fraction: None,
            update_every: 100,
            estimator: Estimator::Generator,
            label_smoothing: 0.0,
        }
    }
}

/// Largest number of bins a `bin_width` may produce (not from the paper; a guard against a width
/// in the wrong unit).
pub const MAX_BINS: usize = 10_000;

/// What a checkpoint holds. The `f64` vectors are stored as their IEEE-754 bit patterns: the
/// workspace's `serde_json` parses floats approximately (no `float_roundtrip` feature), and a
/// resumed run must continue bit for bit.
#[derive(Serialize, Deserialize)]
struct State {
    /// The logits `B` (`f64::to_bits`).
    logits_bits: Vec<u64>,
    /// Adam's first moments (`f64::to_bits`).
    m_bits: Vec<u64>,
    /// Adam's second moments (`f64::to_bits`).
    v_bits: Vec<u64>,
    /// `softmax(B)`, for people reading the checkpoint (ignored on load).
    probabilities: Vec<f64>,
    /// Updates of `B` so far (Adam's step count).
    updates: u64,
    /// Whether the next plan carries the distribution report.
    report_due: bool,
}

/// The sampler component.
pub struct ShiftnasSampler {
    config: ShiftnasConfig,
    started: bool,
    seed: u64,
    /// `[min, max]` complexity of the space in `metric` units.
    range: (f64, f64),
    centres: Vec<f64>,
    labels: Vec<String>,
    warmup: u64,
    logits: Vec<f64>,
    m: Vec<f64>,
    v: Vec<f64>,
    updates: u64,
    report_due: bool,
}

/// `x` rounded up, except that a value within `1e-9` (relative) of an integer is that integer
/// (so `0.1 * 30` is 3 steps, not 4).
fn ceil_tolerant(x: f64) -> f64 {
    let nearest = x.round();
    if (x - nearest).abs() <= 1e-9 * x.abs().max(1.0) {
        nearest
    } else {
        x.ceil()
    }
}

/// `softmax(x)`, computed stably.
fn softmax(x: &[f64]) -> Vec<f64> {
    let top = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = x.iter().map(|v| (v - top).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// A complexity value with a unit suffix (`G`, `M`, `K`) chosen from `scale`, with enough decimals
/// to tell values `width` apart (`"123.4M"`).
fn format_value(value: f64, scale: f64, width: f64) -> String {
    let (unit, suffix) = if scale >= 1e9 {
        (1e9, "G")
    } else if scale >= 1e6 {
        (1e6, "M")
    } else if scale >= 1e3 {
        (1e3, "K")
    } else {
        (1.0, "")
    };
    let half = width / unit / 2.0;
    let decimals = if half > 0.0 && half.is_finite() {
        (-half.log10()).ceil().clamp(1.0, 6.0) as usize
    } else {
        1
    };
    format!("{:.*}{suffix}", decimals, value / unit)
}

impl ConfiguredComponent for ShiftnasSampler {
    const NAME: &'static str = "shiftnas";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "ShiftNAS: a learned distribution over complexity bins, updated from held-out losses (Eq. 8); needs a generator";
    type Config = ShiftnasConfig;

    /// [`parse_config`], plus the rule between `warmup_epochs` and `warmup_fraction`, which needs
    /// to know which fields the user gave.
    fn parse(config: &str) -> PluginResult<ShiftnasConfig> {
        let mut parsed: ShiftnasConfig = parse_config(Self::NAME, config)?;
        let raw: serde_json::Value = serde_json::from_str(if config.trim().is_empty() {
            "{}"
        } else {
            config
        })
        .map_err(|e| PluginError::config(format!("config of `shiftnas`: {e}")))?;
        let given = |field: &str| raw.get(field).is_some_and(|v| !v.is_null());
        if given("warmup_fraction") {
            if given("warmup_epochs") {
                return Err(PluginError::config(
                    "shiftnas: fields `warmup_epochs` and `warmup_fraction` are both set; set only one of them",
                ));
            }
            // Only the fraction given: it replaces the default epochs.
            parsed.warmup_epochs = None;
        }
        Ok(parsed)
    }

    fn from_parsed(config: ShiftnasConfig) -> PluginResult<Self> {
        validate(&config)?;
        Ok(ShiftnasSampler {
            config,
            started: false,
            seed: 0,
            range: (0.0, 0.0),
            centres: Vec::new(),
            labels: Vec::new(),
            warmup: 0,
            logits: Vec::new(),
            m: Vec::new(),
            v: Vec::new(),
            updates: 0,
            report_due: false,
        })
    }
}

fn validate(c: &ShiftnasConfig) -> PluginResult<()> {
    let bad = |field: &str, rule: &str, value: String| {
        Err(PluginError::config(format!(
            "shiftnas: field `{field}` must be {rule}, got {value}"
        )))
    };
    if c.bins == 0 {
        return bad("bins", "at least 1", c.bins.to_string());
    }
    if let Some(width) = c.bin_width {
        if !(width.is_finite() && width > 0.0) {
            return bad("bin_width", "positive (or null)", width.to_string());
        }
    }
    if !(c.tau.is_finite() && c.tau > 0.0) {
        return bad("tau", "positive", c.tau.to_string());
    }
    if !(c.lr.is_finite() && c.lr > 0.0) {
        return bad("lr", "positive", c.lr.to_string());
    }
    if !c.betas.iter().all(|b| (0.0..1.0).contains(b)) {
        return bad("betas", "two values in [0, 1)", format!("{:?}", c.betas));
    }
    if !(c.eps.is_finite() && c.eps > 0.0) {
        return bad("eps", "positive", c.eps.to_string());
    }
    if let Some(epochs) = c.warmup_epochs {
        if !(epochs.is_finite() && epochs >= 0.0) {
            return bad(
                "warmup_epochs",
                "non-negative (or null)",
                epochs.to_string(),
            );
        }
    }
    if let Some(fraction) = c.warmup_fraction {
        if !(0.0..=1.0).contains(&fraction) {
            return bad(
                "warmup_fraction",
                "in [0, 1] (or null)",
                fraction.to_string(),
            );
        }
    }
    if c.update_every == 0 {
        return bad("update_every", "at least 1", "0".into());
    }
    if !(0.0..1.0).contains(&c.label_smoothing) {
        return bad(
            "label_smoothing",
            "in [0, 1)",
            c.label_smoothing.to_string(),
        );
    }
    Ok(())
}

impl ShiftnasSampler {
    /// `softmax(B)`: the probability of drawing each bin.
    pub fn probabilities(&self) -> Vec<f64> {
        softmax(&self.logits)
    }

    /// The logits `B`.
    pub fn logits(&self) -> &[f64] {
        &self.logits
    }

    /// The bin centres (the targets), in metric units (after `start`).
    pub fn bin_centres(&self) -> &[f64] {
        &self.centres
    }

    /// The bins' labels as reported (`"123.4M"`).
    pub fn bin_labels(&self) -> &[String] {
        &self.labels
    }

    /// `[min, max]` complexity of the space in metric units (after `start`).
    pub fn range(&self) -> (f64, f64) {
        self.range
    }

    /// Steps without updates at the start (after `start`).
    pub fn warmup_steps(&self) -> u64 {
        self.warmup
    }

    /// Updates of `B` so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Whether `step` updates `B` (and so asks for held-out probes).
    pub fn is_update_step(&self, step: u64) -> bool {
        step >= self.warmup && (step - self.warmup).is_multiple_of(self.config.update_every)
    }

    /// The Gumbel noise of `step`, one value per bin.
    fn gumbel(&self, step: u64) -> Vec<f64> {
        let mut rng = rng::stream(self.seed, step, "shiftnas-target");
        (0..self.logits.len())
            .map(|_| {
                let u = ((rng.gen::<u64>() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                -(-u.ln()).ln()
            })
            .collect()
    }

    /// The bin drawn at `step` (`argmax_k B_k + g_k`) and the noise.
    fn draw(&self, step: u64) -> (usize, Vec<f64>) {
        let noise = self.gumbel(step);
        let mut best = 0;
        for k in 1..noise.len() {
            if self.logits[k] + noise[k] > self.logits[best] + noise[best] {
                best = k;
            }
        }
        (best, noise)
    }

    /// The target of `step` (a bin centre).
    pub fn target(&self, step: u64) -> f64 {
        self.centres[self.draw(step).0]
    }

    /// The targets an update step probes.
    fn probe_targets(&self, step: u64) -> Vec<f64> {
        match self.config.estimator {
            Estimator::Generator => vec![self.target(step)],
            Estimator::PerBin => self.centres.clone(),
        }
    }

    fn report(&self) -> String {
        serde_json::json!({
            "distribution": {
                "labels": self.labels,
                "probabilities": self.probabilities(),
                "updates": self.updates,
                "centres": self.centres,
            }
        })
        .to_string()
    }

    /// `grad_B` of Eq. 8 from the step's probes.
    fn gradient(&self, step: u64, probes: &[HeldoutProbe]) -> Vec<f64> {
        match self.config.estimator {
            Estimator::Generator => {
                let (_, noise) = self.draw(step);
                let tau = self.config.tau;
                let scaled: Vec<f64> = self
                    .logits
                    .iter()
                    .zip(&noise)
                    .map(|(b, g)| (b + g) / tau)
                    .collect();
                let y = softmax(&scaled);
                let relaxed: f64 = y.iter().zip(&self.centres).map(|(y, c)| y * c).sum();
                let d_target = probes[0].grad_after - probes[0].grad_before;
                y.iter()
                    .zip(&self.centres)
                    .map(|(y, c)| d_target * y * (c - relaxed) / tau)
                    .collect()
            }
            Estimator::PerBin => {
                let q = self.probabilities();
                let delta: Vec<f64> = probes
                    .iter()
                    .map(|p| p.loss_after - p.loss_before)
                    .collect();
                let mean: f64 = q.iter().zip(&delta).map(|(q, d)| q * d).sum();
                q.iter().zip(&delta).map(|(q, d)| q * (d - mean)).collect()
            }
        }
    }

    /// One Adam step on `B` (descent).
    fn adam(&mut self, grad: &[f64]) {
        self.updates += 1;
        let [beta1, beta2] = self.config.betas;
        let t = self.updates.min(i32::MAX as u64) as i32;
        let correction1 = 1.0 - beta1.powi(t);
        let correction2 = 1.0 - beta2.powi(t);
        for (k, &g) in grad.iter().enumerate() {
            self.m[k] = beta1 * self.m[k] + (1.0 - beta1) * g;
            self.v[k] = beta2 * self.v[k] + (1.0 - beta2) * g * g;
            let m_hat = self.m[k] / correction1;
            let v_hat = self.v[k] / correction2;
            self.logits[k] -= self.config.lr * m_hat / (v_hat.sqrt() + self.config.eps);
        }
    }

    fn check_started(&self, method: &str) -> PluginResult<()> {
        if self.started {
            Ok(())
        } else {
            Err(PluginError::runtime(format!(
                "shiftnas: {method}() called before start()"
            )))
        }
    }
}

impl Sampler for ShiftnasSampler {
    fn start(&mut self, host: HostContext) -> PluginResult<()> {
        let decisions = host.decisions()?;
        if decisions.is_empty() {
            return Err(PluginError::unsupported(
                "sampler `shiftnas`: the space has no decisions",
            ));
        }
        if let Some(decision) = decisions.iter().find(|d| d.keep_mask.is_none()) {
            return Err(PluginError::unsupported(format!(
                "sampler `shiftnas` needs a weight-entangled space: decision `{}` is a path choice without a keep-mask (as in NAS-Bench-201); the ShiftNAS paper states this limitation",
                decision.name
            )));
        }
        let metric = self.config.metric;
        let (smallest, largest) = host.extremes(metric)?;
        let min = metric.of(&host.complexity(&smallest)?) as f64;
        let max = metric.of(&host.complexity(&largest)?) as f64;
        if max <= min {
            return Err(PluginError::unsupported(format!(
                "sampler `shiftnas`: the space's {metric:?} range is empty (smallest {min}, largest {max}); there is nothing to shift"
            )));
        }
        let span = max - min;
        let (centres, width) = match self.config.bin_width {
            None => {
                let k = self.config.bins as usize;
                let width = span / k as f64;
                let centres = (0..k)
                    .map(|i| (min + (i as f64 + 0.5) * width).clamp(min, max))
                    .collect();
                (centres, width)
            }
            Some(width) => {
                let count = ceil_tolerant(span / width).max(1.0);
                if count > MAX_BINS as f64 {
                    return Err(PluginError::config(format!(
                        "shiftnas: field `bin_width` = {width} gives {count} bins over [{min}, {max}] (at most {MAX_BINS}); is it in {metric:?} units?"
                    )));
                }
                let centres = (0..count as usize)
                    .map(|i| {
                        let low = min + i as f64 * width;
                        let high = (low + width).min(max);
                        (0.5 * (low + high)).clamp(min, max)
                    })
                    .collect();
                (centres, width)
            }
        };
        self.centres = centres;
        self.labels = self
            .centres
            .iter()
            .map(|&c| format_value(c, max, width))
            .collect();
        let k = self.centres.len();
        self.logits = vec![0.0; k];
        self.m = vec![0.0; k];
        self.v = vec![0.0; k];
        self.updates = 0;
        self.report_due = true;
        self.range = (min, max);
        let run = host.run_info();
        self.seed = run.seed;
        self.warmup = match (self.config.warmup_epochs, self.config.warmup_fraction) {
            (Some(epochs), None) => ceil_tolerant(epochs * run.steps_per_epoch as f64) as u64,
            (None, Some(fraction)) => ceil_tolerant(fraction * run.total_steps as f64) as u64,
            (None, None) => 0,
            (Some(_), Some(_)) => {
                return Err(PluginError::config(
                    "shiftnas: fields `warmup_epochs` and `warmup_fraction` are both set; set only one of them",
                ))
            }
        };
        self.started = true;
        Ok(())
    }

    fn plan(&mut self, step: &StepInfo) -> PluginResult<StepPlan> {
        self.check_started("plan")?;
        let target = self.target(step.step);
        let update = self.is_update_step(step.step);
        let report = if self.report_due {
            self.report_due = false;
            self.report()
        } else {
            String::new()
        };
        Ok(StepPlan {
            paths: vec![PathPlan {
                arch: PathArch::Generate { target },
                loss: LossKind::Labels {
                    label_smoothing: self.config.label_smoothing,
                },
                loss_scale: 1.0,
                batch: 0,
                regularize: true,
            }]
            .into(),
            momentum_group: 0,
            lr: nas_sdk::LrOverride::Schedule,
            keep_previous_weights: update,
            probes: if update {
                self.probe_targets(step.step).into()
            } else {
                Default::default()
            },
            report: report.into(),
        })
    }

    fn observe(&mut self, feedback: &StepFeedback) -> PluginResult<()> {
        self.check_started("observe")?;
        let step = feedback.step;
        let requested = if self.is_update_step(step) {
            self.probe_targets(step)
        } else {
            Vec::new()
        };
        if feedback.probes.len() != requested.len() {
            return Err(PluginError::runtime(format!(
                "shiftnas: at step {step} the host returned {} probes for {} requested",
                feedback.probes.len(),
                requested.len()
            )));
        }
        if requested.is_empty() {
            return Ok(());
        }
        for (probe, &target) in feedback.probes.iter().zip(&requested) {
            if (probe.target - target).abs() > 1e-6 * target.abs().max(1.0) {
                return Err(PluginError::runtime(format!(
                    "shiftnas: at step {step} the host answered a probe of target {} where {target} was requested",
                    probe.target
                )));
            }
            let values = [
                probe.loss_after,
                probe.loss_before,
                probe.grad_after,
                probe.grad_before,
            ];
            if !values.iter().all(|v| v.is_finite()) {
                return Err(PluginError::runtime(format!(
                    "shiftnas: at step {step} the probe of target {target} is not finite: {probe:?}"
                )));
            }
        }
        let grad = self.gradient(step, &feedback.probes);
        self.adam(&grad);
        self.report_due = true;
        Ok(())
    }

    fn save_state(&self) -> PluginResult<String> {
        self.check_started("save_state")?;
        let bits = |x: &[f64]| x.iter().map(|v| v.to_bits()).collect();
        serde_json::to_string(&State {
            logits_bits: bits(&self.logits),
            m_bits: bits(&self.m),
            v_bits: bits(&self.v),
            probabilities: self.probabilities(),
            updates: self.updates,
            report_due: self.report_due,
        })
        .map_err(|e| PluginError::runtime(format!("shiftnas: {e}")))
    }

    fn load_state(&mut self, state: &str) -> PluginResult<()> {
        self.check_started("load_state")?;
        let state: State = serde_json::from_str(state)
            .map_err(|e| PluginError::runtime(format!("shiftnas: unreadable saved state: {e}")))?;
        let k = self.centres.len();
        let floats = |x: &[u64]| x.iter().map(|&b| f64::from_bits(b)).collect::<Vec<f64>>();
        let (logits, m, v) = (
            floats(&state.logits_bits),
            floats(&state.m_bits),
            floats(&state.v_bits),
        );
        if logits.len() != k || m.len() != k || v.len() != k {
            return Err(PluginError::runtime(format!(
                "shiftnas: the checkpoint has {} bins, this run has {k} (the space, `metric`, `bins` or `bin_width` changed)",
                logits.len()
            )));
        }
        if !logits.iter().chain(&m).chain(&v).all(|x| x.is_finite()) {
            return Err(PluginError::runtime(
                "shiftnas: the checkpoint's B or Adam moments are not finite",
            ));
        }
        self.logits = logits;
        self.m = m;
        self.v = v;
        self.updates = state.updates;
        self.report_due = state.report_due;
        Ok(())
    }
}

nas_sdk::export_plugin!(nas_sdk::plugin::Registry::new().sampler::<ShiftnasSampler>());

#[cfg(test)]
mod tests;
