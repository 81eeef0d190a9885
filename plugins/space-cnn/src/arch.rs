//! Decisions of the space, and an arch resolved into the sizes of every layer.

use nas_sdk::{Arch, Decision, KeepMask, PluginError, PluginResult};
use serde_json::{json, Value};

use crate::config::{mid_channels, ChoiceScope, CnnConfig};

/// What one decision sets.
#[derive(Clone, Debug, PartialEq)]
pub enum Slot {
    /// Input resolution.
    Resolution,
    /// First conv width.
    FirstWidth,
    /// Width of stage `s`.
    Width(usize),
    /// Depth of stage `s`.
    Depth(usize),
    /// Kernel of stage `s` (all blocks) or of block `b`.
    Kernel(usize, Option<usize>),
    /// Expand ratio of stage `s` (all blocks) or of block `b`.
    Expand(usize, Option<usize>),
    /// Kernel x expand of block `b` of stage `s`.
    Op(usize, usize),
    /// Head width.
    HeadWidth,
}

/// A decision with its slot and option values.
#[derive(Clone, Debug)]
pub struct DecisionSlot {
    /// What it sets.
    pub slot: Slot,
    /// Option values (`Op`: kernel-major `(kernel, expand)` pairs encoded as two lists).
    pub values: Vec<f64>,
    /// `Op` only: the `(kernel, expand)` of each option.
    pub pairs: Vec<(i64, f64)>,
    /// The SDK decision.
    pub decision: Decision,
}

fn label(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

fn nested(name: String, group: String, kind: &str, values: &[f64], slot: Slot) -> DecisionSlot {
    let options: Vec<String> = values.iter().map(|&v| label(v)).collect();
    let count = values.len() as u32;
    let kept: Vec<u32> = (1..=count).collect();
    DecisionSlot {
        slot,
        values: values.to_vec(),
        pairs: Vec::new(),
        decision: Decision {
            name: name.into(),
            options: options.into_iter().map(Into::into).collect(),
            group: group.into(),
            kind: kind.into(),
            keep_mask: abi_stable::std_types::ROption::RSome(KeepMask::nested(&kept, count)),
        },
    }
}

fn as_f64(values: &[i64]) -> Vec<f64> {
    values.iter().map(|&v| v as f64).collect()
}

/// Unique ascending kernels and expand ratios of an `Op` decision's pairs.
pub fn op_axes(pairs: &[(i64, f64)]) -> (Vec<i64>, Vec<f64>) {
    let mut kernels: Vec<i64> = pairs.iter().map(|p| p.0).collect();
    kernels.dedup();
    kernels.sort_unstable();
    kernels.dedup();
    let mut expands: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    expands.sort_by(f64::total_cmp);
    expands.dedup();
    (kernels, expands)
}

fn push_nested(
    slots: &mut Vec<DecisionSlot>,
    name: String,
    group: String,
    kind: &str,
    values: Vec<f64>,
    slot: Slot,
) {
    if values.len() > 1 {
        slots.push(nested(name, group, kind, &values, slot));
    }
}

/// The decisions of `config`, in arch order; lists with one option make no decision.
pub fn decision_slots(config: &CnnConfig) -> Vec<DecisionSlot> {
    let mut slots = Vec::new();
    let resolutions = config.resolution_options();
    if resolutions.len() > 1 {
        let options: Vec<String> = resolutions.iter().map(|r| r.to_string()).collect();
        let refs: Vec<&str> = options.iter().map(String::as_str).collect();
        slots.push(DecisionSlot {
            slot: Slot::Resolution,
            values: as_f64(&resolutions),
            pairs: Vec::new(),
            decision: Decision::choice("resolution", "input", "resolution", &refs),
        });
    }
    push_nested(
        &mut slots,
        "first_conv.width".into(),
        "first_conv".into(),
        "width",
        as_f64(&config.first_conv.width),
        Slot::FirstWidth,
    );
    let mut op_slots = Vec::new();
    for (s, stage) in config.stages.iter().enumerate() {
        let group = format!("stage{}", s + 1);
        push_nested(
            &mut slots,
            format!("{group}.width"),
            group.clone(),
            "width",
            as_f64(&stage.width),
            Slot::Width(s),
        );
        push_nested(
            &mut slots,
            format!("{group}.depth"),
            group.clone(),
            "depth",
            as_f64(&stage.depth),
            Slot::Depth(s),
        );
        let max_depth = *stage.depth.last().expect("validated") as usize;
        match stage.choice {
            ChoiceScope::Stage => {
                push_nested(
                    &mut slots,
                    format!("{group}.kernel"),
                    group.clone(),
                    "kernel",
                    as_f64(&stage.kernel),
                    Slot::Kernel(s, None),
                );
                push_nested(
                    &mut slots,
                    format!("{group}.expand"),
                    group.clone(),
                    "expand",
                    stage.expand.clone(),
                    Slot::Expand(s, None),
                );
            }
            ChoiceScope::Block => {
                for b in 0..max_depth {
                    let (kernel, expand) = config.block_options(s, b);
                    let block = format!("{group}.block{b}");
                    push_nested(
                        &mut slots,
                        format!("{block}.kernel"),
                        block.clone(),
                        "kernel",
                        as_f64(kernel),
                        Slot::Kernel(s, Some(b)),
                    );
                    push_nested(
                        &mut slots,
                        format!("{block}.expand"),
                        block.clone(),
                        "expand",
                        expand.to_vec(),
                        Slot::Expand(s, Some(b)),
                    );
                }
            }
            ChoiceScope::Op => {
                for b in 0..max_depth {
                    let (kernel, expand) = config.block_options(s, b);
                    let pairs: Vec<(i64, f64)> = kernel
                        .iter()
                        .flat_map(|&k| expand.iter().map(move |&e| (k, e)))
                        .collect();
                    if pairs.len() > 1 {
                        op_slots.push((s, b, pairs));
                    }
                }
            }
        }
        for (s, b, pairs) in op_slots.drain(..) {
            let block = format!("stage{}.block{b}", s + 1);
            let (kernels, expands) = op_axes(&pairs);
            // Rows: kernel rings (ascending), then expand levels (ascending).
            let units = (kernels.len() + expands.len()) as u32;
            let count = pairs.len() as u32;
            let mut values = vec![0.0f32; (units * count) as usize];
            for (j, &(k, e)) in pairs.iter().enumerate() {
                for (r, &ring) in kernels.iter().enumerate() {
                    if k >= ring {
                        values[r * count as usize + j] = 1.0;
                    }
                }
                for (l, &level) in expands.iter().enumerate() {
                    if e >= level {
                        values[(kernels.len() + l) * count as usize + j] = 1.0;
                    }
                }
            }
            let options: Vec<String> = pairs
                .iter()
                .map(|&(k, e)| format!("k{k}_e{}", label(e)))
                .collect();
            slots.push(DecisionSlot {
                slot: Slot::Op(s, b),
                values: Vec::new(),
                pairs: pairs.clone(),
                decision: Decision {
                    name: format!("{block}.op").into(),
                    options: options.into_iter().map(Into::into).collect(),
                    group: block.into(),
                    kind: "op".into(),
                    keep_mask: abi_stable::std_types::ROption::RSome(KeepMask {
                        units,
                        options: count,
                        values: values.into(),
                    }),
                },
            });
        }
    }
    push_nested(
        &mut slots,
        "head.width".into(),
        "head".into(),
        "width",
        as_f64(&config.head.width),
        Slot::HeadWidth,
    );
    slots
}

/// Sizes of one block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockDims {
    /// Depthwise kernel.
    pub kernel: i64,
    /// Expand ratio.
    pub expand: f64,
}

/// Sizes of one stage.
#[derive(Clone, Debug, PartialEq)]
pub struct StageDims {
    /// Output channels.
    pub width: i64,
    /// Active blocks.
    pub depth: i64,
    /// Every block up to the largest depth (blocks past `depth` are inactive).
    pub blocks: Vec<BlockDims>,
}

/// An arch resolved into layer sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct Dims {
    /// Input resolution after resizing.
    pub resolution: i64,
    /// First conv width.
    pub first_width: i64,
    /// Stages.
    pub stages: Vec<StageDims>,
    /// Head width.
    pub head_width: i64,
}

impl Dims {
    /// The sizes `arch` selects.
    pub fn resolve(config: &CnnConfig, slots: &[DecisionSlot], arch: &Arch) -> PluginResult<Self> {
        let choices = arch.choices();
        if choices.len() != slots.len() {
            return Err(PluginError::arch(format!(
                "cnn: an arch has {} choices, got {}",
                slots.len(),
                choices.len()
            )));
        }
        let mut dims = Dims {
            resolution: config.resolution_options()[0],
            first_width: config.first_conv.width[0],
            stages: config
                .stages
                .iter()
                .enumerate()
                .map(|(s, stage)| StageDims {
                    width: stage.width[0],
                    depth: stage.depth[0],
                    blocks: (0..*stage.depth.last().expect("validated") as usize)
                        .map(|b| {
                            let (kernel, expand) = config.block_options(s, b);
                            BlockDims {
                                kernel: kernel[0],
                                expand: expand[0],
                            }
                        })
                        .collect(),
                })
                .collect(),
            head_width: config.head.width[0],
        };
        for (slot, &choice) in slots.iter().zip(choices) {
            let options = slot.decision.options.len();
            if choice as usize >= options {
                return Err(PluginError::arch(format!(
                    "cnn: decision `{}` has {options} options, got choice {choice}",
                    slot.decision.name
                )));
            }
            let j = choice as usize;
            let value = slot.values.get(j).copied().unwrap_or(0.0);
            match slot.slot {
                Slot::Resolution => dims.resolution = value as i64,
                Slot::FirstWidth => dims.first_width = value as i64,
                Slot::Width(s) => dims.stages[s].width = value as i64,
                Slot::Depth(s) => dims.stages[s].depth = value as i64,
                Slot::Kernel(s, block) => {
                    for (b, dims) in dims.stages[s].blocks.iter_mut().enumerate() {
                        if block.is_none_or(|only| only == b) {
                            dims.kernel = value as i64;
                        }
                    }
                }
                Slot::Expand(s, block) => {
                    for (b, dims) in dims.stages[s].blocks.iter_mut().enumerate() {
                        if block.is_none_or(|only| only == b) {
                            dims.expand = value;
                        }
                    }
                }
                Slot::Op(s, b) => {
                    let (kernel, expand) = slot.pairs[j];
                    dims.stages[s].blocks[b] = BlockDims { kernel, expand };
                }
                Slot::HeadWidth => dims.head_width = value as i64,
            }
        }
        Ok(dims)
    }

    /// Input channels of block `b` of stage `s`.
    pub fn block_input(&self, s: usize, b: usize) -> i64 {
        match (s, b) {
            (0, 0) => self.first_width,
            (s, 0) => self.stages[s - 1].width,
            (s, _) => self.stages[s].width,
        }
    }

    /// Mid channels of block `b` of stage `s`.
    pub fn block_mid(&self, s: usize, b: usize) -> i64 {
        mid_channels(self.block_input(s, b), self.stages[s].blocks[b].expand)
    }

    /// Readable form: `{"resolution", "width": [first, stages.., head], "depth", "kernel",
    /// "expand"}`; kernel and expand per stage are a number (stage scope) or a per-block list.
    pub fn to_json(&self, config: &CnnConfig) -> Value {
        let mut width = vec![self.first_width];
        width.extend(self.stages.iter().map(|s| s.width));
        width.push(self.head_width);
        let per_stage = |pick: &dyn Fn(&BlockDims) -> Value| -> Vec<Value> {
            self.stages
                .iter()
                .zip(&config.stages)
                .map(|(dims, stage)| {
                    let active = &dims.blocks[..dims.depth as usize];
                    if stage.choice == ChoiceScope::Stage {
                        pick(&active[0])
                    } else {
                        Value::Array(active.iter().map(pick).collect())
                    }
                })
                .collect()
        };
        json!({
            "resolution": self.resolution,
            "width": width,
            "depth": self.stages.iter().map(|s| s.depth).collect::<Vec<_>>(),
            "kernel": per_stage(&|b| json!(b.kernel)),
            "expand": per_stage(&|b| if b.expand.fract() == 0.0 { json!(b.expand as i64) } else { json!(b.expand) }),
        })
    }
}

fn position(values: &[f64], value: f64, what: &str) -> PluginResult<u32> {
    values
        .iter()
        .position(|&v| (v - value).abs() < 1e-9)
        .map(|p| p as u32)
        .ok_or_else(|| {
            PluginError::arch(format!(
                "cnn: {what} {value} is not an option (options: {values:?})"
            ))
        })
}

/// Parses [`Dims::to_json`]'s form (also AttentiveNAS's config keys `kernel_size` and
/// `expand_ratio`) into an arch. Blocks past a stage's depth take their first option.
pub fn arch_from_json(
    config: &CnnConfig,
    slots: &[DecisionSlot],
    value: &Value,
) -> PluginResult<Arch> {
    let bad = |message: String| PluginError::arch(format!("cnn: {message}"));
    let field = |names: &[&str]| -> PluginResult<&Value> {
        names
            .iter()
            .find_map(|n| value.get(*n))
            .ok_or_else(|| bad(format!("the arch lacks field `{}`", names[0])))
    };
    let numbers = |v: &Value, what: &str| -> PluginResult<Vec<f64>> {
        v.as_array()
            .ok_or_else(|| bad(format!("`{what}` must be a list")))?
            .iter()
            .map(|x| {
                x.as_f64()
                    .ok_or_else(|| bad(format!("`{what}` holds a non-number")))
            })
            .collect()
    };
    let stages = config.stages.len();
    let width = numbers(field(&["width"])?, "width")?;
    let depth = numbers(field(&["depth"])?, "depth")?;
    if width.len() != stages + 2 || depth.len() != stages {
        return Err(bad(format!(
            "`width` needs {} entries (first conv, {stages} stages, head) and `depth` {stages}",
            stages + 2
        )));
    }
    let per_block = |v: &Value, s: usize, what: &str| -> PluginResult<Vec<f64>> {
        let entry = v
            .as_array()
            .and_then(|a| a.get(s))
            .ok_or_else(|| bad(format!("`{what}` needs one entry per stage")))?;
        match entry {
            Value::Array(_) => numbers(entry, what),
            other => other
                .as_f64()
                .map(|x| vec![x; depth[s] as usize])
                .ok_or_else(|| bad(format!("`{what}` holds a non-number"))),
        }
    };
    let kernel = field(&["kernel", "kernel_size"])?;
    let expand = field(&["expand", "expand_ratio"])?;
    let resolution = field(&["resolution"])?
        .as_f64()
        .ok_or_else(|| bad("`resolution` must be a number".into()))?;
    let mut choices = Vec::with_capacity(slots.len());
    for slot in slots {
        let choice = match &slot.slot {
            Slot::Resolution => position(&slot.values, resolution, "resolution")?,
            Slot::FirstWidth => position(&slot.values, width[0], "first conv width")?,
            Slot::Width(s) => position(&slot.values, width[s + 1], "stage width")?,
            Slot::HeadWidth => position(&slot.values, width[stages + 1], "head width")?,
            Slot::Depth(s) => position(&slot.values, depth[*s], "depth")?,
            Slot::Kernel(s, block) => {
                let kernels = per_block(kernel, *s, "kernel")?;
                match kernels.get(block.unwrap_or(0)) {
                    Some(&k) => position(&slot.values, k, "kernel")?,
                    None => 0,
                }
            }
            Slot::Expand(s, block) => {
                let expands = per_block(expand, *s, "expand")?;
                match expands.get(block.unwrap_or(0)) {
                    Some(&e) => position(&slot.values, e, "expand ratio")?,
                    None => 0,
                }
            }
            Slot::Op(s, b) => {
                let (kernels, expands) = (
                    per_block(kernel, *s, "kernel")?,
                    per_block(expand, *s, "expand")?,
                );
                match (kernels.get(*b), expands.get(*b)) {
                    (Some(&k), Some(&e)) => slot
                        .pairs
                        .iter()
                        .position(|&(pk, pe)| pk as f64 == k && (pe - e).abs() < 1e-9)
                        .ok_or_else(|| bad(format!("kernel {k} x expand {e} is not an option")))?
                        as u32,
                    _ => 0,
                }
            }
        };
        choices.push(choice);
    }
    // Fixed (single-option) fields must match too.
    let arch = Arch::new(choices);
    let dims = Dims::resolve(config, slots, &arch)?;
    let expected = dims.to_json(config);
    let given_width = width.iter().map(|&w| w as i64).collect::<Vec<_>>();
    if expected["width"] != json!(given_width) || dims.resolution as f64 != resolution {
        return Err(bad(format!(
            "the arch's fixed sizes differ from the space's: width {given_width:?} vs {}",
            expected["width"]
        )));
    }
    Ok(arch)
}
