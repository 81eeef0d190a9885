//! The space's configuration: presets and validation.

use nas_sdk::{plugin::parse_preset_config, PluginError, PluginResult};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Per-layer option lists overriding the space-wide ones.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LayerOptions {
    /// Head count options.
    pub heads: Vec<i64>,
    /// MLP ratio options.
    pub mlp_ratio: Vec<f64>,
}

/// Configuration of the space. Any field left out takes the preset's value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VitConfig {
    /// `autoformer-tiny` (default), `autoformer-small`, `autoformer-base`, `autoformer-mini`,
    /// `deit-tiny` or `deit-small`.
    pub preset: String,
    /// Input image channels.
    pub input_channels: i64,
    /// Height = width of the input (a multiple of `patch_size`).
    pub resolution: i64,
    /// Output classes.
    pub num_classes: i64,
    /// Patch side (16 for 224-pixel inputs, 4 for 28/32-pixel inputs).
    pub patch_size: i64,
    /// Embed dim options (one for all layers).
    pub embed_dim: Vec<i64>,
    /// Layer count options.
    pub depth: Vec<i64>,
    /// Head count options of every layer.
    pub heads: Vec<i64>,
    /// MLP ratio options of every layer (hidden = floor(embed * ratio)).
    pub mlp_ratio: Vec<f64>,
    /// Query/key/value width per head (AutoFormer: 64, independent of the embed dim).
    pub head_dim: i64,
    /// Optional per-layer options, one entry per layer up to the largest depth.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerOptions>,
    /// AutoFormer's 2-D relative position encoding in every attention layer (its published
    /// parameter counts include it).
    pub relative_position: bool,
    /// Clipping distance of relative positions (AutoFormer: 14).
    pub max_relative_position: i64,
    /// Biases on q, k, v.
    pub qkv_bias: bool,
    /// Layer norm epsilon.
    pub ln_eps: f64,
}

/// The names of the presets.
pub const PRESETS: [&str; 6] = [
    "autoformer-tiny",
    "autoformer-small",
    "autoformer-base",
    "autoformer-mini",
    "deit-tiny",
    "deit-small",
];

/// A preset's full config.
pub fn preset(name: &str) -> PluginResult<Value> {
    let autoformer = |embed: &[i64], heads: &[i64], mlp: &[f64], depth: &[i64]| {
        json!({"input_channels": 3, "resolution": 224, "num_classes": 1000, "patch_size": 16,
               "embed_dim": embed, "depth": depth, "heads": heads, "mlp_ratio": mlp,
               "head_dim": 64, "relative_position": true, "max_relative_position": 14,
               "qkv_bias": true, "ln_eps": 1e-5})
    };
    let deit = |embed: i64, heads: i64| {
        json!({"input_channels": 3, "resolution": 224, "num_classes": 1000, "patch_size": 16,
               "embed_dim": [embed], "depth": [12], "heads": [heads], "mlp_ratio": [4.0],
               "head_dim": 64, "relative_position": false, "max_relative_position": 14,
               "qkv_bias": true, "ln_eps": 1e-6})
    };
    let mut config = match name {
        // AutoFormer (Chen et al., ICCV 2021), search spaces of Table 1.
        "autoformer-tiny" => autoformer(&[192, 216, 240], &[3, 4], &[3.5, 4.0], &[12, 13, 14]),
        "autoformer-small" => autoformer(
            &[320, 384, 448],
            &[5, 6, 7],
            &[3.0, 3.5, 4.0],
            &[12, 13, 14],
        ),
        "autoformer-base" => {
            autoformer(&[528, 576, 624], &[9, 10], &[3.0, 3.5, 4.0], &[14, 15, 16])
        }
        // The same design scaled for 28x28 / 32x32 inputs on a CPU (not from a paper).
        "autoformer-mini" => json!({"input_channels": 1, "resolution": 28, "num_classes": 10,
            "patch_size": 4, "embed_dim": [48, 64], "depth": [3, 4, 5], "heads": [2, 3, 4],
            "mlp_ratio": [2.0, 3.0, 4.0], "head_dim": 16, "relative_position": true,
            "max_relative_position": 14, "qkv_bias": true, "ln_eps": 1e-5}),
        // DeiT (Touvron et al., 2021), fixed architectures for checking the counter.
        "deit-tiny" => deit(192, 3),
        "deit-small" => deit(384, 6),
        other => {
            return Err(PluginError::config(format!(
                "vit: unknown preset `{other}` (presets: {})",
                PRESETS.join(", ")
            )))
        }
    };
    config["preset"] = json!(name);
    Ok(config)
}

impl VitConfig {
    /// Parses a config: the preset named by `preset` (default `autoformer-tiny`) with the given
    /// fields replacing the preset's.
    pub fn parse(json_text: &str) -> PluginResult<Self> {
        let config: Self = parse_preset_config("vit", json_text, "autoformer-tiny", preset)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> PluginResult<()> {
        let bad = |message: String| Err(PluginError::config(format!("vit: {message}")));
        for (field, value) in [
            ("input_channels", self.input_channels),
            ("resolution", self.resolution),
            ("num_classes", self.num_classes),
            ("patch_size", self.patch_size),
            ("head_dim", self.head_dim),
            ("max_relative_position", self.max_relative_position),
        ] {
            if value < 1 {
                return bad(format!("field `{field}` must be at least 1, got {value}"));
            }
        }
        if self.resolution % self.patch_size != 0 {
            return bad(format!(
                "`resolution` {} is not a multiple of `patch_size` {} (use patch_size 4 for 28- or 32-pixel images, or the `autoformer-mini` preset)",
                self.resolution, self.patch_size
            ));
        }
        let ascending = |field: &str, list: &[f64]| -> PluginResult<()> {
            if list.is_empty()
                || list.iter().any(|&v| v.is_nan() || v <= 0.0)
                || list.windows(2).any(|w| w[0] >= w[1])
            {
                return Err(PluginError::config(format!(
                    "vit: field `{field}` must be a non-empty, strictly ascending list of positive numbers (options are nested), got {list:?}"
                )));
            }
            Ok(())
        };
        let floats = |list: &[i64]| list.iter().map(|&v| v as f64).collect::<Vec<_>>();
        ascending("embed_dim", &floats(&self.embed_dim))?;
        ascending("depth", &floats(&self.depth))?;
        ascending("heads", &floats(&self.heads))?;
        ascending("mlp_ratio", &self.mlp_ratio)?;
        let max_depth = self.max_depth();
        if !self.layers.is_empty() && self.layers.len() as i64 != max_depth {
            return bad(format!(
                "`layers` has {} entries; it needs one per layer up to the largest depth ({max_depth})",
                self.layers.len()
            ));
        }
        for (i, layer) in self.layers.iter().enumerate() {
            ascending(&format!("layers[{i}].heads"), &floats(&layer.heads))?;
            ascending(&format!("layers[{i}].mlp_ratio"), &layer.mlp_ratio)?;
        }
        Ok(())
    }

    /// The largest depth.
    pub fn max_depth(&self) -> i64 {
        *self.depth.last().expect("validated")
    }

    /// Head and MLP-ratio options of layer `i`.
    pub fn layer_options(&self, i: usize) -> (&[i64], &[f64]) {
        match self.layers.get(i) {
            Some(layer) => (&layer.heads, &layer.mlp_ratio),
            None => (&self.heads, &self.mlp_ratio),
        }
    }

    /// Patch tokens plus the class token.
    pub fn tokens(&self) -> i64 {
        let side = self.resolution / self.patch_size;
        side * side + 1
    }
}

/// Hidden width of an MLP: `floor(embed * ratio)` (AutoFormer's `int(embed * ratio)`).
pub fn hidden_width(embed: i64, ratio: f64) -> i64 {
    (embed as f64 * ratio) as i64
}
