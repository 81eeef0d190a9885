//! ShiftNAS architecture generator (Su et al., "ShiftNAS: Improving One-shot NAS via
//! Probability Shift", ICCV 2023): the differentiable architecture generator `AG` that maps a
//! target complexity `C` to a subnet of a weight-entangled supernet. No official code exists;
//! this crate is the reference implementation of component `shiftnas` (kind generator).
//!
//! # Method (from the paper)
//!
//! The input is the target complexity `C`. An LSTM cell with 64 hidden units emits the search
//! space's decisions one after another, with one fully connected head per decision *kind*
//! (`Decision::kind`: `width`, `depth`, `kernel`, `expand`, `resolution`, `embed_dim`, `heads`,
//! `mlp_ratio`, ...). For decision `i` the head's logits give a one-hot policy `p_i`, drawn by
//! straight-through Gumbel-softmax:
//!
//! ```text
//! y_i = softmax((logits_i + g_i) / tau),   g_i = -log(-log u),  u ~ U(0, 1)
//! p_i = onehot(argmax y_i) - stopgrad(y_i) + y_i          (one-hot in value, gradient of y_i)
//! ```
//!
//! Eq. 9, the mask mapping: `p'_i = M_i p_i`, with `M_i` the decision's keep-mask
//! (`Decision::keep_mask`, `units x options`; column `j` keeps the units of option `j`). `p'_i` is
//! the gate of decision `i` (length `units`), which the space multiplies into its activations, so
//! the task loss reaches the generator through the gates.
//!
//! Eq. 10, the complexity loss, with `b` the space's additive cost table
//! (`cost(p) = base + sum_i sum_j b_ij p_ij`):
//!
//! ```text
//! L = L_task + lambda * (sum_ij b_ij p_ij - C)^2
//! ```
//!
//! The host computes `L_task` (the supernet's loss of the gated subnet); the generator returns the
//! complexity term as `Generation::extra_loss`. The arch is the argmax of each policy.
//!
//! # Design choices (not from the paper)
//!
//! Every item below is a value or detail the paper leaves open; each is **not from the paper**.
//!
//! - **Config** (`metric`, `hidden`, `tau`, `lambda`, `exact_correction`, see [`ShiftnasConfig`]):
//!   `metric` (`"macs"` | `"params"`, default `macs`) is the unit of targets and of the cost
//!   table (not from the paper, whose experiments use FLOPs). `hidden = 64` is the paper's
//!   value. `tau = 1.0` and `lambda = 30.0` are not from the paper. `lambda` was chosen by a
//!   sweep on the small ViT and CNN presets (synthetic data, 300-1000 steps, `lambda` in
//!   {1, 10, 30, 100}): with 1 the task loss, which favours bigger subnets, outweighs a miss of a
//!   tenth of the range (a loss of 0.01) and `argmax AG(C)` misses by 10-16% on average; 30
//!   brought it to 4-7%; a lower `tau` (0.5) was much worse.
//! - **Normalised loss**: with `min`, `max` the exact complexities of the space's smallest and
//!   largest arch (`HostServices::extremes(metric)`), the squared error is of the normalised
//!   difference, so `lambda` is scale-free:
//!   `extra_loss = lambda * ((cost - C) / (max - min))^2` (not from the paper).
//! - **Exact correction** (`exact_correction`, default `true`, not from the paper): the additive
//!   table can be off by tens of percent on small spaces, so the cost's *value* is made exact by
//!   adding the detached constant `exact(arch) - table(arch)` (the host's exact complexity of the
//!   generated arch, sampled or argmax, minus the table's estimate of it); the gradient still
//!   comes from the additive table (straight-through). With `false` the cost is the table's
//!   estimate alone.
//! - **Base cost**: Eq. 10 writes `sum_ij b_ij p_ij`; here the table's `base` (the cost no
//!   decision changes) is added so the cost is a total complexity, comparable to the target `C`
//!   (the same targets the sampler plans and the host logs).
//! - **Input encoding** (not from the paper): `c = (C - min) / (max - min)`, unclamped so it stays
//!   differentiable, is a 1-feature input. The LSTM's input at step `i` is
//!   `x_i = W_c c + E_{kind(i-1)}(p_{i-1})`, where `E_k` is a per-kind linear embedding
//!   (`max_options(k) -> hidden`, with bias) of the previous decision's policy, padded with zeros
//!   to its kind's largest option count; at `i = 0` a learned start vector replaces the
//!   embedding. `W_c` has no bias (the LSTM's biases play that role). The initial `(h, c)` state
//!   is zero. The LSTM's input size equals `hidden`.
//! - **Heads**: per kind one `Linear(hidden -> max_options(kind))`; a decision with fewer options
//!   uses the first `options` logits.
//! - **Initialisation** (PyTorch's defaults, drawn from libtorch's global RNG, which the host seeds
//!   before `start`; parameters are created on the CPU and then moved, so a seed gives the same
//!   generator on every device): LSTM weights and biases `U(-1/sqrt(hidden), 1/sqrt(hidden))`;
//!   linear weights and biases `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`; `W_c` (fan-in 1) and the
//!   start vector `U(-1, 1)`. Creation order: `input.weight`, `start`, the LSTM, then per kind
//!   (in order of first appearance among the decisions) its embedding and its head.
//! - **Gumbel noise** is drawn from libtorch's CPU generator (seeded by the host per step) as
//!   `u = rand` clamped to `[1e-10, 1 - 1e-7]`, then moved to the device.
//!   [`GenerateMode::Argmax`] uses no noise: `y = softmax(logits / tau)`,
//!   `hard = onehot(argmax logits)`, with the same straight-through `p`, so the argmax arch still
//!   carries a gradient (the host's held-out probes differentiate through it).
//! - **Precision**: the network runs in `f32`; the target, the normalisation and the cost are in
//!   `f64` (complexities reach `1e9` and more); gates and `extra_loss` are returned as `f32`.
//! - **Limitation** (stated by the paper): the mask mapping needs a weight-entangled space. A
//!   space with any path-choice decision (no keep-mask, e.g. NAS-Bench-201's ops) is refused at
//!   `start`, as is a space without an additive cost table.
//!
//! Parameters (returned sorted by name, as shallow clones): `embed.<kind>.{weight,bias}`,
//! `head.<kind>.{weight,bias}`, `input.weight`, `lstm.{bias_hh,bias_ih,weight_hh,weight_ih}`,
//! `start`. The generator has no non-tensor state (`save_state` is `{}`).

use nas_sdk::{
    plugin::parse_config, Arch, ConfiguredComponent, CostTable, Decision, GenerateMode, Generation,
    Generator, HostContext, KeepMask, Metric, PluginError, PluginResult,
};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Configuration of the `shiftnas` generator. Every field has a default (see the module docs
/// for which come from the paper).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ShiftnasConfig {
    /// Unit of targets and of the cost table (`"macs"` or `"params"`; default `macs`).
    pub metric: Metric,
    /// Hidden units of the LSTM cell (64, the paper's value).
    pub hidden: u32,
    /// Gumbel-softmax temperature (default 1.0, not from the paper).
    pub tau: f64,
    /// Weight of the complexity loss (default 30.0, not from the paper; the squared error is of
    /// the difference normalised by the space's complexity range).
    pub lambda: f64,
    /// Make the cost's value exact with the detached correction `exact(arch) - table(arch)`
    /// (default `true`, not from the paper).
    pub exact_correction: bool,
}

impl Default for ShiftnasConfig {
    fn default() -> Self {
        ShiftnasConfig {
            metric: Metric::Macs,
            hidden: 64,
            tau: 1.0,
            lambda: 30.0,
            exact_correction: true,
        }
    }
}

impl ShiftnasConfig {
    /// Parses a JSON config (missing fields take their defaults); errors name the field.
    pub fn parse(json: &str) -> PluginResult<Self> {
        let name = ShiftnasGenerator::NAME;
        // Check each given field on its own first, so a type error names its field.
        let given: serde_json::Value = parse_config(name, json)?;
        let Some(given) = given.as_object() else {
            return Err(PluginError::config(format!(
                "config of `{name}` must be a table"
            )));
        };
        let defaults = serde_json::to_value(ShiftnasConfig::default())
            .map_err(|e| PluginError::runtime(format!("{name}: default config: {e}")))?;
        for (key, value) in given {
            if defaults.get(key).is_none() {
                let known: Vec<&String> = defaults
                    .as_object()
                    .map(|m| m.keys().collect())
                    .unwrap_or_default();
                return Err(PluginError::config(format!(
                    "config of `{name}`: unknown field `{key}` (known fields: {known:?})"
                )));
            }
            let mut single = defaults.clone();
            single[key] = value.clone();
            serde_json::from_value::<ShiftnasConfig>(single).map_err(|e| {
                PluginError::config(format!("config of `{name}`: field `{key}`: {e}"))
            })?;
        }
        let config: ShiftnasConfig = parse_config(name, json)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every field's range.
    pub fn validate(&self) -> PluginResult<()> {
        let name = ShiftnasGenerator::NAME;
        if self.hidden == 0 {
            return Err(PluginError::config(format!(
                "config of `{name}`: field `hidden` must be at least 1, got 0"
            )));
        }
        if !(self.tau.is_finite() && self.tau > 0.0) {
            return Err(PluginError::config(format!(
                "config of `{name}`: field `tau` must be positive and finite, got {}",
                self.tau
            )));
        }
        if !(self.lambda.is_finite() && self.lambda >= 0.0) {
            return Err(PluginError::config(format!(
                "config of `{name}`: field `lambda` must be finite and non-negative, got {}",
                self.lambda
            )));
        }
        Ok(())
    }
}

/// Straight-through Gumbel-softmax over 1-D `logits`: `y = softmax((logits + noise) / tau)`,
/// `hard = onehot(argmax(logits + noise))`, `p = hard - stopgrad(y) + y` (one-hot in value,
/// gradient of `y`). Without `noise` this is the argmax policy. Returns `p` (`f32`, on the
/// logits' device) and the chosen index.
pub fn straight_through(
    logits: &Tensor,
    tau: f64,
    noise: Option<&Tensor>,
) -> PluginResult<(Tensor, i64)> {
    let size = logits.size();
    if size.len() != 1 || size[0] < 1 {
        return Err(PluginError::runtime(format!(
            "straight_through: logits must be a non-empty vector, got shape {size:?}"
        )));
    }
    if !(tau.is_finite() && tau > 0.0) {
        return Err(PluginError::runtime(format!(
            "straight_through: tau must be positive and finite, got {tau}"
        )));
    }
    let logits = logits.to_kind(Kind::Float);
    let perturbed = match noise {
        Some(noise) => {
            if noise.size() != size {
                return Err(PluginError::runtime(format!(
                    "straight_through: noise of shape {:?} for logits of shape {size:?}",
                    noise.size()
                )));
            }
            &logits + noise.to_kind(Kind::Float).to_device(logits.device())
        }
        None => logits,
    };
    let y = (&perturbed / tau).softmax(-1, Kind::Float);
    let argmax = perturbed.detach().argmax(-1, false);
    let index = argmax.int64_value(&[]);
    let hard = argmax.one_hot(size[0]).to_kind(Kind::Float);
    let p = hard - y.detach() + y;
    Ok((p, index))
}

/// The mask mapping of Eq. 9: the gate `p' = M p` of a decision with keep-mask `M`
/// (`units x options`) for its policy `p` (length `options`). `f32`, on `p`'s device.
pub fn mask_map(keep_mask: &KeepMask, p: &Tensor) -> PluginResult<Tensor> {
    let matrix = mask_tensor(keep_mask, p.device())?;
    if p.size() != [keep_mask.options as i64] {
        return Err(PluginError::runtime(format!(
            "mask_map: policy of shape {:?} for a keep-mask of {} options",
            p.size(),
            keep_mask.options
        )));
    }
    Ok(matrix.mv(&p.to_kind(Kind::Float)))
}

fn mask_tensor(keep_mask: &KeepMask, device: Device) -> PluginResult<Tensor> {
    let (units, options) = (keep_mask.units as usize, keep_mask.options as usize);
    if units == 0 || options == 0 || keep_mask.values.len() != units * options {
        return Err(PluginError::runtime(format!(
            "keep-mask of {units} units x {options} options has {} values",
            keep_mask.values.len()
        )));
    }
    Ok(Tensor::from_slice(keep_mask.values.as_slice())
        .view([units as i64, options as i64])
        .to_device(device))
}

/// `U(-bound, bound)` on the CPU (libtorch's generator), moved to `device`, requiring grad.
fn uniform(shape: &[i64], bound: f64, device: Device) -> Tensor {
    Tensor::empty(shape, (Kind::Float, Device::Cpu))
        .uniform_(-bound, bound)
        .to_device(device)
        .set_requires_grad(true)
}

/// A linear layer `y = x W^T + b`.
struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    fn new(inputs: i64, outputs: i64, device: Device) -> Self {
        let bound = 1.0 / (inputs as f64).sqrt();
        Linear {
            weight: uniform(&[outputs, inputs], bound, device),
            bias: uniform(&[outputs], bound, device),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, Some(&self.bias))
    }
}

/// One decision as the generator uses it.
struct Slot {
    options: i64,
    kind: usize,
    mask: Tensor,
    costs: Tensor,
}

/// One decision kind: its policy embedding and output head, sized for its largest decision.
struct KindNet {
    name: String,
    options: i64,
    embed: Linear,
    head: Linear,
}

/// Everything `start` sets up.
struct Network {
    host: HostContext,
    device: Device,
    slots: Vec<Slot>,
    kinds: Vec<KindNet>,
    table: CostTable,
    min: f64,
    max: f64,
    input: Tensor,
    start: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    hidden: i64,
}

/// The ShiftNAS architecture generator (component `shiftnas`).
pub struct ShiftnasGenerator {
    config: ShiftnasConfig,
    net: Option<Network>,
}

impl ShiftnasGenerator {
    /// The generator's config.
    pub fn config(&self) -> &ShiftnasConfig {
        &self.config
    }

    /// The exact complexities `(min, max)` of the space's extremes in the config's metric
    /// (`None` before `start`).
    pub fn range(&self) -> Option<(f64, f64)> {
        self.net.as_ref().map(|n| (n.min, n.max))
    }

    fn net(&self) -> PluginResult<&Network> {
        self.net.as_ref().ok_or_else(|| {
            PluginError::runtime("generator `shiftnas`: generate called before start")
        })
    }
}

impl ConfiguredComponent for ShiftnasGenerator {
    const NAME: &'static str = "shiftnas";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "ShiftNAS generator: LSTM over decisions, straight-through Gumbel policies, mask-mapped gates, complexity loss";
    type Config = ShiftnasConfig;

    /// [`ShiftnasConfig::parse`]: errors name the field, and every field's range is checked.
    fn parse(config: &str) -> PluginResult<ShiftnasConfig> {
        ShiftnasConfig::parse(config)
    }

    fn from_parsed(config: ShiftnasConfig) -> PluginResult<Self> {
        Ok(ShiftnasGenerator { config, net: None })
    }
}

fn unsupported_choice(decision: &Decision) -> PluginError {
    PluginError::unsupported(format!(
        "generator `shiftnas` needs a weight-entangled space: decision `{}` is a path choice without a keep-mask (as in NAS-Bench-201); the ShiftNAS paper states this limitation. Use generator `random`, or a space whose decisions have keep-masks",
        decision.name
    ))
}

fn metric_name(metric: Metric) -> &'static str {
    match metric {
        Metric::Macs => "macs",
        Metric::Params => "params",
    }
}

impl Generator for ShiftnasGenerator {
    fn start(&mut self, host: HostContext, device: Device) -> PluginResult<()> {
        let metric = self.config.metric;
        let decisions = host.decisions()?;
        if decisions.is_empty() {
            return Err(PluginError::unsupported(
                "generator `shiftnas`: the space has no decisions to generate",
            ));
        }
        for decision in &decisions {
            let Some(mask) = decision.keep_mask.as_ref().into_option() else {
                return Err(unsupported_choice(decision));
            };
            let options = decision.options.len();
            if options == 0 {
                return Err(PluginError::runtime(format!(
                    "generator `shiftnas`: decision `{}` has no options",
                    decision.name
                )));
            }
            if mask.options as usize != options
                || mask.units == 0
                || mask.values.len() != mask.units as usize * options
            {
                return Err(PluginError::runtime(format!(
                    "generator `shiftnas`: the keep-mask of decision `{}` is {} units x {} options with {} values, but the decision has {options} options",
                    decision.name,
                    mask.units,
                    mask.options,
                    mask.values.len()
                )));
            }
        }
        let table = host.cost_table(metric).map_err(|e| {
            PluginError::new(
                e.kind,
                format!(
                    "generator `shiftnas` needs the space's additive cost table in `{}`: {}",
                    metric_name(metric),
                    e.message
                ),
            )
        })?;
        if table.metric != metric {
            return Err(PluginError::runtime(format!(
                "generator `shiftnas`: asked for a cost table in `{}`, the space returned one in `{}`",
                metric_name(metric),
                metric_name(table.metric)
            )));
        }
        if table.per_option.len() != decisions.len() {
            return Err(PluginError::runtime(format!(
                "generator `shiftnas`: the cost table has {} decisions, the space {}",
                table.per_option.len(),
                decisions.len()
            )));
        }
        for (costs, decision) in table.per_option.iter().zip(&decisions) {
            if costs.len() != decision.options.len() {
                return Err(PluginError::runtime(format!(
                    "generator `shiftnas`: the cost table has {} costs for decision `{}`, which has {} options",
                    costs.len(),
                    decision.name,
                    decision.options.len()
                )));
            }
            if costs.iter().any(|c| !c.is_finite()) {
                return Err(PluginError::runtime(format!(
                    "generator `shiftnas`: the cost table of decision `{}` has a non-finite cost",
                    decision.name
                )));
            }
        }
        if !table.base.is_finite() {
            return Err(PluginError::runtime(
                "generator `shiftnas`: the cost table's base cost is not finite",
            ));
        }
        let (smallest, largest) = host.extremes(metric)?;
        let min = metric.of(&host.complexity(&smallest)?) as f64;
        let max = metric.of(&host.complexity(&largest)?) as f64;
        if max <= min {
            return Err(PluginError::unsupported(format!(
                "generator `shiftnas`: the space's `{}` range is empty (smallest {min}, largest {max}); there is no target to generate for",
                metric_name(metric)
            )));
        }

        // Kinds in order of first appearance; each sized for its largest decision.
        let mut kind_names: Vec<(String, i64)> = Vec::new();
        let mut slot_kinds = Vec::with_capacity(decisions.len());
        for decision in &decisions {
            let options = decision.options.len() as i64;
            let kind = decision.kind.as_str();
            let index = match kind_names.iter().position(|(k, _)| k == kind) {
                Some(index) => {
                    kind_names[index].1 = kind_names[index].1.max(options);
                    index
                }
                None => {
                    kind_names.push((kind.to_string(), options));
                    kind_names.len() - 1
                }
            };
            slot_kinds.push(index);
        }

        let hidden = self.config.hidden as i64;
        let input = uniform(&[hidden, 1], 1.0, device);
        let start = uniform(&[hidden], 1.0, device);
        let bound = 1.0 / (hidden as f64).sqrt();
        let w_ih = uniform(&[4 * hidden, hidden], bound, device);
        let w_hh = uniform(&[4 * hidden, hidden], bound, device);
        let b_ih = uniform(&[4 * hidden], bound, device);
        let b_hh = uniform(&[4 * hidden], bound, device);
        let kinds: Vec<KindNet> = kind_names
            .into_iter()
            .map(|(name, options)| {
                let embed = Linear::new(options, hidden, device);
                let head = Linear::new(hidden, options, device);
                KindNet {
                    name,
                    options,
                    embed,
                    head,
                }
            })
            .collect();
        let mut slots = Vec::with_capacity(decisions.len());
        for ((decision, kind), costs) in decisions.iter().zip(slot_kinds).zip(&table.per_option) {
            let mask = decision
                .keep_mask
                .as_ref()
                .into_option()
                .ok_or_else(|| unsupported_choice(decision))?;
            slots.push(Slot {
                options: decision.options.len() as i64,
                kind,
                mask: mask_tensor(mask, device)?,
                costs: Tensor::from_slice(costs.as_slice()).to_device(device),
            });
        }
        self.net = Some(Network {
            host,
            device,
            slots,
            kinds,
            table,
            min,
            max,
            input,
            start,
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            hidden,
        });
        Ok(())
    }

    fn generate(&mut self, target: &Tensor, mode: GenerateMode) -> PluginResult<Generation> {
        let tau = self.config.tau;
        let net = self.net()?;
        if target.numel() != 1 {
            return Err(PluginError::runtime(format!(
                "generator `shiftnas`: the target must be a scalar, got shape {:?}",
                target.size()
            )));
        }
        let target = target
            .reshape([] as [i64; 0])
            .to_device(net.device)
            .to_kind(Kind::Double);
        let target_value = target.double_value(&[]);
        if !target_value.is_finite() {
            return Err(PluginError::runtime(format!(
                "generator `shiftnas`: the target {target_value} is not finite"
            )));
        }
        let range = net.max - net.min;
        let c = ((&target - net.min) / range).to_kind(Kind::Float);
        let x_c = (&c * &net.input.view([1, net.hidden])).view([1, net.hidden]);

        let zeros = Tensor::zeros([1, net.hidden], (Kind::Float, net.device));
        let mut state = (zeros.shallow_clone(), zeros);
        let mut previous: Option<(usize, Tensor)> = None;
        let mut choices = Vec::with_capacity(net.slots.len());
        let mut gates = Vec::with_capacity(net.slots.len());
        let mut cost_terms = Vec::with_capacity(net.slots.len());
        for slot in &net.slots {
            let kind = &net.kinds[slot.kind];
            let context = match &previous {
                None => net.start.view([1, net.hidden]),
                Some((prev_kind, p)) => {
                    let prev = &net.kinds[*prev_kind];
                    let padded = p.constant_pad_nd([0, prev.options - p.size()[0]]);
                    prev.embed.forward(&padded.view([1, prev.options]))
                }
            };
            let x = &x_c + context;
            let (h, cell) = x.lstm_cell(
                &[&state.0, &state.1],
                &net.w_ih,
                &net.w_hh,
                Some(&net.b_ih),
                Some(&net.b_hh),
            );
            let logits = kind
                .head
                .forward(&h)
                .view([kind.options])
                .narrow(0, 0, slot.options);
            let noise = match mode {
                GenerateMode::Sample => Some(
                    Tensor::rand([slot.options], (Kind::Float, Device::Cpu))
                        .clamp(1e-10, 1.0 - 1e-7)
                        .log()
                        .neg()
                        .log()
                        .neg()
                        .to_device(net.device),
                ),
                GenerateMode::Argmax => None,
            };
            let (p, index) = straight_through(&logits, tau, noise.as_ref())?;
            choices.push(index as u32);
            gates.push(slot.mask.mv(&p));
            cost_terms.push(slot.costs.dot(&p.to_kind(Kind::Double)));
            previous = Some((slot.kind, p));
            state = (h, cell);
        }
        let arch = Arch::new(choices);
        // Eq. 10's additive cost, plus (exact_correction) the detached constant that makes its
        // value the exact complexity of the arch.
        let correction = if self.config.exact_correction {
            let exact = self.config.metric.of(&net.host.complexity(&arch)?) as f64;
            exact - net.table.estimate(&arch)
        } else {
            0.0
        };
        let cost = Tensor::stack(&cost_terms, 0).sum(Kind::Double) + (net.table.base + correction);
        let diff = (cost - &target) / range;
        let extra_loss = (diff.square() * self.config.lambda).to_kind(Kind::Float);
        Ok(Generation {
            arch,
            gates,
            extra_loss: Some(extra_loss),
        })
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        let Some(net) = &self.net else {
            return Vec::new();
        };
        let mut params = vec![
            ("input.weight".to_string(), net.input.shallow_clone()),
            ("start".to_string(), net.start.shallow_clone()),
            ("lstm.weight_ih".to_string(), net.w_ih.shallow_clone()),
            ("lstm.weight_hh".to_string(), net.w_hh.shallow_clone()),
            ("lstm.bias_ih".to_string(), net.b_ih.shallow_clone()),
            ("lstm.bias_hh".to_string(), net.b_hh.shallow_clone()),
        ];
        for kind in &net.kinds {
            for (layer, linear) in [("embed", &kind.embed), ("head", &kind.head)] {
                params.push((
                    format!("{layer}.{}.weight", kind.name),
                    linear.weight.shallow_clone(),
                ));
                params.push((
                    format!("{layer}.{}.bias", kind.name),
                    linear.bias.shallow_clone(),
                ));
            }
        }
        params.sort_by(|a, b| a.0.cmp(&b.0));
        params
    }

    fn save_state(&self) -> PluginResult<String> {
        Ok("{}".to_string())
    }

    fn load_state(&mut self, state: &str) -> PluginResult<()> {
        let value: serde_json::Value = serde_json::from_str(state).map_err(|e| {
            PluginError::runtime(format!("generator `shiftnas`: unreadable state: {e}"))
        })?;
        if !value.is_object() {
            return Err(PluginError::runtime(format!(
                "generator `shiftnas`: state must be a JSON object, got {value}"
            )));
        }
        Ok(())
    }
}

nas_sdk::export_plugin!(nas_sdk::plugin::Registry::new().generator::<ShiftnasGenerator>());

#[cfg(test)]
mod tests {
    use super::*;
    use nas_sdk::{testing::FakeHost, Complexity, Component, ErrorKind, GeneratorClient};

    /// A weight-entangled fake space: nested decisions whose cost is linear in the number of kept
    /// units, plus an optional interaction term between decisions 0 and 1 that the additive table
    /// does not model.
    #[derive(Clone)]
    struct FakeSpace {
        decisions: Vec<Decision>,
        base: f64,
        per_option: Vec<Vec<f64>>,
        interaction: f64,
    }

    impl FakeSpace {
        /// `(kind, options, cost per kept unit)` per decision; option `j` keeps `j + 1` units.
        fn new(spec: &[(&str, u32, f64)], base: f64, interaction: f64) -> Self {
            let mut decisions = Vec::new();
            let mut per_option = Vec::new();
            for (i, &(kind, options, unit_cost)) in spec.iter().enumerate() {
                let kept: Vec<u32> = (1..=options).collect();
                let labels: Vec<String> = kept.iter().map(|k| k.to_string()).collect();
                let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
                let mut decision = Decision::choice(&format!("d{i}.{kind}"), "g", kind, &labels);
                decision.keep_mask = Some(KeepMask::nested(&kept, options)).into();
                decisions.push(decision);
                per_option.push(kept.iter().map(|&k| unit_cost * k as f64).collect());
            }
            FakeSpace {
                decisions,
                base,
                per_option,
                interaction,
            }
        }

        fn six(interaction: f64) -> Self {
            FakeSpace::new(
                &[
                    ("depth", 3, 900.0),
                    ("width", 4, 700.0),
                    ("kernel", 3, 400.0),
                    ("width", 4, 500.0),
                    ("expand", 3, 600.0),
                    ("depth", 4, 350.0),
                ],
                4_000.0,
                interaction,
            )
        }

        fn table(&self, metric: Metric) -> CostTable {
            CostTable {
                metric,
                base: self.base,
                per_option: self
                    .per_option
                    .iter()
                    .map(|row| row.iter().copied().collect())
                    .collect(),
            }
        }

        fn exact(&self, arch: &Arch) -> f64 {
            let c = arch.choices();
            self.table(Metric::Macs).estimate(arch) + self.interaction * (c[0] * c[1]) as f64
        }

        /// The host's services over this space, as the host forwards them to a generator.
        fn host(&self) -> FakeHost {
            let (exact, table) = (self.clone(), self.clone());
            FakeHost::new(self.decisions.clone())
                .with_seed(7)
                .with_steps(100, 10)
                .with_complexity(move |arch| {
                    let exact = exact.exact(arch).round() as u64;
                    Ok(Complexity {
                        macs: exact,
                        params: exact,
                    })
                })
                .with_cost_table(move |metric| Ok(table.table(metric)))
        }
    }

    /// libtorch's RNG is global and tests run in parallel: every test that seeds or draws from it
    /// holds this lock.
    fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn started(space: FakeSpace, config: serde_json::Value) -> ShiftnasGenerator {
        let mut generator = ShiftnasGenerator::from_config(&config.to_string()).unwrap();
        generator
            .start(space.host().context(), Device::Cpu)
            .unwrap();
        generator
    }

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.detach().to_kind(Kind::Float).flatten(0, -1)).unwrap()
    }

    #[test]
    fn gates_are_mask_times_one_hot_policy_with_a_gradient() {
        let _rng = rng_lock();
        let logits = Tensor::from_slice(&[0.1f32, 2.0, -1.0]).set_requires_grad(true);
        let (p, index) = straight_through(&logits, 1.0, None).unwrap();
        assert_eq!(index, 1);
        assert_eq!(values(&p), vec![0.0, 1.0, 0.0]);
        let gate = mask_map(&KeepMask::nested(&[1, 2, 3], 3), &p).unwrap();
        assert_eq!(values(&gate), vec![1.0, 1.0, 0.0]);
        let weights = Tensor::from_slice(&[0.3f32, -1.2, 2.5]);
        (&gate * &weights).sum(Kind::Float).backward();
        let grad = values(&logits.grad());
        assert!(
            grad.iter().all(|g| g.is_finite()) && grad.iter().any(|g| g.abs() > 1e-6),
            "gradient wrt logits {grad:?}"
        );

        // Gumbel noise decides the argmax in Sample mode, and p stays one-hot.
        let noise = Tensor::from_slice(&[5.0f32, 0.0, 0.0]);
        let (p, index) = straight_through(&logits, 0.5, Some(&noise)).unwrap();
        assert_eq!(index, 0);
        assert_eq!(values(&p), vec![1.0, 0.0, 0.0]);

        // Inside the generator: every gate equals its keep-mask times the one-hot choice.
        let space = FakeSpace::six(0.0);
        let masks: Vec<KeepMask> = space
            .decisions
            .iter()
            .map(|d| d.keep_mask.clone().unwrap())
            .collect();
        let mut generator = started(space, serde_json::json!({}));
        for mode in [GenerateMode::Sample, GenerateMode::Argmax] {
            let generation = generator
                .generate(&Tensor::from(12_000.0f32), mode)
                .unwrap();
            assert_eq!(generation.gates.len(), masks.len());
            for ((gate, mask), &choice) in generation
                .gates
                .iter()
                .zip(&masks)
                .zip(generation.arch.choices())
            {
                let expected: Vec<f32> = (0..mask.units).map(|u| mask.get(u, choice)).collect();
                assert_eq!(values(gate), expected, "{mode:?}");
            }
        }
    }

    #[test]
    fn gradients_reach_every_parameter_and_the_target() {
        let _rng = rng_lock();
        tch::manual_seed(3);
        let mut generator = started(FakeSpace::six(150.0), serde_json::json!({}));
        let params = generator.parameters();
        let target = Tensor::from(11_000.0f32).set_requires_grad(true);
        let generation = generator.generate(&target, GenerateMode::Sample).unwrap();
        let task: Vec<Tensor> = generation
            .gates
            .iter()
            .map(|gate| {
                (gate * Tensor::randn(gate.size(), (Kind::Float, Device::Cpu))).sum(Kind::Float)
            })
            .collect();
        let total = Tensor::stack(&task, 0).sum(Kind::Float) + generation.extra_loss.unwrap();
        total.backward();
        let mut sum = 0.0;
        for (name, tensor) in &params {
            let grad = tensor.grad();
            assert!(grad.defined(), "`{name}` got no gradient");
            let norm = grad.norm().double_value(&[]);
            assert!(norm.is_finite(), "`{name}`: gradient norm {norm}");
            // Every parameter is on the path here: each kind appears before the last decision.
            assert!(norm > 0.0, "`{name}`: zero gradient");
            sum += norm;
        }
        assert!(sum > 0.0);
        let d_target = target.grad().double_value(&[]);
        assert!(
            d_target.is_finite() && d_target != 0.0,
            "d loss / d target = {d_target}"
        );

        // Argmax mode carries a gradient to the target too (held-out probes need it).
        let target = Tensor::from(9_000.0f64).set_requires_grad(true);
        let generation = generator.generate(&target, GenerateMode::Argmax).unwrap();
        let task: Tensor = generation
            .gates
            .iter()
            .map(|g| g.sum(Kind::Float))
            .fold(Tensor::from(0.0f32), |a, b| a + b);
        (task + generation.extra_loss.unwrap()).backward();
        let d_target = target.grad().double_value(&[]);
        assert!(
            d_target.is_finite() && d_target != 0.0,
            "argmax: {d_target}"
        );
    }

    #[test]
    fn path_choice_spaces_are_refused_at_start() {
        let _rng = rng_lock();
        let mut space = FakeSpace::six(0.0);
        space.decisions[2] = Decision::choice(
            "edge_1<-0",
            "cell",
            "op",
            &["none", "skip_connect", "nor_conv_3x3"],
        );
        let mut generator = ShiftnasGenerator::from_config("{}").unwrap();
        let err = generator
            .start(space.host().context(), Device::Cpu)
            .err()
            .unwrap();
        assert_eq!(err.kind, ErrorKind::Unsupported);
        assert!(err.message.contains("`edge_1<-0`"), "{err}");
        assert!(err.message.contains("keep-mask"), "{err}");

        let empty = FakeSpace::new(&[], 10.0, 0.0);
        let err = ShiftnasGenerator::from_config("{}")
            .unwrap()
            .start(empty.host().context(), Device::Cpu)
            .err()
            .unwrap();
        assert!(err.message.contains("no decisions"), "{err}");

        // Through the FFI client as the host sees it.
        let mut space = FakeSpace::six(0.0);
        space.decisions[0].keep_mask = None.into();
        let mut client =
            GeneratorClient::from_generator(ShiftnasGenerator::from_config("{}").unwrap());
        let err = client
            .start(space.host().context(), Device::Cpu)
            .err()
            .unwrap();
        assert!(err.message.contains("`d0.depth`"), "{err}");
    }

    /// Mean relative error `|exact(argmax AG(C)) - C| / C` over 10 targets spread across the range.
    fn mean_relative_error(
        generator: &mut ShiftnasGenerator,
        exact: &dyn Fn(&Arch) -> f64,
    ) -> (f64, Vec<String>) {
        let (min, max) = generator.range().unwrap();
        let count = 10;
        let mut total = 0.0;
        let mut report = Vec::new();
        for k in 0..count {
            let target = min + (max - min) * (k as f64 + 0.5) / count as f64;
            let generation =
                tch::no_grad(|| generator.generate(&Tensor::from(target), GenerateMode::Argmax))
                    .unwrap();
            let cost = exact(&generation.arch);
            total += (cost - target).abs() / target;
            report.push(format!("{target:.0}->{cost:.0}"));
        }
        (total / count as f64, report)
    }

    /// Trains the complexity loss alone (Adam, lr 1e-2, 500 steps of 8 uniform targets) and
    /// returns the mean relative error before and after training.
    fn train_to_targets(interaction: f64) -> (f64, f64) {
        tch::manual_seed(11);
        let probe = FakeSpace::six(interaction);
        let exact = move |arch: &Arch| probe.exact(arch);
        let mut generator = started(FakeSpace::six(interaction), serde_json::json!({}));
        let (untrained, _) = mean_relative_error(&mut generator, &exact);
        let (min, max) = generator.range().unwrap();
        let mut optimizer = tch::COptimizer::adam(1e-2, 0.9, 0.999, 0.0, 1e-8, false).unwrap();
        for (_, tensor) in generator.parameters() {
            optimizer.add_parameters(&tensor, 0).unwrap();
        }
        let batch = 8;
        for _ in 0..500 {
            optimizer.zero_grad().unwrap();
            let targets = Tensor::rand([batch], (Kind::Double, Device::Cpu)) * (max - min) + min;
            let losses: Vec<Tensor> = (0..batch)
                .map(|k| {
                    let generation = generator
                        .generate(&targets.get(k), GenerateMode::Sample)
                        .unwrap();
                    generation.extra_loss.unwrap()
                })
                .collect();
            Tensor::stack(&losses, 0).mean(Kind::Float).backward();
            optimizer.step().unwrap();
        }
        let (trained, report) = mean_relative_error(&mut generator, &exact);
        eprintln!(
            "interaction {interaction}: mean relative error {untrained:.4} untrained, {trained:.4} trained ({report:?})"
        );
        (untrained, trained)
    }

    #[test]
    fn learns_to_hit_targets_with_an_exact_table() {
        let _rng = rng_lock();
        let (untrained, trained) = train_to_targets(0.0);
        assert!(
            trained < 0.10 && trained < untrained / 2.0,
            "mean relative error {trained:.4} after training ({untrained:.4} before)"
        );
    }

    #[test]
    fn learns_to_hit_targets_with_an_interaction_term() {
        let _rng = rng_lock();
        // exact = table + 300 * c0 * c1: up to 19% of the largest arch is not in the table.
        let (untrained, trained) = train_to_targets(300.0);
        assert!(
            trained < 0.10 && trained < untrained / 2.0,
            "mean relative error {trained:.4} after training ({untrained:.4} before)"
        );
    }

    #[test]
    fn extra_loss_is_lambda_times_the_normalised_squared_error() {
        let _rng = rng_lock();
        tch::manual_seed(2);
        let space = FakeSpace::six(300.0);
        let table = space.table(Metric::Macs);
        let probe = FakeSpace::six(300.0);
        let (min, max) = (7_450.0, 15_900.0 + 300.0 * 6.0);
        let mut corrected = 0;
        for (correction, lambda) in [(true, 1.0), (false, 2.5)] {
            let config = serde_json::json!({"exact_correction": correction, "lambda": lambda});
            let mut generator = started(FakeSpace::six(300.0), config);
            assert_eq!(generator.range(), Some((min, max)));
            for mode in [GenerateMode::Sample, GenerateMode::Argmax] {
                let target = Tensor::from(12_345.0f64).set_requires_grad(true);
                let generation = generator.generate(&target, mode).unwrap();
                let cost = if correction {
                    if probe.exact(&generation.arch) != table.estimate(&generation.arch) {
                        corrected += 1;
                    }
                    probe.exact(&generation.arch)
                } else {
                    table.estimate(&generation.arch)
                };
                let expected = lambda * ((cost - 12_345.0) / (max - min)).powi(2);
                let loss = generation.extra_loss.unwrap();
                assert_eq!(
                    loss.size(),
                    Vec::<i64>::new(),
                    "extra_loss must be a scalar"
                );
                assert_eq!(loss.kind(), Kind::Float);
                let value = loss.double_value(&[]);
                assert!(
                    (value - expected).abs() <= 1e-6 * expected.max(1e-3),
                    "correction {correction}, {mode:?}: {value} vs {expected}"
                );
                // The target's own term: d/dC of lambda ((cost - C)/R)^2 is -2 lambda (cost - C)/R^2
                // plus what flows through the policy (zero in value here: p is one-hot).
                loss.backward();
                let grad = target.grad().double_value(&[]);
                assert!(grad.is_finite() && grad != 0.0, "{grad}");
            }
        }
        assert!(corrected > 0, "no generated arch exercised the correction");
    }

    #[test]
    fn same_seed_same_parameters_and_samples() {
        let _rng = rng_lock();
        let run = || {
            tch::manual_seed(5);
            let mut generator = started(FakeSpace::six(0.0), serde_json::json!({}));
            let params: Vec<(String, Vec<f32>)> = generator
                .parameters()
                .iter()
                .map(|(n, t)| (n.clone(), values(t)))
                .collect();
            tch::manual_seed(99);
            let samples: Vec<(Vec<u32>, Vec<Vec<f32>>)> = (0..20)
                .map(|k| {
                    let g = generator
                        .generate(
                            &Tensor::from(8_000.0 + 500.0 * k as f64),
                            GenerateMode::Sample,
                        )
                        .unwrap();
                    (
                        g.arch.choices().to_vec(),
                        g.gates.iter().map(values).collect(),
                    )
                })
                .collect();
            (params, samples)
        };
        let (params_a, samples_a) = run();
        let (params_b, samples_b) = run();
        for ((name, a), (_, b)) in params_a.iter().zip(&params_b) {
            assert!(
                a == b,
                "parameter `{name}` differs between two runs with one seed"
            );
        }
        assert_eq!(params_a.len(), params_b.len());
        assert!(
            samples_a == samples_b,
            "samples differ between two runs with one seed"
        );
        let names: Vec<&str> = params_a.iter().map(|(n, _)| n.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "parameters must come sorted by name");
        assert!(names.contains(&"head.width.weight") && names.contains(&"lstm.weight_ih"));
        // Samples differ across draws (the noise matters), so equality above is not vacuous.
        let distinct: std::collections::HashSet<&Vec<u32>> =
            samples_a.iter().map(|(a, _)| a).collect();
        assert!(distinct.len() > 1, "all 20 samples were the same arch");
        // A different seed gives different parameters.
        tch::manual_seed(6);
        let other = started(FakeSpace::six(0.0), serde_json::json!({}));
        assert_ne!(values(&other.parameters()[0].1), params_a[0].1);
    }

    #[test]
    fn parameters_are_shared_with_the_generator() {
        let _rng = rng_lock();
        tch::manual_seed(1);
        let mut generator = started(FakeSpace::six(0.0), serde_json::json!({}));
        let target = Tensor::from(10_000.0f32);
        let before = generator.generate(&target, GenerateMode::Argmax).unwrap();
        tch::no_grad(|| {
            for (name, tensor) in generator.parameters() {
                if name.starts_with("head.") {
                    let _ = tensor.shallow_clone().zero_();
                }
            }
        });
        let after = generator.generate(&target, GenerateMode::Argmax).unwrap();
        // Zero heads give all-zero logits: argmax picks option 0 everywhere.
        assert_eq!(after.arch.choices(), &[0, 0, 0, 0, 0, 0]);
        assert_eq!(before.gates.len(), after.gates.len());
        assert!(generator.save_state().unwrap() == "{}");
        generator.load_state("{}").unwrap();
        assert!(generator.load_state("not json").is_err());
    }

    #[test]
    fn bad_configs_name_the_field() {
        let _rng = rng_lock();
        for (config, field) in [
            (r#"{"tau": 0}"#, "tau"),
            (r#"{"tau": -1.0}"#, "tau"),
            (r#"{"hidden": 0}"#, "hidden"),
            (r#"{"hidden": -4}"#, "hidden"),
            (r#"{"lambda": -0.5}"#, "lambda"),
            (r#"{"lambda": "big"}"#, "lambda"),
            (r#"{"metric": "flops"}"#, "metric"),
            (r#"{"exact_correction": 1}"#, "exact_correction"),
            (r#"{"bogus": 1}"#, "bogus"),
        ] {
            let err = ShiftnasGenerator::from_config(config).err().unwrap();
            assert_eq!(err.kind, ErrorKind::Config, "{config}");
            assert!(
                err.message.contains(&format!("`{field}`")),
                "{config}: {err}"
            );
        }
        let defaults = ShiftnasGenerator::from_config("{}").unwrap();
        assert_eq!(defaults.config(), &ShiftnasConfig::default());
        assert_eq!(
            ShiftnasGenerator::default_config(),
            serde_json::json!({"metric": "macs", "hidden": 64, "tau": 1.0, "lambda": 30.0, "exact_correction": true})
        );
        let params =
            ShiftnasGenerator::from_config(r#"{"metric": "params", "lambda": 0}"#).unwrap();
        assert_eq!(params.config().metric, Metric::Params);
    }
}
