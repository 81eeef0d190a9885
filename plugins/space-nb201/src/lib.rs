//! NAS-Bench-201 cell search space, as the benchmark defines it (Dong & Yang, ICLR 2020).
//!
//! Macro: stem conv3x3 + BN; three stages of `N` cells (`C`, `2C`, `4C` channels) joined by
//! residual reduction blocks; BN-ReLU, global pooling and a linear classifier. Every cell shares
//! one arch: 4 nodes, 6 edges, node `i = sum_j op(node j)`, output node 3, ops `none`,
//! `skip_connect`, `nor_conv_1x1`, `nor_conv_3x3`, `avg_pool_3x3`. The supernet follows
//! xautodl's `TinyNetworkRANDOM` (parameter names included, so state dicts line up).
//!
//! The forward computes only what the sampled subnet's output depends on: `none` edges and edges
//! leaving nodes that do not reach the output are skipped (the benchmark's code computes and then
//! discards them, which changes no output or gradient, only the BN running statistics of those
//! discarded edges).
//!
//! Complexity follows the benchmark's convention for its stand-alone network (affine BN, conv
//! without bias): every edge counts even when its output is unused; pooling, BN, ReLU and adds do
//! not. Params are all trainable elements (`benchmark`), or conv and linear weights only
//! (`weights`, the convention of the DYNAS code).

use nas_sdk::{
    nn::{BatchNorm2d, Conv2d, Linear, ParamStore},
    Arch, Complexity, ConfiguredComponent, CostTable, Decision, ForwardOptions, Metric,
    PluginError, PluginResult, SearchSpace,
};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// The benchmark's op names, in its option order.
pub const OPS: [&str; 5] = [
    "none",
    "skip_connect",
    "nor_conv_1x1",
    "nor_conv_3x3",
    "avg_pool_3x3",
];
const NONE: u32 = 0;
const SKIP: u32 = 1;
const CONV1: u32 = 2;
const CONV3: u32 = 3;
const POOL: u32 = 4;

/// Edges in arch order, as `(to, from)`: `1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2`.
pub const EDGES: [(usize, usize); 6] = [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)];

fn edge_index(to: usize, from: usize) -> usize {
    EDGES
        .iter()
        .position(|&e| e == (to, from))
        .expect("valid edge")
}

/// How parameters are counted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ParamConvention {
    /// Every trainable element, BN affine included (the benchmark's `params`).
    Benchmark,
    /// Conv and linear weights only, no biases or BN (the DYNAS code's count, used by CaLR).
    Weights,
}

/// Configuration of the space.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Nb201Config {
    /// Channels of the first stage (`C`; the benchmark uses 16).
    #[serde(alias = "C")]
    pub channels: i64,
    /// Cells per stage (`N`; the benchmark uses 5).
    #[serde(alias = "N")]
    pub cells_per_stage: i64,
    /// Input image channels (3 for CIFAR, 1 for Fashion-MNIST).
    pub input_channels: i64,
    /// Input height = width (32 for CIFAR, 28 for Fashion-MNIST); must be divisible by 4.
    pub resolution: i64,
    /// Output classes.
    pub num_classes: i64,
    /// Affine BN (and bias-free convs) inside cells. The benchmark's stand-alone networks use
    /// `true`; its weight-sharing searches (xautodl RANDOM-NAS, SPOS) use `false`, the default.
    pub affine: bool,
    /// Keep running BN statistics inside cells (needed by the `recalibrate` eval policy).
    pub track_running_stats: bool,
    /// Momentum of BN running statistics (PyTorch's 0.1).
    pub bn_momentum: f64,
    /// How [`Complexity::params`] is counted.
    pub param_convention: ParamConvention,
}

impl Default for Nb201Config {
    fn default() -> Self {
        Nb201Config {
            channels: 16,
            cells_per_stage: 5,
            input_channels: 3,
            resolution: 32,
            num_classes: 10,
            affine: false,
            track_running_stats: true,
            bn_momentum: 0.1,
            param_convention: ParamConvention::Benchmark,
        }
    }
}

impl Nb201Config {
    fn validate(&self) -> PluginResult<()> {
        let positive = [
            ("channels", self.channels),
            ("cells_per_stage", self.cells_per_stage),
            ("input_channels", self.input_channels),
            ("num_classes", self.num_classes),
        ];
        for (field, value) in positive {
            if value < 1 {
                return Err(PluginError::config(format!(
                    "nb201: field `{field}` must be at least 1, got {value}"
                )));
            }
        }
        if self.resolution < 4 || self.resolution % 4 != 0 {
            return Err(PluginError::config(format!(
                "nb201: field `resolution` must be a positive multiple of 4 (two stride-2 reductions), got {}",
                self.resolution
            )));
        }
        if !(0.0..=1.0).contains(&self.bn_momentum) {
            return Err(PluginError::config(format!(
                "nb201: field `bn_momentum` must be in [0, 1], got {}",
                self.bn_momentum
            )));
        }
        Ok(())
    }

    /// `(channels, spatial size)` of each stage.
    fn stages(&self) -> [(i64, i64); 3] {
        let c = self.channels;
        let r = self.resolution;
        [(c, r), (2 * c, r / 2), (4 * c, r / 4)]
    }
}

/// ReLU -> conv -> BN, the benchmark's `ReLUConvBN`.
struct ReluConvBn {
    conv: Conv2d,
    bn: BatchNorm2d,
}

impl ReluConvBn {
    #[allow(clippy::too_many_arguments)]
    fn new(
        store: &mut ParamStore,
        prefix: &str,
        c_in: i64,
        c_out: i64,
        kernel: i64,
        stride: i64,
        affine: bool,
        track: bool,
        momentum: f64,
    ) -> Self {
        let conv = Conv2d::new(
            store,
            &format!("{prefix}.op.1"),
            c_in,
            c_out,
            kernel,
            stride,
            kernel / 2,
            !affine,
        );
        let bn = BatchNorm2d::new(
            store,
            &format!("{prefix}.op.2"),
            c_out,
            affine,
            track,
            momentum,
        );
        ReluConvBn { conv, bn }
    }

    fn forward(&self, x: &Tensor, options: &ForwardOptions) -> Tensor {
        self.bn.forward(&self.conv.forward(&x.relu()), options)
    }

    fn param_ids(&self) -> impl Iterator<Item = usize> + '_ {
        self.conv
            .param_ids()
            .iter()
            .chain(self.bn.param_ids())
            .copied()
    }
}

/// One edge's candidate ops with parameters (`nor_conv_1x1`, `nor_conv_3x3`).
struct Edge {
    conv1x1: ReluConvBn,
    conv3x3: ReluConvBn,
}

/// A searchable cell: 6 edges.
struct Cell {
    edges: Vec<Edge>,
    pool: AvgPool3x3,
}

/// `avg_pool_3x3` (stride 1, padding 1, `count_include_pad = false`) computed exactly as a
/// depthwise convolution with a ones kernel (the 3x3 window sums) times a precomputed map of
/// 1 / (number of in-image pixels per window). libtorch's CPU `avg_pool2d` with
/// `count_include_pad = false` is several times slower, forward and backward, on these shapes.
struct AvgPool3x3 {
    /// `[c, 1, 3, 3]` ones.
    kernel: Tensor,
    /// `[1, 1, h, w]`: 1/9 inside, 1/6 on edges, 1/4 in corners.
    inverse_count: Tensor,
    channels: i64,
}

impl AvgPool3x3 {
    fn new(channels: i64, size: i64, device: Device) -> Self {
        let ones = Tensor::ones([1, 1, size, size], (Kind::Float, device));
        let count = ones.avg_pool2d([3, 3], [1, 1], [1, 1], false, true, Some(1));
        AvgPool3x3 {
            kernel: Tensor::ones([channels, 1, 3, 3], (Kind::Float, device)),
            inverse_count: count.reciprocal(),
            channels,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d(
            &self.kernel,
            None::<Tensor>,
            [1, 1],
            [1, 1],
            [1, 1],
            self.channels,
        ) * &self.inverse_count
    }
}

/// The residual reduction block between stages.
struct ResBlock {
    conv_a: ReluConvBn,
    conv_b: ReluConvBn,
    downsample: Conv2d,
}

impl ResBlock {
    fn forward(&self, x: &Tensor, options: &ForwardOptions) -> Tensor {
        let main = self
            .conv_b
            .forward(&self.conv_a.forward(x, options), options);
        // [n, c_in, h, w] -> [n, c_out, h/2, w/2]
        let residual =
            self.downsample
                .forward(&x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None));
        main + residual
    }
}

enum Layer {
    Cell(Cell),
    Reduction(Box<ResBlock>),
}

/// The supernet's modules (present once built).
struct Supernet {
    store: ParamStore,
    stem_conv: Conv2d,
    stem_bn: BatchNorm2d,
    layers: Vec<Layer>,
    last_bn: BatchNorm2d,
    classifier: Linear,
    /// Parameters every arch uses (stem, reductions, head).
    fixed_params: Vec<usize>,
}

/// The NAS-Bench-201 search space component.
pub struct Nb201Space {
    config: Nb201Config,
    net: Option<Supernet>,
}

impl ConfiguredComponent for Nb201Space {
    const NAME: &'static str = "nb201";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "NAS-Bench-201 cell space (5 ops x 6 edges, 15,625 archs), benchmark complexity convention";
    type Config = Nb201Config;

    fn from_parsed(config: Nb201Config) -> PluginResult<Self> {
        config.validate()?;
        Ok(Nb201Space { config, net: None })
    }
}

/// Which edges of a cell the forward computes, and which nodes it needs.
struct CellPlan {
    /// Edge `e` is computed.
    computed: [bool; 6],
}

impl CellPlan {
    // Nodes are indexed by their number in the cell's graph; ranges read like the definition.
    #[allow(clippy::needless_range_loop)]
    fn new(ops: &[u32]) -> Self {
        // live[i]: node i's value reaches the output node through non-`none` edges.
        let mut live = [false; 4];
        live[3] = true;
        for node in (0..3).rev() {
            live[node] = ((node + 1)..4).any(|to| live[to] && ops[edge_index(to, node)] != NONE);
        }
        // zero[i]: node i is identically zero (all its inputs are `none`, or skip/pool of zeros).
        let mut zero = [false; 4];
        let mut computed = [false; 6];
        for to in 1..4 {
            let mut all_zero = true;
            for from in 0..to {
                let e = edge_index(to, from);
                let op = ops[e];
                let passes_zero = zero[from] && (op == SKIP || op == POOL);
                computed[e] = op != NONE && live[to] && !passes_zero;
                if op != NONE && !passes_zero {
                    all_zero = false;
                }
            }
            zero[to] = all_zero;
        }
        CellPlan { computed }
    }
}

impl Nb201Space {
    fn net(&self) -> PluginResult<&Supernet> {
        self.net
            .as_ref()
            .ok_or_else(|| PluginError::runtime("nb201: supernet used before build()"))
    }

    fn check(&self, arch: &Arch) -> PluginResult<()> {
        arch.validate(&self.decisions())
            .map_err(|msg| PluginError::arch(format!("nb201: {msg}")))
    }

    fn count(&self, arch: &Arch) -> (u64, u64) {
        let cfg = &self.config;
        let weights_only = cfg.param_convention == ParamConvention::Weights;
        let count_of = |op: u32| arch.choices().iter().filter(|&&c| c == op).count() as i64;
        let (n1, n3) = (count_of(CONV1), count_of(CONV3));
        let bn = |c: i64| if weights_only { 0 } else { 2 * c };
        let stages = cfg.stages();
        let n = cfg.cells_per_stage;
        let res = cfg.resolution;

        let mut macs = cfg.input_channels * stages[0].0 * 9 * res * res;
        let mut params = cfg.input_channels * stages[0].0 * 9 + bn(stages[0].0);
        for (stage, &(c, size)) in stages.iter().enumerate() {
            let area = size * size;
            macs += n * (n3 * c * c * 9 * area + n1 * c * c * area);
            params += n * (n3 * (c * c * 9 + bn(c)) + n1 * (c * c + bn(c)));
            if stage + 1 < stages.len() {
                let (c_out, out_size) = stages[stage + 1];
                let out_area = out_size * out_size;
                macs +=
                    c * c_out * 9 * out_area + c_out * c_out * 9 * out_area + c * c_out * out_area;
                params += c * c_out * 9 + bn(c_out) + c_out * c_out * 9 + bn(c_out) + c * c_out;
            }
        }
        let c_last = stages[2].0;
        let classes = cfg.num_classes;
        macs += c_last * classes + classes;
        params += bn(c_last) + c_last * classes + if weights_only { 0 } else { classes };
        (macs as u64, params as u64)
    }
}

fn parse_arch_string(text: &str) -> PluginResult<Arch> {
    let bad = |why: String| {
        PluginError::arch(format!(
            "nb201: cannot parse arch `{text}`: {why}; expected e.g. \
             `|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|` \
             or a JSON list of 6 op indices"
        ))
    };
    let trimmed = text.trim();
    if trimmed.starts_with('[') {
        let choices: Vec<u32> =
            serde_json::from_str(trimmed).map_err(|err| bad(err.to_string()))?;
        return Ok(Arch::new(choices));
    }
    let nodes: Vec<&str> = trimmed.split('+').collect();
    if nodes.len() != 3 {
        return Err(bad(format!("found {} node groups, need 3", nodes.len())));
    }
    let mut choices = vec![0u32; 6];
    for (node_minus_one, group) in nodes.iter().enumerate() {
        let to = node_minus_one + 1;
        let inner = group
            .strip_prefix('|')
            .and_then(|g| g.strip_suffix('|'))
            .ok_or_else(|| bad(format!("node group `{group}` must start and end with `|`")))?;
        let entries: Vec<&str> = inner.split('|').collect();
        if entries.len() != to {
            return Err(bad(format!(
                "node {to} needs {to} inputs, found {}",
                entries.len()
            )));
        }
        for (from, entry) in entries.iter().enumerate() {
            let (op, source) = entry
                .split_once('~')
                .ok_or_else(|| bad(format!("entry `{entry}` lacks `~`")))?;
            if source != from.to_string() {
                return Err(bad(format!(
                    "entry `{entry}` of node {to} must come from node {from}"
                )));
            }
            let index = OPS
                .iter()
                .position(|&o| o == op)
                .ok_or_else(|| bad(format!("unknown op `{op}` (ops: {OPS:?})")))?;
            choices[edge_index(to, from)] = index as u32;
        }
    }
    Ok(Arch::new(choices))
}

impl SearchSpace for Nb201Space {
    fn decisions(&self) -> Vec<Decision> {
        EDGES
            .iter()
            .map(|(to, from)| Decision::choice(&format!("edge_{to}<-{from}"), "cell", "op", &OPS))
            .collect()
    }

    fn build(&mut self, device: Device) -> PluginResult<()> {
        let cfg = self.config.clone();
        let mut store = ParamStore::new(device);
        let c = cfg.channels;
        let stem_conv = Conv2d::new(&mut store, "stem.0", cfg.input_channels, c, 3, 1, 1, false);
        let stem_bn = BatchNorm2d::new(&mut store, "stem.1", c, true, true, cfg.bn_momentum);
        let mut fixed_params: Vec<usize> = stem_conv
            .param_ids()
            .iter()
            .chain(stem_bn.param_ids())
            .copied()
            .collect();

        let mut layers = Vec::new();
        let stages = cfg.stages();
        for (stage, &(channels, size)) in stages.iter().enumerate() {
            for _ in 0..cfg.cells_per_stage {
                let index = layers.len();
                let edges = EDGES
                    .iter()
                    .map(|(to, from)| {
                        let prefix = format!("cells.{index}.edges.{to}<-{from}");
                        let mut make = |op: u32, kernel: i64| {
                            ReluConvBn::new(
                                &mut store,
                                &format!("{prefix}.{op}"),
                                channels,
                                channels,
                                kernel,
                                1,
                                cfg.affine,
                                cfg.track_running_stats,
                                cfg.bn_momentum,
                            )
                        };
                        let conv1x1 = make(CONV1, 1);
                        let conv3x3 = make(CONV3, 3);
                        Edge { conv1x1, conv3x3 }
                    })
                    .collect();
                let pool = AvgPool3x3::new(channels, size, device);
                layers.push(Layer::Cell(Cell { edges, pool }));
            }
            if stage + 1 < stages.len() {
                let index = layers.len();
                let c_out = stages[stage + 1].0;
                let prefix = format!("cells.{index}");
                let conv_a = ReluConvBn::new(
                    &mut store,
                    &format!("{prefix}.conv_a"),
                    channels,
                    c_out,
                    3,
                    2,
                    true,
                    true,
                    cfg.bn_momentum,
                );
                let conv_b = ReluConvBn::new(
                    &mut store,
                    &format!("{prefix}.conv_b"),
                    c_out,
                    c_out,
                    3,
                    1,
                    true,
                    true,
                    cfg.bn_momentum,
                );
                let downsample = Conv2d::new(
                    &mut store,
                    &format!("{prefix}.downsample.1"),
                    channels,
                    c_out,
                    1,
                    1,
                    0,
                    false,
                );
                fixed_params.extend(conv_a.param_ids());
                fixed_params.extend(conv_b.param_ids());
                fixed_params.extend(downsample.param_ids());
                layers.push(Layer::Reduction(Box::new(ResBlock {
                    conv_a,
                    conv_b,
                    downsample,
                })));
            }
        }
        let c_last = stages[2].0;
        let last_bn =
            BatchNorm2d::new(&mut store, "lastact.0", c_last, true, true, cfg.bn_momentum);
        let classifier = Linear::new(&mut store, "classifier", c_last, cfg.num_classes);
        fixed_params.extend(last_bn.param_ids());
        fixed_params.extend(classifier.param_ids());
        self.net = Some(Supernet {
            store,
            stem_conv,
            stem_bn,
            layers,
            last_bn,
            classifier,
            fixed_params,
        });
        Ok(())
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.net
            .as_ref()
            .map(|net| net.store.parameters())
            .unwrap_or_default()
    }

    fn buffers(&self) -> Vec<(String, Tensor)> {
        self.net
            .as_ref()
            .map(|net| net.store.buffers())
            .unwrap_or_default()
    }

    #[allow(clippy::needless_range_loop)]
    fn forward(
        &self,
        input: &Tensor,
        arch: &Arch,
        gates: Option<&[Tensor]>,
        options: &ForwardOptions,
    ) -> PluginResult<Tensor> {
        self.check(arch)?;
        let net = self.net()?;
        let size = input.size();
        let expected = [
            self.config.input_channels,
            self.config.resolution,
            self.config.resolution,
        ];
        if size.len() != 4 || size[1..] != expected {
            return Err(PluginError::runtime(format!(
                "nb201: input of shape {size:?} does not match the space's config \
                 (input_channels {}, resolution {}): expected [batch, {}, {}, {}]",
                expected[0], expected[1], expected[0], expected[1], expected[2]
            )));
        }
        if let Some(gates) = gates {
            if gates.len() != EDGES.len() {
                return Err(PluginError::runtime(format!(
                    "nb201: {} gates given, need one per edge (6)",
                    gates.len()
                )));
            }
        }
        let ops = arch.choices();
        let plan = CellPlan::new(ops);

        // Channels-last strides (NHWC in memory, NCHW shape): libtorch's CPU kernels for these
        // convolutions, batch norms and pooling run markedly faster on it; every op keeps it.
        let input = input
            .permute([0, 2, 3, 1])
            .contiguous()
            .permute([0, 3, 1, 2]);
        let mut x = net.stem_bn.forward(&net.stem_conv.forward(&input), options);
        for layer in &net.layers {
            x = match layer {
                Layer::Reduction(block) => block.forward(&x, options),
                Layer::Cell(cell) => {
                    // nodes[i] = None: node i is zero (or not needed).
                    let mut nodes: [Option<Tensor>; 4] =
                        [Some(x.shallow_clone()), None, None, None];
                    for to in 1..4 {
                        let mut sum: Option<Tensor> = None;
                        for from in 0..to {
                            let e = edge_index(to, from);
                            if !plan.computed[e] {
                                continue;
                            }
                            let source = match &nodes[from] {
                                Some(t) => t.shallow_clone(),
                                None => x.zeros_like(),
                            };
                            let edge = &cell.edges[e];
                            let mut out = match ops[e] {
                                SKIP => source,
                                CONV1 => edge.conv1x1.forward(&source, options),
                                CONV3 => edge.conv3x3.forward(&source, options),
                                POOL => cell.pool.forward(&source),
                                _ => unreachable!("none edges are never computed"),
                            };
                            if let Some(gates) = gates {
                                out *= gates[e].get(ops[e] as i64);
                            }
                            sum = Some(match sum {
                                Some(acc) => acc + out,
                                None => out,
                            });
                        }
                        nodes[to] = sum;
                    }
                    let [_, _, _, output] = nodes;
                    output.unwrap_or_else(|| x.zeros_like())
                }
            };
        }
        let features = net.last_bn.forward(&x, options).relu();
        // [n, c, h, w] -> [n, c]
        let pooled = features.mean_dim([2i64, 3].as_slice(), false, Kind::Float);
        Ok(net.classifier.forward(&pooled))
    }

    fn active_parameters(&self, arch: &Arch) -> PluginResult<Vec<usize>> {
        self.check(arch)?;
        let net = self.net()?;
        let ops = arch.choices();
        let plan = CellPlan::new(ops);
        let mut active = net.fixed_params.clone();
        for layer in &net.layers {
            if let Layer::Cell(cell) = layer {
                for (e, edge) in cell.edges.iter().enumerate() {
                    if !plan.computed[e] {
                        continue;
                    }
                    match ops[e] {
                        CONV1 => active.extend(edge.conv1x1.param_ids()),
                        CONV3 => active.extend(edge.conv3x3.param_ids()),
                        _ => {}
                    }
                }
            }
        }
        active.sort_unstable();
        Ok(active)
    }

    fn complexity(&self, arch: &Arch) -> PluginResult<Complexity> {
        self.check(arch)?;
        let (macs, params) = self.count(arch);
        Ok(Complexity { macs, params })
    }

    fn extremes(&self, _metric: Metric) -> PluginResult<(Arch, Arch)> {
        // Both metrics grow with every conv and nothing else: no conv is smallest, all 3x3 largest.
        Ok((Arch::new(vec![NONE; 6]), Arch::new(vec![CONV3; 6])))
    }

    fn cost_table(&self, metric: Metric) -> PluginResult<CostTable> {
        // Complexity is exactly additive over edges, so the table has no error.
        let base_arch = Arch::new(vec![NONE; 6]);
        let value = |arch: &Arch| {
            let (macs, params) = self.count(arch);
            match metric {
                Metric::Macs => macs as f64,
                Metric::Params => params as f64,
            }
        };
        let base = value(&base_arch);
        let per_option = (0..EDGES.len())
            .map(|e| {
                (0..OPS.len() as u32)
                    .map(|op| {
                        let mut choices = vec![NONE; 6];
                        choices[e] = op;
                        value(&Arch::new(choices)) - base
                    })
                    .collect()
            })
            .collect();
        Ok(CostTable {
            metric,
            base,
            per_option,
        })
    }

    fn export_subnet(&self, arch: &Arch) -> PluginResult<Vec<(String, Tensor)>> {
        // The parameters the arch uses, plus the BN running statistics of the modules they
        // belong to and of the fixed modules, under the supernet's (xautodl's) names.
        let net = self.net()?;
        let active = self.active_parameters(arch)?;
        let params = net.store.parameters();
        let owner = |name: &str| -> String {
            match name.find(".op.") {
                Some(at) => name[..at].to_string(),
                None => name
                    .rsplit_once('.')
                    .map(|(m, _)| m.to_string())
                    .unwrap_or_default(),
            }
        };
        let owners: std::collections::BTreeSet<String> =
            active.iter().map(|&i| owner(&params[i].0)).collect();
        let mut out: Vec<(String, Tensor)> = active
            .iter()
            .map(|&i| (params[i].0.clone(), params[i].1.detach().copy()))
            .collect();
        for (name, buffer) in net.store.buffers() {
            let in_edge = name.contains(".edges.");
            if !in_edge || owners.contains(&owner(&name)) {
                out.push((name, buffer.copy()));
            }
        }
        Ok(out)
    }

    fn arch_to_text(&self, arch: &Arch) -> PluginResult<String> {
        self.check(arch)?;
        let ops = arch.choices();
        let groups: Vec<String> = (1..4)
            .map(|to| {
                let entries: Vec<String> = (0..to)
                    .map(|from| format!("{}~{from}", OPS[ops[edge_index(to, from)] as usize]))
                    .collect();
                format!("|{}|", entries.join("|"))
            })
            .collect();
        Ok(groups.join("+"))
    }

    fn arch_from_text(&self, text: &str) -> PluginResult<Arch> {
        let arch = parse_arch_string(text)?;
        self.check(&arch)?;
        Ok(arch)
    }
}

nas_sdk::export_plugin!(nas_sdk::plugin::Registry::new().space::<Nb201Space>());

#[cfg(test)]
mod tests;
