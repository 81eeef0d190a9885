//! Elastic MobileNet-style CNN search space, built from the SDK's elastic layers.
//!
//! Presets (`preset` field; any other field replaces the preset's value):
//! - `attentivenas` (default): the AttentiveNAS/BigNAS space: elastic resolution
//!   {192, 224, 256, 288}, first conv width, and per stage width, depth, kernel {3, 5} and expand
//!   ratio (one kernel and one ratio per stage, as the official code), swish, squeeze-excite in
//!   stages 3, 5, 6, 7, MobileNetV3 head with the last conv width {1792, 1984}.
//! - `attentivenas-small`: the same blocks scaled for 28x28 / 32x32 inputs (first conv stride 1,
//!   four stages, 8..64 channels, head {256, 384}); not from a paper.
//! - `fairnas`: MobileNetV2 1.0's layout where every searchable layer chooses kernel {3, 5, 7} x
//!   expand {3, 6} as one 6-way decision (FairNAS). Unlike FairNAS's separate choice blocks, the
//!   six choices share weights (centre-cropped kernels, nested mid channels).
//! - `mobilenetv2`: MobileNetV2 1.0 itself (no decisions), for checking the complexity counter.
//!
//! Blocks are inverted residuals: 1x1 expand conv (absent at ratio 1), depthwise `k x k` conv
//! carrying the stride, optional squeeze-excite (`make_divisible(mid // 4, 8)` channels, ReLU,
//! hard sigmoid), 1x1 projection; BN after every conv, the activation after all but the
//! projection. Mid channels are `make_divisible(round(C_in * ratio), 8)` of the block's active
//! input. Shortcuts follow `shortcut`: `pooled` (AttentiveNAS: every block adds a shortcut that
//! average-pools when strided and applies a bias-free 1x1 conv when channels differ) or
//! `identity` (MobileNetV2).
//!
//! Complexity (exact, of the active subnet): MACs of every conv and linear layer that runs
//! (`C_in/groups * k * k * C_out * H_out * W_out`, linear `in * out`, squeeze-excite and shortcut
//! convs included; BN, activations, pooling and additions not); parameters of the layers that
//! run, BN affine included, running statistics not. This reproduces AttentiveNAS-A0..A6's
//! published MFLOPs (rounded) and torchvision MobileNetV2's MACs and parameters exactly.

pub mod arch;
pub mod config;

use nas_sdk::{
    elastic::{
        additive_cost_table, expand_levels, gate_channels, residual, resize, Counter,
        ElasticConv2d, ElasticLinear, SqueezeExcite,
    },
    nn::{BatchNorm2d, ParamStore},
    Arch, Complexity, Component, CostTable, Decision, ForwardOptions, Metric, PluginError,
    PluginResult, SearchSpace,
};
use tch::{Device, Tensor};

use arch::{arch_from_json, decision_slots, op_axes, DecisionSlot, Dims, Slot};
use config::{mid_channels, se_channels, CnnConfig, HeadKind, Shortcut};

/// Conv + BN (+ activation), the unit most layers are made of.
struct ConvBn {
    conv: ElasticConv2d,
    bn: BatchNorm2d,
    prefix: String,
}

impl ConvBn {
    #[allow(clippy::too_many_arguments)]
    fn new(
        store: &mut ParamStore,
        prefix: String,
        c_in: i64,
        c_out: i64,
        kernel: i64,
        stride: i64,
        depthwise: bool,
        config: &CnnConfig,
    ) -> Self {
        let conv = ElasticConv2d::new(
            store,
            &format!("{prefix}.conv"),
            c_in,
            c_out,
            kernel,
            stride,
            depthwise,
            false,
        );
        let mut bn = BatchNorm2d::new(
            store,
            &format!("{prefix}.bn"),
            c_out,
            true,
            true,
            config.bn_momentum,
        );
        bn.eps = config.bn_eps;
        ConvBn { conv, bn, prefix }
    }

    fn forward(
        &self,
        x: &Tensor,
        c_out: i64,
        kernel: i64,
        kernel_gate: Option<(&Tensor, &[i64])>,
        options: &ForwardOptions,
    ) -> Tensor {
        self.bn.forward(
            &self.conv.forward(x, c_out, kernel, None, kernel_gate),
            options,
        )
    }

    fn export(&self, c_in: i64, c_out: i64, kernel: i64) -> Vec<(String, Tensor)> {
        let c_out = if self.conv.depthwise { c_in } else { c_out };
        let mut out = self
            .conv
            .export(&format!("{}.conv", self.prefix), c_in, c_out, kernel);
        out.extend(self.bn.export(&format!("{}.bn", self.prefix), c_out));
        out
    }

    fn ids(&self) -> Vec<usize> {
        [self.conv.param_ids(), self.bn.param_ids()].concat()
    }
}

/// Gates of one block, already mapped to units.
#[derive(Default)]
struct BlockGates {
    kernel: Option<(Tensor, Vec<i64>)>,
    mid: Option<Tensor>,
    depth: Option<Tensor>,
}

/// An inverted-residual block at its largest sizes.
struct Block {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    se: Option<SqueezeExcite>,
    project: ConvBn,
    shortcut_conv: Option<ElasticConv2d>,
    stride: i64,
    prefix: String,
}

/// The supernet.
struct Net {
    store: ParamStore,
    first_conv: ConvBn,
    stages: Vec<Vec<Block>>,
    head_expand: Option<ConvBn>,
    head_conv: Option<ElasticConv2d>,
    head_last: Option<ConvBn>,
    classifier: ElasticLinear,
}

/// The space.
pub struct CnnSpace {
    config: CnnConfig,
    slots: Vec<DecisionSlot>,
    net: Option<Net>,
}

impl Component for CnnSpace {
    const NAME: &'static str = "cnn";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "elastic MobileNet-style CNN (AttentiveNAS/BigNAS, FairNAS, MobileNetV2 presets)";

    fn default_config() -> serde_json::Value {
        config::preset("attentivenas").expect("the default preset exists")
    }

    fn from_config(config: &str) -> PluginResult<Self> {
        let config = CnnConfig::parse(config)?;
        let slots = decision_slots(&config);
        Ok(CnnSpace {
            config,
            slots,
            net: None,
        })
    }
}

impl CnnSpace {
    fn net(&self) -> PluginResult<&Net> {
        self.net
            .as_ref()
            .ok_or_else(|| PluginError::runtime("cnn: the supernet is not built yet"))
    }

    fn dims(&self, arch: &Arch) -> PluginResult<Dims> {
        Dims::resolve(&self.config, &self.slots, arch)
    }

    /// Largest mid channels of block `b` of stage `s` over all input widths and ratios.
    fn max_mid(&self, s: usize, b: usize) -> i64 {
        let inputs = self.block_input_options(s, b);
        let (_, expands) = self.config.block_options(s, b);
        inputs
            .iter()
            .flat_map(|&c| expands.iter().map(move |&e| mid_channels(c, e)))
            .max()
            .expect("non-empty")
    }

    fn block_input_options(&self, s: usize, b: usize) -> Vec<i64> {
        match (s, b) {
            (0, 0) => self.config.first_conv.width.clone(),
            (s, 0) => self.config.stages[s - 1].width.clone(),
            (s, _) => self.config.stages[s].width.clone(),
        }
    }

    fn last_stage_widths(&self) -> &[i64] {
        &self.config.stages.last().expect("validated").width
    }

    /// Per-decision gates mapped onto the layers' units.
    fn map_gates(&self, dims: &Dims, gates: &[Tensor]) -> PluginResult<MappedGates> {
        if gates.len() != self.slots.len() {
            return Err(PluginError::arch(format!(
                "cnn: {} gates given for {} decisions",
                gates.len(),
                self.slots.len()
            )));
        }
        let mut mapped = MappedGates {
            stages: dims
                .stages
                .iter()
                .map(|s| StageGates {
                    width: None,
                    blocks: s.blocks.iter().map(|_| BlockGates::default()).collect(),
                })
                .collect(),
            ..MappedGates::default()
        };
        let levels = |values: &[f64]| values.iter().map(|&v| v as i64).collect::<Vec<_>>();
        for (slot, gate) in self.slots.iter().zip(gates) {
            match &slot.slot {
                Slot::Resolution => {
                    let chosen = slot
                        .values
                        .iter()
                        .position(|&r| r as i64 == dims.resolution)
                        .expect("resolved");
                    mapped.resolution = Some(gate.get(chosen as i64));
                }
                Slot::FirstWidth => {
                    mapped.first_width = Some(expand_levels(gate, &levels(&slot.values)))
                }
                Slot::Width(s) => {
                    mapped.stages[*s].width = Some(expand_levels(gate, &levels(&slot.values)))
                }
                Slot::HeadWidth => {
                    mapped.head_width = Some(expand_levels(gate, &levels(&slot.values)))
                }
                Slot::Depth(s) => {
                    let blocks = expand_levels(gate, &levels(&slot.values));
                    for (b, block) in mapped.stages[*s].blocks.iter_mut().enumerate() {
                        block.depth = Some(blocks.get(b as i64));
                    }
                }
                Slot::Kernel(s, only) => {
                    for (b, block) in mapped.stages[*s].blocks.iter_mut().enumerate() {
                        if only.is_none_or(|o| o == b) {
                            block.kernel = Some((gate.shallow_clone(), levels(&slot.values)));
                        }
                    }
                }
                Slot::Expand(s, only) => {
                    for b in 0..dims.stages[*s].blocks.len() {
                        if only.is_none_or(|o| o == b) {
                            let c_in = dims.block_input(*s, b);
                            let mids: Vec<i64> =
                                slot.values.iter().map(|&e| mid_channels(c_in, e)).collect();
                            mapped.stages[*s].blocks[b].mid = Some(expand_levels(gate, &mids));
                        }
                    }
                }
                Slot::Op(s, b) => {
                    let (kernels, expands) = op_axes(&slot.pairs);
                    let rings = gate.narrow(0, 0, kernels.len() as i64);
                    let level_gate = gate.narrow(0, kernels.len() as i64, expands.len() as i64);
                    let c_in = dims.block_input(*s, *b);
                    let mids: Vec<i64> = expands.iter().map(|&e| mid_channels(c_in, e)).collect();
                    let block = &mut mapped.stages[*s].blocks[*b];
                    block.kernel = Some((rings, kernels));
                    block.mid = Some(expand_levels(&level_gate, &mids));
                }
            }
        }
        Ok(mapped)
    }
}

#[derive(Default)]
struct StageGates {
    width: Option<Tensor>,
    blocks: Vec<BlockGates>,
}

#[derive(Default)]
struct MappedGates {
    resolution: Option<Tensor>,
    first_width: Option<Tensor>,
    stages: Vec<StageGates>,
    head_width: Option<Tensor>,
}

impl Block {
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: &Tensor,
        c_out: i64,
        kernel: i64,
        mid: i64,
        reduce: i64,
        residual_gate: Option<&Tensor>,
        gates: Option<&BlockGates>,
        config: &CnnConfig,
        options: &ForwardOptions,
    ) -> Tensor {
        let c_in = x.size()[1];
        let act = |t: Tensor| config.activation.apply(&t);
        let mut h = match &self.expand {
            Some(expand) => act(expand.forward(x, mid, 1, None, options)),
            None => x.shallow_clone(),
        };
        let kernel_gate = gates
            .and_then(|g| g.kernel.as_ref())
            .map(|(gate, rings)| (gate, rings.as_slice()));
        h = act(self
            .depthwise
            .forward(&h, mid, kernel, kernel_gate, options));
        if let Some(gate) = gates.and_then(|g| g.mid.as_ref()) {
            h = gate_channels(&h, gate);
        }
        if let Some(se) = &self.se {
            h = se.forward(&h, reduce);
        }
        h = self.project.forward(&h, c_out, 1, None, options);
        match config.shortcut {
            Shortcut::Pooled => {
                let mut shortcut = if self.stride > 1 {
                    x.avg_pool2d(
                        [self.stride, self.stride],
                        [self.stride, self.stride],
                        [0, 0],
                        true,
                        false,
                        None,
                    )
                } else {
                    x.shallow_clone()
                };
                if c_in != c_out {
                    let conv = self
                        .shortcut_conv
                        .as_ref()
                        .expect("a shortcut conv exists wherever widths can differ");
                    shortcut = conv.forward(&shortcut, c_out, 1, None, None);
                }
                residual(&shortcut, &h, residual_gate)
            }
            Shortcut::Identity if self.stride == 1 && c_in == c_out => {
                residual(x, &h, residual_gate)
            }
            Shortcut::Identity => h,
        }
    }
}

impl SearchSpace for CnnSpace {
    fn decisions(&self) -> Vec<Decision> {
        self.slots.iter().map(|s| s.decision.clone()).collect()
    }

    fn build(&mut self, device: Device) -> PluginResult<()> {
        let config = self.config.clone();
        let mut store = ParamStore::new(device);
        let first_max = *config.first_conv.width.last().expect("validated");
        let first_conv = ConvBn::new(
            &mut store,
            "first_conv".into(),
            config.input_channels,
            first_max,
            3,
            config.first_conv.stride,
            false,
            &config,
        );
        let mut stages = Vec::new();
        for (s, stage) in config.stages.iter().enumerate() {
            let c_out = *stage.width.last().expect("validated");
            let mut blocks = Vec::new();
            for b in 0..*stage.depth.last().expect("validated") as usize {
                let prefix = format!("stages.{s}.blocks.{b}");
                let inputs = self.block_input_options(s, b);
                let c_in = *inputs.iter().max().expect("non-empty");
                let (kernels, expands) = config.block_options(s, b);
                let kernel = *kernels.last().expect("validated");
                let mid = self.max_mid(s, b);
                let stride = if b == 0 { stage.stride } else { 1 };
                let expand = (expands != [1.0]).then(|| {
                    ConvBn::new(
                        &mut store,
                        format!("{prefix}.expand"),
                        c_in,
                        mid,
                        1,
                        1,
                        false,
                        &config,
                    )
                });
                let depthwise = ConvBn::new(
                    &mut store,
                    format!("{prefix}.depthwise"),
                    mid,
                    mid,
                    kernel,
                    stride,
                    true,
                    &config,
                );
                let se = stage.se.then(|| {
                    SqueezeExcite::new(
                        &mut store,
                        &format!("{prefix}.se"),
                        mid,
                        se_channels(mid),
                        config.se_activation,
                    )
                });
                let project = ConvBn::new(
                    &mut store,
                    format!("{prefix}.project"),
                    mid,
                    c_out,
                    1,
                    1,
                    false,
                    &config,
                );
                let widths_differ = inputs.iter().any(|&i| stage.width.iter().any(|&o| o != i));
                let shortcut_conv =
                    (config.shortcut == Shortcut::Pooled && widths_differ).then(|| {
                        ElasticConv2d::new(
                            &mut store,
                            &format!("{prefix}.shortcut.conv"),
                            c_in,
                            c_out,
                            1,
                            1,
                            false,
                            false,
                        )
                    });
                blocks.push(Block {
                    expand,
                    depthwise,
                    se,
                    project,
                    shortcut_conv,
                    stride,
                    prefix,
                });
            }
            stages.push(blocks);
        }
        let last_max = *self.last_stage_widths().last().expect("validated");
        let head_max = *config.head.width.last().expect("validated");
        let (head_expand, head_conv, head_last) = match config.head.kind {
            HeadKind::Mbv3 => (
                Some(ConvBn::new(
                    &mut store,
                    "head.expand".into(),
                    last_max,
                    6 * last_max,
                    1,
                    1,
                    false,
                    &config,
                )),
                Some(ElasticConv2d::new(
                    &mut store,
                    "head.feature_mix",
                    6 * last_max,
                    head_max,
                    1,
                    1,
                    false,
                    false,
                )),
                None,
            ),
            HeadKind::Mbv2 => (
                None,
                None,
                Some(ConvBn::new(
                    &mut store,
                    "head.last_conv".into(),
                    last_max,
                    head_max,
                    1,
                    1,
                    false,
                    &config,
                )),
            ),
        };
        let classifier = ElasticLinear::new(
            &mut store,
            "head.classifier",
            head_max,
            config.num_classes,
            true,
        );
        self.net = Some(Net {
            store,
            first_conv,
            stages,
            head_expand,
            head_conv,
            head_last,
            classifier,
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
        options: &ForwardOptions,
    ) -> PluginResult<Tensor> {
        let net = self.net()?;
        let dims = self.dims(arch)?;
        let size = input.size();
        if size.len() != 4 || size[1] != self.config.input_channels {
            return Err(PluginError::runtime(format!(
                "cnn: expected input [batch, {}, height, width], got {size:?}",
                self.config.input_channels
            )));
        }
        let gates = gates.map(|g| self.map_gates(&dims, g)).transpose()?;
        let config = &self.config;
        let act = |t: Tensor| config.activation.apply(&t);
        let resized = resize(input, dims.resolution);
        // Not `*=`: `resized` may be the caller's input.
        let x = match gates.as_ref().and_then(|g| g.resolution.as_ref()) {
            Some(gate) => resized * gate,
            None => resized,
        };
        let mut x = act(net
            .first_conv
            .forward(&x, dims.first_width, 3, None, options));
        if let Some(gate) = gates.as_ref().and_then(|g| g.first_width.as_ref()) {
            x = gate_channels(&x, gate);
        }
        for (s, (blocks, stage)) in net.stages.iter().zip(&dims.stages).enumerate() {
            let stage_gates = gates.as_ref().map(|g| &g.stages[s]);
            for (b, block) in blocks.iter().take(stage.depth as usize).enumerate() {
                let block_gates = stage_gates.map(|g| &g.blocks[b]);
                // The first block always runs, so only later blocks carry the depth gate.
                let residual_gate = block_gates.and_then(|g| g.depth.as_ref()).filter(|_| b > 0);
                let mid = dims.block_mid(s, b);
                x = block.forward(
                    &x,
                    stage.width,
                    stage.blocks[b].kernel,
                    mid,
                    se_channels(mid),
                    residual_gate,
                    block_gates,
                    config,
                    options,
                );
            }
            if let Some(gate) = stage_gates.and_then(|g| g.width.as_ref()) {
                x = gate_channels(&x, gate);
            }
        }
        let head_gate = gates.as_ref().and_then(|g| g.head_width.as_ref());
        let last = dims.stages.last().expect("validated").width;
        let features = match config.head.kind {
            HeadKind::Mbv3 => {
                let expand = net.head_expand.as_ref().expect("mbv3 head");
                let x = act(expand.forward(&x, 6 * last, 1, None, options));
                let pooled = x.adaptive_avg_pool2d([1, 1]);
                let conv = net.head_conv.as_ref().expect("mbv3 head");
                act(conv.forward(&pooled, dims.head_width, 1, head_gate, None))
            }
            HeadKind::Mbv2 => {
                let last_conv = net.head_last.as_ref().expect("mbv2 head");
                let mut x = act(last_conv.forward(&x, dims.head_width, 1, None, options));
                if let Some(gate) = head_gate {
                    x = gate_channels(&x, gate);
                }
                x.adaptive_avg_pool2d([1, 1])
            }
        };
        Ok(net
            .classifier
            .forward(&features.flatten(1, -1), config.num_classes, None))
    }

    fn active_parameters(&self, arch: &Arch) -> PluginResult<Vec<usize>> {
        let net = self.net()?;
        let dims = self.dims(arch)?;
        let mut ids = net.first_conv.ids();
        for (s, (blocks, stage)) in net.stages.iter().zip(&dims.stages).enumerate() {
            for (b, block) in blocks.iter().take(stage.depth as usize).enumerate() {
                if let Some(expand) = &block.expand {
                    ids.extend(expand.ids());
                }
                ids.extend(block.depthwise.ids());
                if let Some(se) = &block.se {
                    ids.extend(se.param_ids());
                }
                ids.extend(block.project.ids());
                if self.config.shortcut == Shortcut::Pooled && dims.block_input(s, b) != stage.width
                {
                    if let Some(conv) = &block.shortcut_conv {
                        ids.extend_from_slice(conv.param_ids());
                    }
                }
            }
        }
        for layer in [&net.head_expand, &net.head_last].into_iter().flatten() {
            ids.extend(layer.ids());
        }
        if let Some(conv) = &net.head_conv {
            ids.extend_from_slice(conv.param_ids());
        }
        ids.extend_from_slice(net.classifier.param_ids());
        Ok(ids)
    }

    fn complexity(&self, arch: &Arch) -> PluginResult<Complexity> {
        let dims = self.dims(arch)?;
        Ok(count(&self.config, &dims).complexity())
    }

    fn extremes(&self, _metric: Metric) -> PluginResult<(Arch, Arch)> {
        // Every decision's options ascend in both MACs and parameters.
        let low = Arch::new(vec![0; self.slots.len()]);
        let high = Arch::new(
            self.slots
                .iter()
                .map(|s| s.decision.options.len() as u32 - 1)
                .collect(),
        );
        Ok((low, high))
    }

    fn cost_table(&self, metric: Metric) -> PluginResult<CostTable> {
        let options: Vec<u32> = self
            .slots
            .iter()
            .map(|s| s.decision.options.len() as u32)
            .collect();
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
        Ok(self.dims(arch)?.to_json(&self.config).to_string())
    }

    fn arch_from_text(&self, text: &str) -> PluginResult<Arch> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|err| {
            PluginError::arch(format!(
                "cnn: an arch is a JSON list of choice indices or an object with resolution, width, depth, kernel, expand: {err}"
            ))
        })?;
        if let Ok(choices) = serde_json::from_value::<Vec<u32>>(value.clone()) {
            let arch = Arch::new(choices);
            self.dims(&arch)?;
            return Ok(arch);
        }
        arch_from_json(&self.config, &self.slots, &value)
    }

    fn export_subnet(&self, arch: &Arch) -> PluginResult<Vec<(String, Tensor)>> {
        let net = self.net()?;
        let dims = self.dims(arch)?;
        let mut out = net
            .first_conv
            .export(self.config.input_channels, dims.first_width, 3);
        for (s, (blocks, stage)) in net.stages.iter().zip(&dims.stages).enumerate() {
            for (b, block) in blocks.iter().take(stage.depth as usize).enumerate() {
                let (c_in, mid) = (dims.block_input(s, b), dims.block_mid(s, b));
                if let Some(expand) = &block.expand {
                    out.extend(expand.export(c_in, mid, 1));
                }
                out.extend(block.depthwise.export(mid, mid, stage.blocks[b].kernel));
                if let Some(se) = &block.se {
                    out.extend(se.export(&format!("{}.se", block.prefix), mid, se_channels(mid)));
                }
                out.extend(block.project.export(mid, stage.width, 1));
                if self.config.shortcut == Shortcut::Pooled && c_in != stage.width {
                    if let Some(conv) = &block.shortcut_conv {
                        out.extend(conv.export(
                            &format!("{}.shortcut.conv", block.prefix),
                            c_in,
                            stage.width,
                            1,
                        ));
                    }
                }
            }
        }
        let last = dims.stages.last().expect("validated").width;
        if let Some(expand) = &net.head_expand {
            out.extend(expand.export(last, 6 * last, 1));
        }
        if let Some(conv) = &net.head_conv {
            out.extend(conv.export("head.feature_mix", 6 * last, dims.head_width, 1));
        }
        if let Some(last_conv) = &net.head_last {
            out.extend(last_conv.export(last, dims.head_width, 1));
        }
        out.extend(net.classifier.export(
            "head.classifier",
            dims.head_width,
            self.config.num_classes,
        ));
        Ok(out)
    }

    fn subnet_config(&self, arch: &Arch) -> PluginResult<String> {
        let dims = self.dims(arch)?;
        let mut config = self.config.clone();
        config.resolutions = vec![dims.resolution];
        config.first_conv.width = vec![dims.first_width];
        for (stage, sizes) in config.stages.iter_mut().zip(&dims.stages) {
            let active = &sizes.blocks[..sizes.depth as usize];
            stage.width = vec![sizes.width];
            stage.depth = vec![sizes.depth];
            stage.kernel = vec![active[0].kernel];
            stage.expand = vec![active[0].expand];
            stage.choice = config::ChoiceScope::Block;
            stage.blocks = active
                .iter()
                .map(|b| config::BlockOptions {
                    kernel: vec![b.kernel],
                    expand: vec![b.expand],
                })
                .collect();
        }
        config.head.width = vec![dims.head_width];
        serde_json::to_string(&config)
            .map_err(|err| PluginError::runtime(format!("cnn: subnet config: {err}")))
    }
}

/// Archs drawn to fit the additive cost table.
const COST_SAMPLES: usize = 2048;

/// Exact MACs and parameters of `dims` (no weights needed).
fn count(config: &CnnConfig, dims: &Dims) -> Counter {
    let mut counter = Counter::default();
    let conv_out =
        |size: i64, kernel: i64, stride: i64| (size + 2 * (kernel / 2) - kernel) / stride + 1;
    let mut size = dims.resolution;
    size = conv_out(size, 3, config.first_conv.stride);
    counter.conv2d(
        config.input_channels,
        dims.first_width,
        3,
        1,
        size,
        size,
        false,
    );
    counter.batch_norm(dims.first_width);
    for (s, stage) in dims.stages.iter().enumerate() {
        for b in 0..stage.depth as usize {
            let (c_in, mid) = (dims.block_input(s, b), dims.block_mid(s, b));
            let kernel = stage.blocks[b].kernel;
            let stride = if b == 0 { config.stages[s].stride } else { 1 };
            if stage.blocks[b].expand != 1.0 {
                counter.conv2d(c_in, mid, 1, 1, size, size, false);
                counter.batch_norm(mid);
            }
            let out = conv_out(size, kernel, stride);
            counter.conv2d(mid, mid, kernel, mid, out, out, false);
            counter.batch_norm(mid);
            if config.stages[s].se {
                let reduce = se_channels(mid);
                counter.conv2d(mid, reduce, 1, 1, 1, 1, true);
                counter.conv2d(reduce, mid, 1, 1, 1, 1, true);
            }
            counter.conv2d(mid, stage.width, 1, 1, out, out, false);
            counter.batch_norm(stage.width);
            if config.shortcut == Shortcut::Pooled && c_in != stage.width {
                counter.conv2d(c_in, stage.width, 1, 1, out, out, false);
            }
            size = out;
        }
    }
    let last = dims.stages.last().expect("validated").width;
    match config.head.kind {
        HeadKind::Mbv3 => {
            counter.conv2d(last, 6 * last, 1, 1, size, size, false);
            counter.batch_norm(6 * last);
            counter.conv2d(6 * last, dims.head_width, 1, 1, 1, 1, false);
        }
        HeadKind::Mbv2 => {
            counter.conv2d(last, dims.head_width, 1, 1, size, size, false);
            counter.batch_norm(dims.head_width);
        }
    }
    counter.linear(dims.head_width, config.num_classes, 1, true);
    counter
}

nas_sdk::export_plugin!(nas_sdk::plugin::Registry::new().space::<CnnSpace>());

#[cfg(test)]
mod tests;
