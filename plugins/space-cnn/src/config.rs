//! The space's configuration: presets and validation.

use nas_sdk::{elastic::Activation, plugin::parse_preset_config, PluginError, PluginResult};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Which options a stage's kernel and expand decisions cover.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ChoiceScope {
    /// One kernel and one expand decision for all blocks of the stage (AttentiveNAS, BigNAS).
    Stage,
    /// One kernel and one expand decision per block.
    Block,
    /// One joint decision per block over kernel x expand (FairNAS's 6 choices per layer).
    Op,
}

/// The residual rule of inverted-residual blocks.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Shortcut {
    /// Every block is residual: the shortcut average-pools when strided and adds a bias-free 1x1
    /// conv when the channel counts differ (AttentiveNAS).
    Pooled,
    /// Residual only when stride is 1 and channel counts match (MobileNetV2).
    Identity,
}

/// The classifier head.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    /// 1x1 conv to 6x the last stage width (BN, activation), global pool, bias-free 1x1 conv to
    /// the head width (activation, no BN), linear (MobileNetV3, AttentiveNAS).
    Mbv3,
    /// 1x1 conv to the head width (BN, activation), global pool, linear (MobileNetV2).
    Mbv2,
}

/// The first convolution (3x3, BN, activation).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FirstConv {
    /// Output channel options.
    pub width: Vec<i64>,
    /// Stride (2 for 224-pixel inputs, 1 for 28/32-pixel inputs).
    pub stride: i64,
}

/// Per-block option lists overriding the stage's.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BlockOptions {
    /// Depthwise kernel options.
    pub kernel: Vec<i64>,
    /// Expand ratio options.
    pub expand: Vec<f64>,
}

/// A stage of inverted-residual blocks.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Output channel options (all blocks of the stage).
    pub width: Vec<i64>,
    /// Block count options.
    pub depth: Vec<i64>,
    /// Depthwise kernel options (odd; smaller ones are centre crops of the largest).
    pub kernel: Vec<i64>,
    /// Expand ratio options (mid channels = make_divisible(round(C_in * ratio), 8)).
    pub expand: Vec<f64>,
    /// Stride of the first block.
    pub stride: i64,
    /// Squeeze-and-excite in every block.
    #[serde(default)]
    pub se: bool,
    /// Decision scope of kernel and expand.
    #[serde(default = "stage_scope")]
    pub choice: ChoiceScope,
    /// Optional per-block options (one entry per block up to the largest depth); they replace
    /// `kernel` and `expand` for that block. Only with `choice = "block"` or `"op"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<BlockOptions>,
}

fn stage_scope() -> ChoiceScope {
    ChoiceScope::Stage
}

/// The head.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Head {
    /// Layout.
    pub kind: HeadKind,
    /// Width options of the last conv (the "last conv" of the AttentiveNAS table).
    pub width: Vec<i64>,
}

/// Configuration of the space. Any field left out takes the preset's value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CnnConfig {
    /// `attentivenas` (default), `attentivenas-small`, `fairnas` or `mobilenetv2`.
    pub preset: String,
    /// Input image channels.
    pub input_channels: i64,
    /// Height = width of the input data.
    pub resolution: i64,
    /// Output classes.
    pub num_classes: i64,
    /// Elastic input resolutions (bilinear resize); empty = the data's resolution only.
    pub resolutions: Vec<i64>,
    /// First conv.
    pub first_conv: FirstConv,
    /// Stages of inverted-residual blocks.
    pub stages: Vec<Stage>,
    /// Head.
    pub head: Head,
    /// Activation of convs (swish for AttentiveNAS, relu6 for MobileNetV2/FairNAS).
    pub activation: Activation,
    /// Gate activation of squeeze-excite.
    pub se_activation: Activation,
    /// Residual rule.
    pub shortcut: Shortcut,
    /// Momentum of BN running statistics.
    pub bn_momentum: f64,
    /// BN epsilon.
    pub bn_eps: f64,
}

/// The names of the presets.
pub const PRESETS: [&str; 4] = [
    "attentivenas",
    "attentivenas-small",
    "fairnas",
    "mobilenetv2",
];

fn stage(
    width: &[i64],
    depth: &[i64],
    kernel: &[i64],
    expand: &[f64],
    stride: i64,
    se: bool,
) -> Value {
    json!({"width": width, "depth": depth, "kernel": kernel, "expand": expand, "stride": stride,
           "se": se, "choice": "stage"})
}

/// A preset's full config (input 3 x 224 x 224, 1000 classes unless the preset is for small
/// inputs).
pub fn preset(name: &str) -> PluginResult<Value> {
    let common = |resolution: i64, classes: i64| {
        json!({"preset": name, "input_channels": 3, "resolution": resolution,
               "num_classes": classes, "bn_momentum": 0.1, "bn_eps": 1e-5})
    };
    let mut config = match name {
        // AttentiveNAS/BigNAS (Wang et al. 2021, table in configs/ of the official code).
        "attentivenas" => {
            let mut c = common(224, 1000);
            c["resolutions"] = json!([192, 224, 256, 288]);
            c["first_conv"] = json!({"width": [16, 24], "stride": 2});
            let e = [4.0, 5.0, 6.0];
            c["stages"] = json!([
                stage(&[16, 24], &[1, 2], &[3, 5], &[1.0], 1, false),
                stage(&[24, 32], &[3, 4, 5], &[3, 5], &e, 2, false),
                stage(&[32, 40], &[3, 4, 5, 6], &[3, 5], &e, 2, true),
                stage(&[64, 72], &[3, 4, 5, 6], &[3, 5], &e, 2, false),
                stage(&[112, 120, 128], &[3, 4, 5, 6, 7, 8], &[3, 5], &e, 1, true),
                stage(
                    &[192, 200, 208, 216],
                    &[3, 4, 5, 6, 7, 8],
                    &[3, 5],
                    &[6.0],
                    2,
                    true
                ),
                stage(&[216, 224], &[1, 2], &[3, 5], &[6.0], 1, true),
            ]);
            c["head"] = json!({"kind": "mbv3", "width": [1792, 1984]});
            c["activation"] = json!("swish");
            c["se_activation"] = json!("hsigmoid");
            c["shortcut"] = json!("pooled");
            c
        }
        // The same block design scaled for 28x28 / 32x32 inputs (not from a paper).
        "attentivenas-small" => {
            let mut c = common(28, 10);
            c["resolutions"] = json!([]);
            c["first_conv"] = json!({"width": [8, 16], "stride": 1});
            let e = [3.0, 4.0, 6.0];
            c["stages"] = json!([
                stage(&[8, 16], &[1, 2], &[3, 5], &[1.0], 1, false),
                stage(&[16, 24], &[1, 2], &[3, 5], &e, 2, false),
                stage(&[24, 32], &[1, 2, 3], &[3, 5], &e, 2, true),
                stage(&[48, 64], &[1, 2, 3], &[3, 5], &e, 2, true),
            ]);
            c["head"] = json!({"kind": "mbv3", "width": [256, 384]});
            c["activation"] = json!("swish");
            c["se_activation"] = json!("hsigmoid");
            c["shortcut"] = json!("pooled");
            c
        }
        // MobileNetV2 1.0's layout (torchvision); FairNAS searches kernel x expand per layer.
        "fairnas" | "mobilenetv2" => {
            let mut c = common(224, 1000);
            c["resolutions"] = json!([]);
            c["first_conv"] = json!({"width": [32], "stride": 2});
            let (kernel, expand): (&[i64], &[f64]) = if name == "fairnas" {
                (&[3, 5, 7], &[3.0, 6.0])
            } else {
                (&[3], &[6.0])
            };
            let searchable = |width: i64, depth: i64, stride: i64| {
                let mut s = stage(&[width], &[depth], kernel, expand, stride, false);
                s["choice"] = json!("op");
                s
            };
            c["stages"] = json!([
                stage(&[16], &[1], &[3], &[1.0], 1, false),
                searchable(24, 2, 2),
                searchable(32, 3, 2),
                searchable(64, 4, 2),
                searchable(96, 3, 1),
                searchable(160, 3, 2),
                searchable(320, 1, 1),
            ]);
            c["head"] = json!({"kind": "mbv2", "width": [1280]});
            c["activation"] = json!("relu6");
            c["se_activation"] = json!("hsigmoid");
            c["shortcut"] = json!("identity");
            c
        }
        other => {
            return Err(PluginError::config(format!(
                "cnn: unknown preset `{other}` (presets: {})",
                PRESETS.join(", ")
            )))
        }
    };
    config["preset"] = json!(name);
    Ok(config)
}

impl CnnConfig {
    /// Parses a config: the preset named by `preset` (default `attentivenas`) with the given
    /// fields replacing the preset's.
    pub fn parse(json_text: &str) -> PluginResult<Self> {
        let config: Self = parse_preset_config("cnn", json_text, "attentivenas", preset)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> PluginResult<()> {
        let bad = |message: String| Err(PluginError::config(format!("cnn: {message}")));
        for (field, value) in [
            ("input_channels", self.input_channels),
            ("resolution", self.resolution),
            ("num_classes", self.num_classes),
            ("first_conv.stride", self.first_conv.stride),
        ] {
            if value < 1 {
                return bad(format!("field `{field}` must be at least 1, got {value}"));
            }
        }
        let positive_list = |field: String, list: &[i64]| -> PluginResult<()> {
            if list.is_empty() || list.iter().any(|&v| v < 1) {
                return Err(PluginError::config(format!(
                    "cnn: field `{field}` must be a non-empty list of positive integers, got {list:?}"
                )));
            }
            if list.windows(2).any(|w| w[0] >= w[1]) {
                return Err(PluginError::config(format!(
                    "cnn: field `{field}` must be strictly ascending (options are nested), got {list:?}"
                )));
            }
            Ok(())
        };
        if !self.resolutions.is_empty() {
            positive_list("resolutions".into(), &self.resolutions)?;
        }
        positive_list("first_conv.width".into(), &self.first_conv.width)?;
        positive_list("head.width".into(), &self.head.width)?;
        if self.stages.is_empty() {
            return bad("field `stages` must list at least one stage".into());
        }
        for (s, stage) in self.stages.iter().enumerate() {
            let field = |name: &str| format!("stages[{s}].{name}");
            positive_list(field("width"), &stage.width)?;
            positive_list(field("depth"), &stage.depth)?;
            if stage.stride < 1 {
                return bad(format!("field `{}` must be at least 1", field("stride")));
            }
            let max_depth = *stage.depth.last().expect("non-empty");
            if !stage.blocks.is_empty() {
                if stage.choice == ChoiceScope::Stage {
                    return bad(format!(
                        "`{}` needs `choice = \"block\"` or `\"op\"`",
                        field("blocks")
                    ));
                }
                if stage.blocks.len() as i64 != max_depth {
                    return bad(format!(
                        "`{}` has {} entries; it needs one per block up to the largest depth ({max_depth})",
                        field("blocks"),
                        stage.blocks.len()
                    ));
                }
            }
            for b in 0..max_depth as usize {
                let (kernel, expand) = self.block_options(s, b);
                positive_list(format!("{} of block {b}", field("kernel")), kernel)?;
                if kernel.iter().any(|k| k % 2 == 0) {
                    return bad(format!("`{}` must be odd, got {kernel:?}", field("kernel")));
                }
                if expand.is_empty()
                    || expand.iter().any(|&e| e.is_nan() || e <= 0.0)
                    || expand.windows(2).any(|w| w[0] >= w[1])
                {
                    return bad(format!(
                        "`{}` must be positive and strictly ascending, got {expand:?}",
                        field("expand")
                    ));
                }
                if expand.contains(&1.0) && expand.len() > 1 {
                    return bad(format!(
                        "`{}`: ratio 1 (no expand conv) cannot be mixed with others, got {expand:?}",
                        field("expand")
                    ));
                }
            }
        }
        if !(0.0..=1.0).contains(&self.bn_momentum) {
            return bad(format!(
                "field `bn_momentum` must be in [0, 1], got {}",
                self.bn_momentum
            ));
        }
        Ok(())
    }

    /// Kernel and expand options of block `b` of stage `s`.
    pub fn block_options(&self, s: usize, b: usize) -> (&[i64], &[f64]) {
        let stage = &self.stages[s];
        match stage.blocks.get(b) {
            Some(block) => (&block.kernel, &block.expand),
            None => (&stage.kernel, &stage.expand),
        }
    }

    /// Elastic resolutions (the data's resolution when none are listed).
    pub fn resolution_options(&self) -> Vec<i64> {
        if self.resolutions.is_empty() {
            vec![self.resolution]
        } else {
            self.resolutions.clone()
        }
    }
}

/// AttentiveNAS's `make_divisible(v, 8)`: nearest multiple of 8, at least 8, never more than 10%
/// below `v`.
pub fn make_divisible(value: f64, divisor: i64) -> i64 {
    let rounded = ((value + divisor as f64 / 2.0) as i64 / divisor * divisor).max(divisor);
    if (rounded as f64) < 0.9 * value {
        rounded + divisor
    } else {
        rounded
    }
}

/// Mid channels of an inverted residual: `C_in` for ratio 1, else
/// `make_divisible(round(C_in * ratio), 8)` with Python's round-half-even.
pub fn mid_channels(c_in: i64, expand: f64) -> i64 {
    if expand == 1.0 {
        c_in
    } else {
        make_divisible((c_in as f64 * expand).round_ties_even(), 8)
    }
}

/// Reduced channels of squeeze-excite: `make_divisible(mid // 4, 8)`.
pub fn se_channels(mid: i64) -> i64 {
    make_divisible((mid / 4) as f64, 8)
}
