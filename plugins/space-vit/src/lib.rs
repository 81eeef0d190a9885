//! Elastic vision transformer search space (AutoFormer), built from the SDK's elastic layers.
//!
//! Decisions: the embed dim (one for all layers), the depth, and per layer the head count and
//! the MLP ratio. Weights are entangled: a subnet uses the first `embed` features of every
//! embedding, norm and projection, the first `heads x head_dim` rows of q, k and v, the first
//! `floor(embed * ratio)` hidden units of each MLP, and the first `depth` layers. As in
//! AutoFormer, q/k/v width is `head_dim x heads` (64 per head), independent of the embed dim.
//!
//! Layout (pre-norm, timm's parameter names): patch embedding (conv, kernel = stride = patch),
//! class token, learned absolute position embedding; per layer `x + attn(norm1(x))`,
//! `x + mlp(norm2(x))` with GELU; final norm; linear head on the class token. AutoFormer's 2-D
//! relative position encoding (`relative_position`, on in the AutoFormer presets) adds learned
//! row/column offset embeddings to the attention logits and outputs of every layer.
//!
//! Presets: `autoformer-tiny` (default), `autoformer-small`, `autoformer-base` (the paper's
//! spaces, 224x224, patch 16), `autoformer-mini` (28x28 inputs, patch 4, head_dim 16; not from a
//! paper), `deit-tiny` and `deit-small` (fixed, for checking the counter).
//!
//! Complexity: MACs of the patch-embedding conv, every linear layer (q/k/v, projection, MLP; the
//! head on the class token only), the attention products `q k^T` and `a v`, and the relative
//! position products when on; parameters of everything the subnet uses (tokens, position
//! embeddings, norms, relative position tables included). This reproduces DeiT-Ti/S's exact
//! MACs and parameters and AutoFormer-T/S/B's published parameter counts.

pub mod config;

use nas_sdk::{
    elastic::{
        additive_cost_table, expand_levels, first, gate_features, plain, residual, Activation,
        Counter, ElasticConv2d, ElasticLayerNorm, ElasticLinear, ElasticSelfAttention,
        RelativePosition2d,
    },
    nn::ParamStore,
    Arch, Complexity, Component, CostTable, Decision, ForwardOptions, KeepMask, Metric,
    PluginError, PluginResult, SearchSpace,
};
use serde_json::json;
use tch::{Device, Kind, Tensor};

use config::{hidden_width, VitConfig};

/// What one decision sets.
#[derive(Clone, Debug, PartialEq)]
enum Slot {
    Embed,
    Depth,
    Heads(usize),
    MlpRatio(usize),
}

#[derive(Clone, Debug)]
struct DecisionSlot {
    slot: Slot,
    values: Vec<f64>,
    decision: Decision,
}

/// An arch resolved into layer sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct Dims {
    /// Embed dim.
    pub embed: i64,
    /// Active layers.
    pub depth: i64,
    /// Heads of every layer up to the largest depth.
    pub heads: Vec<i64>,
    /// MLP ratio of every layer up to the largest depth.
    pub mlp_ratio: Vec<f64>,
}

fn label(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

fn decision_slots(config: &VitConfig) -> Vec<DecisionSlot> {
    let mut slots = Vec::new();
    let mut push = |name: String, group: &str, kind: &str, values: Vec<f64>, slot: Slot| {
        if values.len() < 2 {
            return;
        }
        let count = values.len() as u32;
        let kept: Vec<u32> = (1..=count).collect();
        slots.push(DecisionSlot {
            slot,
            decision: Decision {
                name: name.into(),
                options: values.iter().map(|&v| label(v).into()).collect(),
                group: group.into(),
                kind: kind.into(),
                keep_mask: abi_stable::std_types::ROption::RSome(KeepMask::nested(&kept, count)),
            },
            values,
        });
    };
    let floats = |list: &[i64]| list.iter().map(|&v| v as f64).collect::<Vec<_>>();
    push(
        "embed_dim".into(),
        "embed",
        "embed_dim",
        floats(&config.embed_dim),
        Slot::Embed,
    );
    push(
        "depth".into(),
        "encoder",
        "depth",
        floats(&config.depth),
        Slot::Depth,
    );
    for i in 0..config.max_depth() as usize {
        let (heads, ratios) = config.layer_options(i);
        let group = format!("layer{i}");
        push(
            format!("{group}.heads"),
            &group,
            "heads",
            floats(heads),
            Slot::Heads(i),
        );
        push(
            format!("{group}.mlp_ratio"),
            &group,
            "mlp_ratio",
            ratios.to_vec(),
            Slot::MlpRatio(i),
        );
    }
    slots
}

/// One encoder layer at its largest sizes.
struct Layer {
    norm1: ElasticLayerNorm,
    attention: ElasticSelfAttention,
    norm2: ElasticLayerNorm,
    fc1: ElasticLinear,
    fc2: ElasticLinear,
    prefix: String,
}

/// The supernet.
struct Net {
    store: ParamStore,
    patch_embed: ElasticConv2d,
    cls_token: Tensor,
    pos_embed: Tensor,
    token_ids: Vec<usize>,
    layers: Vec<Layer>,
    norm: ElasticLayerNorm,
    head: ElasticLinear,
}

/// Gates mapped onto units.
#[derive(Default)]
struct MappedGates {
    embed: Option<Tensor>,
    depth: Option<Tensor>,
    heads: Vec<Option<Tensor>>,
    hidden: Vec<Option<Tensor>>,
}

/// The space.
pub struct VitSpace {
    config: VitConfig,
    slots: Vec<DecisionSlot>,
    net: Option<Net>,
}

impl Component for VitSpace {
    const NAME: &'static str = "vit";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "elastic vision transformer (AutoFormer Tiny/Small/Base, mini, DeiT presets)";

    fn default_config() -> serde_json::Value {
        config::preset("autoformer-tiny").expect("the default preset exists")
    }

    fn from_config(config: &str) -> PluginResult<Self> {
        let config = VitConfig::parse(config)?;
        let slots = decision_slots(&config);
        Ok(VitSpace {
            config,
            slots,
            net: None,
        })
    }
}

impl VitSpace {
    fn net(&self) -> PluginResult<&Net> {
        self.net
            .as_ref()
            .ok_or_else(|| PluginError::runtime("vit: the supernet is not built yet"))
    }

    /// The sizes `arch` selects.
    pub fn dims(&self, arch: &Arch) -> PluginResult<Dims> {
        let choices = arch.choices();
        if choices.len() != self.slots.len() {
            return Err(PluginError::arch(format!(
                "vit: an arch has {} choices, got {}",
                self.slots.len(),
                choices.len()
            )));
        }
        let layers = self.config.max_depth() as usize;
        let mut dims = Dims {
            embed: self.config.embed_dim[0],
            depth: self.config.depth[0],
            heads: (0..layers)
                .map(|i| self.config.layer_options(i).0[0])
                .collect(),
            mlp_ratio: (0..layers)
                .map(|i| self.config.layer_options(i).1[0])
                .collect(),
        };
        for (slot, &choice) in self.slots.iter().zip(choices) {
            let Some(&value) = slot.values.get(choice as usize) else {
                return Err(PluginError::arch(format!(
                    "vit: decision `{}` has {} options, got choice {choice}",
                    slot.decision.name,
                    slot.values.len()
                )));
            };
            match slot.slot {
                Slot::Embed => dims.embed = value as i64,
                Slot::Depth => dims.depth = value as i64,
                Slot::Heads(i) => dims.heads[i] = value as i64,
                Slot::MlpRatio(i) => dims.mlp_ratio[i] = value,
            }
        }
        Ok(dims)
    }

    fn map_gates(&self, dims: &Dims, gates: &[Tensor]) -> PluginResult<MappedGates> {
        if gates.len() != self.slots.len() {
            return Err(PluginError::arch(format!(
                "vit: {} gates given for {} decisions",
                gates.len(),
                self.slots.len()
            )));
        }
        let layers = dims.heads.len();
        let mut mapped = MappedGates {
            heads: (0..layers).map(|_| None).collect(),
            hidden: (0..layers).map(|_| None).collect(),
            ..MappedGates::default()
        };
        let ints = |values: &[f64]| values.iter().map(|&v| v as i64).collect::<Vec<_>>();
        for (slot, gate) in self.slots.iter().zip(gates) {
            match slot.slot {
                Slot::Embed => mapped.embed = Some(expand_levels(gate, &ints(&slot.values))),
                Slot::Depth => mapped.depth = Some(expand_levels(gate, &ints(&slot.values))),
                Slot::Heads(i) => mapped.heads[i] = Some(expand_levels(gate, &ints(&slot.values))),
                Slot::MlpRatio(i) => {
                    let widths: Vec<i64> = slot
                        .values
                        .iter()
                        .map(|&r| hidden_width(dims.embed, r))
                        .collect();
                    mapped.hidden[i] = Some(expand_levels(gate, &widths));
                }
            }
        }
        Ok(mapped)
    }

    fn text(&self, dims: &Dims) -> String {
        let depth = dims.depth as usize;
        json!({
            "embed_dim": dims.embed,
            "depth": dims.depth,
            "heads": &dims.heads[..depth],
            "mlp_ratio": &dims.mlp_ratio[..depth],
        })
        .to_string()
    }
}

/// Exact MACs and parameters of `dims`.
fn count(config: &VitConfig, dims: &Dims) -> Counter {
    let mut counter = Counter::default();
    let (embed, tokens) = (dims.embed, config.tokens());
    let side = config.resolution / config.patch_size;
    counter.conv2d(
        config.input_channels,
        embed,
        config.patch_size,
        1,
        side,
        side,
        true,
    );
    // Class token and position embeddings.
    counter.parameters(embed + tokens * embed);
    for i in 0..dims.depth as usize {
        let width = dims.heads[i] * config.head_dim;
        let hidden = hidden_width(embed, dims.mlp_ratio[i]);
        counter.layer_norm(embed);
        counter.linear(embed, 3 * width, tokens, config.qkv_bias);
        counter.multiply_accumulates(2 * tokens * tokens * width);
        if config.relative_position {
            let rows = 2 * config.max_relative_position + 2;
            counter.parameters(4 * rows * config.head_dim);
            counter.multiply_accumulates(2 * tokens * tokens * width);
        }
        counter.linear(width, embed, tokens, true);
        counter.layer_norm(embed);
        counter.linear(embed, hidden, tokens, true);
        counter.linear(hidden, embed, tokens, true);
    }
    counter.layer_norm(embed);
    counter.linear(embed, config.num_classes, 1, true);
    counter
}

/// Archs drawn to fit the additive cost table.
const COST_SAMPLES: usize = 2048;

impl SearchSpace for VitSpace {
    fn decisions(&self) -> Vec<Decision> {
        self.slots.iter().map(|s| s.decision.clone()).collect()
    }

    fn build(&mut self, device: Device) -> PluginResult<()> {
        let config = &self.config;
        let mut store = ParamStore::new(device);
        let embed_max = *config.embed_dim.last().expect("validated");
        let patch_embed = ElasticConv2d::new(
            &mut store,
            "patch_embed.proj",
            config.input_channels,
            embed_max,
            config.patch_size,
            config.patch_size,
            false,
            true,
        )
        .with_padding(0);
        let normal =
            |shape: &[i64]| Tensor::empty(shape, (Kind::Float, Device::Cpu)).normal_(0.0, 0.02);
        let (cls_token, cls_id) = store.param("cls_token", normal(&[1, 1, embed_max]));
        let (pos_embed, pos_id) =
            store.param("pos_embed", normal(&[1, config.tokens(), embed_max]));
        let mut layers = Vec::new();
        for i in 0..config.max_depth() as usize {
            let prefix = format!("blocks.{i}");
            let (heads, ratios) = config.layer_options(i);
            let heads_max = *heads.last().expect("validated");
            let hidden_max = hidden_width(embed_max, *ratios.last().expect("validated"));
            let norm1 = ElasticLayerNorm::new(
                &mut store,
                &format!("{prefix}.norm1"),
                embed_max,
                config.ln_eps,
            );
            let mut attention = ElasticSelfAttention::new(
                &mut store,
                &format!("{prefix}.attn"),
                embed_max,
                heads_max,
                config.head_dim,
                config.qkv_bias,
            );
            if config.relative_position {
                attention = attention.with_relative_position(RelativePosition2d::new(
                    &mut store,
                    &format!("{prefix}.attn"),
                    config.head_dim,
                    config.max_relative_position,
                ));
            }
            let norm2 = ElasticLayerNorm::new(
                &mut store,
                &format!("{prefix}.norm2"),
                embed_max,
                config.ln_eps,
            );
            let fc1 = ElasticLinear::new(
                &mut store,
                &format!("{prefix}.mlp.fc1"),
                embed_max,
                hidden_max,
                true,
            );
            let fc2 = ElasticLinear::new(
                &mut store,
                &format!("{prefix}.mlp.fc2"),
                hidden_max,
                embed_max,
                true,
            );
            layers.push(Layer {
                norm1,
                attention,
                norm2,
                fc1,
                fc2,
                prefix,
            });
        }
        let norm = ElasticLayerNorm::new(&mut store, "norm", embed_max, config.ln_eps);
        let head = ElasticLinear::new(&mut store, "head", embed_max, config.num_classes, true);
        self.net = Some(Net {
            store,
            patch_embed,
            cls_token,
            pos_embed,
            token_ids: vec![cls_id, pos_id],
            layers,
            norm,
            head,
        });
        Ok(())
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.net
            .as_ref()
            .map(|n| n.store.parameters())
            .unwrap_or_default()
    }

    fn buffers(&self) -> Vec<(String, Tensor)> {
        self.net
            .as_ref()
            .map(|n| n.store.buffers())
            .unwrap_or_default()
    }

    fn forward(
        &self,
        input: &Tensor,
        arch: &Arch,
        gates: Option<&[Tensor]>,
        _options: &ForwardOptions,
    ) -> PluginResult<Tensor> {
        let net = self.net()?;
        let dims = self.dims(arch)?;
        let config = &self.config;
        let size = input.size();
        if size.len() != 4
            || size[1] != config.input_channels
            || size[2] != config.resolution
            || size[3] != config.resolution
        {
            return Err(PluginError::runtime(format!(
                "vit: expected input [batch, {}, {r}, {r}], got {size:?}",
                config.input_channels,
                r = config.resolution
            )));
        }
        let gates = gates.map(|g| self.map_gates(&dims, g)).transpose()?;
        let embed = dims.embed;
        // [n, c, H, W] -> [n, embed, H/p, W/p] -> [n, patches, embed]
        let patches = net
            .patch_embed
            .forward(input, embed, config.patch_size, None, None)
            .flatten(2, -1)
            .transpose(1, 2);
        // The class token is broadcast through a zero row of the patches rather than an expand
        // to the batch size, so a traced module accepts any batch size.
        let cls = patches.narrow(1, 0, 1).zeros_like() + first(&net.cls_token, 2, embed);
        let tokens = Tensor::cat(&[cls, patches], 1) + first(&net.pos_embed, 2, embed);
        let mut x = match gates.as_ref().and_then(|g| g.embed.as_ref()) {
            Some(gate) => gate_features(&tokens, gate),
            None => tokens,
        };
        for (i, layer) in net.layers.iter().take(dims.depth as usize).enumerate() {
            let depth_gate = gates
                .as_ref()
                .and_then(|g| g.depth.as_ref())
                .map(|g| g.get(i as i64));
            let head_gate = gates.as_ref().and_then(|g| g.heads[i].as_ref());
            let attended =
                layer
                    .attention
                    .forward(&layer.norm1.forward(&x), dims.heads[i], head_gate);
            x = residual(&x, &attended, depth_gate.as_ref());
            let hidden = hidden_width(embed, dims.mlp_ratio[i]);
            let h =
                Activation::Gelu.apply(&layer.fc1.forward(&layer.norm2.forward(&x), hidden, None));
            let h = match gates.as_ref().and_then(|g| g.hidden[i].as_ref()) {
                Some(gate) => gate_features(&h, gate),
                None => h,
            };
            x = residual(&x, &layer.fc2.forward(&h, embed, None), depth_gate.as_ref());
        }
        let cls = net.norm.forward(&x).select(1, 0);
        Ok(net.head.forward(&cls, config.num_classes, None))
    }

    fn active_parameters(&self, arch: &Arch) -> PluginResult<Vec<usize>> {
        let net = self.net()?;
        let dims = self.dims(arch)?;
        let mut ids: Vec<usize> = net.patch_embed.param_ids().to_vec();
        ids.extend(&net.token_ids);
        for layer in net.layers.iter().take(dims.depth as usize) {
            ids.extend(layer.norm1.param_ids());
            ids.extend(layer.attention.param_ids());
            ids.extend(layer.norm2.param_ids());
            ids.extend(layer.fc1.param_ids());
            ids.extend(layer.fc2.param_ids());
        }
        ids.extend(net.norm.param_ids());
        ids.extend(net.head.param_ids());
        Ok(ids)
    }

    fn complexity(&self, arch: &Arch) -> PluginResult<Complexity> {
        Ok(count(&self.config, &self.dims(arch)?).complexity())
    }

    fn extremes(&self, _metric: Metric) -> PluginResult<(Arch, Arch)> {
        // Every decision's options ascend in both MACs and parameters.
        Ok((
            Arch::new(vec![0; self.slots.len()]),
            Arch::new(
                self.slots
                    .iter()
                    .map(|s| s.values.len() as u32 - 1)
                    .collect(),
            ),
        ))
    }

    fn cost_table(&self, metric: Metric) -> PluginResult<CostTable> {
        let options: Vec<u32> = self.slots.iter().map(|s| s.values.len() as u32).collect();
        let (table, _) = additive_cost_table(
            &options,
            |arch| self.complexity(arch),
            metric,
            COST_SAMPLES,
            0,
        )?;
        Ok(table)
    }

    fn arch_to_text(&self, arch: &Arch) -> PluginResult<String> {
        Ok(self.text(&self.dims(arch)?))
    }

    fn arch_from_text(&self, text: &str) -> PluginResult<Arch> {
        let bad = |message: String| PluginError::arch(format!("vit: {message}"));
        let value: serde_json::Value = serde_json::from_str(text).map_err(|err| {
            bad(format!(
                "an arch is a JSON list of choice indices or an object with embed_dim, depth, heads, mlp_ratio: {err}"
            ))
        })?;
        if let Ok(choices) = serde_json::from_value::<Vec<u32>>(value.clone()) {
            let arch = Arch::new(choices);
            self.dims(&arch)?;
            return Ok(arch);
        }
        let number = |key: &str| {
            value
                .get(key)
                .and_then(|v| v.as_f64())
                .ok_or_else(|| bad(format!("field `{key}` must be a number")))
        };
        let list = |key: &str| -> PluginResult<Vec<f64>> {
            value
                .get(key)
                .and_then(|v| v.as_array())
                .ok_or_else(|| bad(format!("field `{key}` must be a list")))?
                .iter()
                .map(|v| {
                    v.as_f64()
                        .ok_or_else(|| bad(format!("`{key}` holds a non-number")))
                })
                .collect()
        };
        let (embed, depth) = (number("embed_dim")?, number("depth")?);
        let (heads, ratios) = (list("heads")?, list("mlp_ratio")?);
        if heads.len() != depth as usize || ratios.len() != depth as usize {
            return Err(bad(format!(
                "`heads` and `mlp_ratio` need one entry per layer ({depth})"
            )));
        }
        let position = |values: &[f64], value: f64, what: &str| -> PluginResult<u32> {
            values
                .iter()
                .position(|&v| (v - value).abs() < 1e-9)
                .map(|p| p as u32)
                .ok_or_else(|| bad(format!("{what} {value} is not an option ({values:?})")))
        };
        let mut choices = Vec::new();
        for slot in &self.slots {
            choices.push(match slot.slot {
                Slot::Embed => position(&slot.values, embed, "embed dim")?,
                Slot::Depth => position(&slot.values, depth, "depth")?,
                Slot::Heads(i) => match heads.get(i) {
                    Some(&h) => position(&slot.values, h, "head count")?,
                    None => 0,
                },
                Slot::MlpRatio(i) => match ratios.get(i) {
                    Some(&r) => position(&slot.values, r, "MLP ratio")?,
                    None => 0,
                },
            });
        }
        let arch = Arch::new(choices);
        let dims = self.dims(&arch)?;
        let fixed_ok = dims.embed as f64 == embed
            && dims.depth as f64 == depth
            && dims.heads[..depth as usize]
                .iter()
                .zip(&heads)
                .all(|(&a, &b)| a as f64 == b)
            && dims.mlp_ratio[..depth as usize]
                .iter()
                .zip(&ratios)
                .all(|(&a, &b)| (a - b).abs() < 1e-9);
        if !fixed_ok {
            return Err(bad(format!("{text} is not an arch of this space")));
        }
        Ok(arch)
    }

    fn export_subnet(&self, arch: &Arch) -> PluginResult<Vec<(String, Tensor)>> {
        let net = self.net()?;
        let dims = self.dims(arch)?;
        let config = &self.config;
        let embed = dims.embed;
        let mut out = net.patch_embed.export(
            "patch_embed.proj",
            config.input_channels,
            embed,
            config.patch_size,
        );
        out.push(("cls_token".into(), plain(&net.cls_token, &[1, 1, embed])));
        out.push((
            "pos_embed".into(),
            plain(&net.pos_embed, &[1, config.tokens(), embed]),
        ));
        for (i, layer) in net.layers.iter().take(dims.depth as usize).enumerate() {
            let p = &layer.prefix;
            let hidden = hidden_width(embed, dims.mlp_ratio[i]);
            out.extend(layer.norm1.export(&format!("{p}.norm1"), embed));
            out.extend(
                layer
                    .attention
                    .export(&format!("{p}.attn"), embed, dims.heads[i]),
            );
            out.extend(layer.norm2.export(&format!("{p}.norm2"), embed));
            out.extend(layer.fc1.export(&format!("{p}.mlp.fc1"), embed, hidden));
            out.extend(layer.fc2.export(&format!("{p}.mlp.fc2"), hidden, embed));
        }
        out.extend(net.norm.export("norm", embed));
        out.extend(net.head.export("head", embed, config.num_classes));
        Ok(out)
    }

    fn subnet_config(&self, arch: &Arch) -> PluginResult<String> {
        let dims = self.dims(arch)?;
        let mut config = self.config.clone();
        let depth = dims.depth as usize;
        config.embed_dim = vec![dims.embed];
        config.depth = vec![dims.depth];
        config.heads = vec![dims.heads[0]];
        config.mlp_ratio = vec![dims.mlp_ratio[0]];
        // MLP widths are floor(embed * ratio) of the subnet's embed dim, so ratios carry over.
        config.layers = (0..depth)
            .map(|i| config::LayerOptions {
                heads: vec![dims.heads[i]],
                mlp_ratio: vec![dims.mlp_ratio[i]],
            })
            .collect();
        serde_json::to_string(&config)
            .map_err(|err| PluginError::runtime(format!("vit: subnet config: {err}")))
    }
}

nas_sdk::export_plugin!(nas_sdk::plugin::Registry::new().space::<VitSpace>());

#[cfg(test)]
mod tests;
