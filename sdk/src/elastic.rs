//! Elastic (weight-entangled) layers for search spaces whose subnets share nested slices of one
//! set of weights: BigNAS/AttentiveNAS-style CNNs and AutoFormer-style ViTs.
//!
//! Every layer is created at its largest size and run at any smaller one: a subnet uses the
//! **first** `c` channels / features / heads, and the **centre** `k x k` crop of a kernel. Sizes
//! are arguments of `forward`, never state, so one layer serves every subnet of a step.
//!
//! **Gates.** Each `forward` optionally takes a gate tensor over the layer's units (output
//! channels, hidden features, heads, kernel rings): the mask-mapped policy `p' = M p` of
//! ShiftNAS (see [`crate::KeepMask`]). The layer multiplies the matching activations (or, for
//! kernel rings, the kernel) by it, so a generator's gradient reaches its policy. A gate of all
//! ones changes nothing numerically; units past the active size are ignored. Entries are read
//! from the front, so a gate may be as long as the layer's largest size.
//! [`expand_levels`] turns a gate over a decision's options (nested levels) into a gate over
//! units, for decisions whose unit counts depend on other decisions (expand and MLP ratios).
//!
//! **Complexity.** [`Counter`] adds MACs and parameters of the active sizes with the convention
//! of [`crate::Complexity`] (conv `Cin/groups * k * k * Cout * Hout * Wout`, linear `in * out`;
//! BN, activations, pooling and additions not counted), so a space computes exact complexity
//! without running anything.
//!
//! **Export.** Each layer's `export` returns plain tensors of the active sizes, named as the
//! layer's `new` would name them, so a layer built at exactly those sizes loads them as they are.
//!
//! ```
//! use nas_sdk::{elastic::ElasticConv2d, nn::ParamStore};
//! use tch::{Device, Kind, Tensor};
//! let mut store = ParamStore::new(Device::Cpu);
//! // Up to 8 -> 16 channels, kernels up to 5x5, stride 1.
//! let conv = ElasticConv2d::new(&mut store, "conv", 8, 16, 5, 1, false, false);
//! let x = Tensor::randn([2, 6, 10, 10], (Kind::Float, Device::Cpu));
//! // 6 input channels (from `x`), 12 output channels, centre 3x3 crop.
//! let y = conv.forward(&x, 12, 3, None, None);
//! assert_eq!(y.size(), [2, 12, 10, 10]);
//! ```

use tch::{Device, Kind, Tensor};

use crate::nn::{join, uniform_fan_in, ParamStore};

/// The first `len` entries of `tensor` along `dim` (a view; the tensor itself when it already
/// has that length, so a layer at its full size runs exactly the plain op).
pub fn first(tensor: &Tensor, dim: i64, len: i64) -> Tensor {
    let size = tensor.size()[dim as usize];
    assert!(
        len <= size,
        "elastic slice of {len} along dim {dim} exceeds the layer's {size}"
    );
    if len == size {
        tensor.shallow_clone()
    } else {
        tensor.narrow(dim, 0, len)
    }
}

/// A detached, contiguous copy of the leading block of `tensor` with sizes `shape` (one entry per
/// leading dimension; trailing dimensions are kept whole): the plain weight of a sliced layer.
pub fn plain(tensor: &Tensor, shape: &[i64]) -> Tensor {
    let mut view = tensor.shallow_clone();
    for (dim, &len) in shape.iter().enumerate() {
        view = first(&view, dim as i64, len);
    }
    view.detach().contiguous().copy()
}

/// The centre `kernel x kernel` crop of `weight` (`[.., K, K]`), a view.
pub fn centre_crop(weight: &Tensor, kernel: i64) -> Tensor {
    let full = *weight
        .size()
        .last()
        .expect("a kernel has spatial dimensions");
    assert!(
        kernel <= full && (full - kernel) % 2 == 0,
        "kernel {kernel} is not a centre crop of {full}"
    );
    if kernel == full {
        return weight.shallow_clone();
    }
    let start = (full - kernel) / 2;
    let dims = weight.dim() as i64;
    weight
        .narrow(dims - 2, start, kernel)
        .narrow(dims - 1, start, kernel)
}

/// Multiplies channel `i` of `x` (`[n, c, ...]`) by `gate[i]`.
pub fn gate_channels(x: &Tensor, gate: &Tensor) -> Tensor {
    let size = x.size();
    let mut shape = vec![1i64; size.len()];
    shape[1] = size[1];
    x * first(gate, 0, size[1]).view(shape.as_slice())
}

/// Multiplies feature `i` of `x` (`[.., c]`) by `gate[i]`.
pub fn gate_features(x: &Tensor, gate: &Tensor) -> Tensor {
    let features = *x.size().last().expect("features");
    x * first(gate, 0, features)
}

/// A gate over units from a gate over nested levels: unit `u` gets the gate of the first level
/// whose size exceeds `u` (`level_sizes` ascending, e.g. the hidden widths of MLP ratios
/// 3, 3.5, 4 at the active embed dim). With a one-hot policy `p` for option `j`, `p' = M p` has
/// ones on levels `0..=j`, so every active unit gets 1.
///
/// ```
/// use nas_sdk::elastic::expand_levels;
/// use tch::Tensor;
/// let units = expand_levels(&Tensor::from_slice(&[1.0f32, 0.5, 0.25]), &[2, 3, 5]);
/// assert_eq!(Vec::<f32>::try_from(&units).unwrap(), [1.0, 1.0, 0.5, 0.25, 0.25]);
/// ```
pub fn expand_levels(level_gate: &Tensor, level_sizes: &[i64]) -> Tensor {
    let mut owner = Vec::new();
    let mut previous = 0;
    for (level, &size) in level_sizes.iter().enumerate() {
        assert!(size >= previous, "level sizes must be ascending");
        owner.extend(std::iter::repeat_n(
            level as i64,
            (size - previous) as usize,
        ));
        previous = size;
    }
    let index = Tensor::from_slice(&owner).to_device(level_gate.device());
    level_gate.index_select(0, &index)
}

/// `x + gate * branch`: a residual block that elastic depth can drop (the space skips blocks
/// past the active depth; the gate of an active block is 1 in the forward pass).
pub fn residual(x: &Tensor, branch: &Tensor, gate: Option<&Tensor>) -> Tensor {
    match gate {
        Some(gate) => x + branch * gate,
        None => x + branch,
    }
}

/// Bilinear resize of `[n, c, h, w]` to `resolution x resolution` (elastic resolution; the input
/// itself when it already has that size).
pub fn resize(x: &Tensor, resolution: i64) -> Tensor {
    let size = x.size();
    if size[2] == resolution && size[3] == resolution {
        return x.shallow_clone();
    }
    x.upsample_bilinear2d([resolution, resolution], false, None, None)
}

/// Activation functions of the common search spaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)` (MobileNetV2).
    Relu6,
    /// `x * sigmoid(x)` (EfficientNet, BigNAS, AttentiveNAS).
    Swish,
    /// `x * relu6(x + 3) / 6` (MobileNetV3).
    Hswish,
    /// `relu6(x + 3) / 6` (MobileNetV3's squeeze-excite gate).
    Hsigmoid,
    /// `sigmoid(x)`.
    Sigmoid,
    /// Exact (erf) GELU (ViTs).
    Gelu,
}

impl Activation {
    /// Applies the activation.
    pub fn apply(self, x: &Tensor) -> Tensor {
        match self {
            Activation::Relu => x.relu(),
            Activation::Relu6 => x.clamp(0.0, 6.0),
            Activation::Swish => x.silu(),
            Activation::Hswish => x.hardswish(),
            Activation::Hsigmoid => x.hardsigmoid(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Gelu => x.gelu("none"),
        }
    }
}

/// Exact MACs and parameters of active layer sizes (the convention of [`crate::Complexity`]).
///
/// ```
/// use nas_sdk::elastic::Counter;
/// let mut count = Counter::default();
/// count.conv2d(3, 32, 3, 1, 112, 112, false); // MobileNetV2's stem at 224
/// count.batch_norm(32);
/// assert_eq!((count.macs, count.params), (10_838_016, 928));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Multiply-accumulates so far.
    pub macs: u64,
    /// Parameters so far.
    pub params: u64,
}

impl Counter {
    /// A convolution with `groups` groups producing `h_out x w_out`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d(
        &mut self,
        c_in: i64,
        c_out: i64,
        kernel: i64,
        groups: i64,
        h_out: i64,
        w_out: i64,
        bias: bool,
    ) {
        let weights = (c_in / groups * kernel * kernel * c_out) as u64;
        self.macs += weights * (h_out * w_out) as u64;
        self.params += weights + if bias { c_out as u64 } else { 0 };
    }

    /// A fully connected layer applied to `tokens` vectors.
    pub fn linear(&mut self, in_features: i64, out_features: i64, tokens: i64, bias: bool) {
        let weights = (in_features * out_features) as u64;
        self.macs += weights * tokens as u64;
        self.params += weights + if bias { out_features as u64 } else { 0 };
    }

    /// An affine batch norm (parameters only).
    pub fn batch_norm(&mut self, channels: i64) {
        self.params += 2 * channels as u64;
    }

    /// An affine layer norm (parameters only).
    pub fn layer_norm(&mut self, features: i64) {
        self.params += 2 * features as u64;
    }

    /// Extra parameters (tokens, embeddings, tables).
    pub fn parameters(&mut self, count: i64) {
        self.params += count as u64;
    }

    /// Extra multiply-accumulates (attention matmuls).
    pub fn multiply_accumulates(&mut self, count: i64) {
        self.macs += count as u64;
    }

    /// As a [`crate::Complexity`].
    pub fn complexity(&self) -> crate::Complexity {
        crate::Complexity {
            macs: self.macs,
            params: self.params,
        }
    }
}

/// The kernel-size mask of a ring gate: `[kernel, kernel]` where position `(i, j)` gets the gate
/// of the smallest option in `kernel_options` (ascending odd sizes) whose centre crop contains it.
/// With ones on the active and smaller options the mask is all ones.
pub fn kernel_ring_mask(kernel: i64, kernel_options: &[i64], gate: &Tensor) -> Tensor {
    let centre = kernel / 2;
    let mut owner = Vec::with_capacity((kernel * kernel) as usize);
    for i in 0..kernel {
        for j in 0..kernel {
            let reach = 2 * (i - centre).abs().max((j - centre).abs()) + 1;
            let ring = kernel_options
                .iter()
                .position(|&k| k >= reach)
                .expect("the kernel is among the options");
            owner.push(ring as i64);
        }
    }
    let index = Tensor::from_slice(&owner).to_device(gate.device());
    gate.index_select(0, &index).view([kernel, kernel])
}

/// A convolution with elastic input and output channels and centre-cropped kernels; dense or
/// depthwise. Padding is `k / 2` ("same" for odd kernels).
pub struct ElasticConv2d {
    /// `[out_max, in_max, k_max, k_max]` (dense) or `[channels_max, 1, k_max, k_max]` (depthwise).
    pub weight: Tensor,
    /// `[out_max]`, if biased.
    pub bias: Option<Tensor>,
    /// Stride.
    pub stride: i64,
    /// Depthwise (`groups` = channels; output channels = input channels).
    pub depthwise: bool,
    /// Zero padding; `None` pads `k / 2` for the active kernel `k` ("same" for odd kernels).
    pub padding: Option<i64>,
    ids: Vec<usize>,
}

impl ElasticConv2d {
    /// Up to `in_max -> out_max` channels (depthwise: `out_max` must equal `in_max`), kernels up to
    /// `kernel_max`, registered as `{prefix}.weight` (and `{prefix}.bias`), PyTorch's default init.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: &mut ParamStore,
        prefix: &str,
        in_max: i64,
        out_max: i64,
        kernel_max: i64,
        stride: i64,
        depthwise: bool,
        bias: bool,
    ) -> Self {
        assert!(
            !depthwise || in_max == out_max,
            "a depthwise conv keeps its channel count"
        );
        let per_group_in = if depthwise { 1 } else { in_max };
        let fan_in = per_group_in * kernel_max * kernel_max;
        let (weight, weight_id) = store.param(
            &join(prefix, "weight"),
            uniform_fan_in(&[out_max, per_group_in, kernel_max, kernel_max], fan_in),
        );
        let mut ids = vec![weight_id];
        let bias = bias.then(|| {
            let (b, id) = store.param(&join(prefix, "bias"), uniform_fan_in(&[out_max], fan_in));
            ids.push(id);
            b
        });
        ElasticConv2d {
            weight,
            bias,
            stride,
            depthwise,
            padding: None,
            ids,
        }
    }

    /// The same layer with a fixed zero padding (e.g. 0 for a ViT's patch embedding).
    pub fn with_padding(mut self, padding: i64) -> Self {
        self.padding = Some(padding);
        self
    }

    fn padding_for(&self, kernel: i64) -> i64 {
        self.padding.unwrap_or(kernel / 2)
    }

    /// The largest output channels.
    pub fn out_max(&self) -> i64 {
        self.weight.size()[0]
    }

    /// The largest kernel.
    pub fn kernel_max(&self) -> i64 {
        self.weight.size()[3]
    }

    /// The active weight (a view) and bias for `c_in -> c_out` channels and a `kernel` crop.
    pub fn active_weight(&self, c_in: i64, c_out: i64, kernel: i64) -> (Tensor, Option<Tensor>) {
        let weight = if self.depthwise {
            assert_eq!(c_in, c_out, "a depthwise conv keeps its channel count");
            first(&self.weight, 0, c_out)
        } else {
            first(&first(&self.weight, 0, c_out), 1, c_in)
        };
        let weight = centre_crop(&weight, kernel);
        // A sliced weight is a strided view; convolution kernels want it dense.
        let weight = if weight.is_contiguous() {
            weight
        } else {
            weight.contiguous()
        };
        (weight, self.bias.as_ref().map(|b| first(b, 0, c_out)))
    }

    /// `[n, c_in, h, w] -> [n, c_out, h', w']` with the centre `kernel x kernel` crop (`c_in` is
    /// `x`'s channel count; depthwise convs ignore `c_out` and keep `c_in`).
    ///
    /// `out_gate` multiplies output channels; `kernel_gate = (gate, options)` multiplies the
    /// kernel by [`kernel_ring_mask`] (one gate entry per kernel option).
    pub fn forward(
        &self,
        x: &Tensor,
        c_out: i64,
        kernel: i64,
        out_gate: Option<&Tensor>,
        kernel_gate: Option<(&Tensor, &[i64])>,
    ) -> Tensor {
        let c_in = x.size()[1];
        let c_out = if self.depthwise { c_in } else { c_out };
        let (weight, bias) = self.active_weight(c_in, c_out, kernel);
        // Not `*=`: that would scale the shared weight in place.
        let weight = match kernel_gate {
            Some((gate, options)) => weight * kernel_ring_mask(kernel, options, gate),
            None => weight,
        };
        let groups = if self.depthwise { c_in } else { 1 };
        let y = x.conv2d(
            &weight,
            bias.as_ref(),
            [self.stride, self.stride],
            [self.padding_for(kernel); 2],
            [1, 1],
            groups,
        );
        match out_gate {
            Some(gate) => gate_channels(&y, gate),
            None => y,
        }
    }

    /// Adds this layer at the given sizes, for an `h_in x w_in` input, to `counter`; returns the
    /// output's spatial size.
    pub fn count(
        &self,
        counter: &mut Counter,
        c_in: i64,
        c_out: i64,
        kernel: i64,
        (h_in, w_in): (i64, i64),
    ) -> (i64, i64) {
        let padding = self.padding_for(kernel);
        let out = |size: i64| (size + 2 * padding - kernel) / self.stride + 1;
        let (h_out, w_out) = (out(h_in), out(w_in));
        let (c_out, groups) = if self.depthwise {
            (c_in, c_in)
        } else {
            (c_out, 1)
        };
        counter.conv2d(
            c_in,
            c_out,
            kernel,
            groups,
            h_out,
            w_out,
            self.bias.is_some(),
        );
        (h_out, w_out)
    }

    /// The plain weight (and bias) at the given sizes, named `{prefix}.weight|bias`.
    pub fn export(
        &self,
        prefix: &str,
        c_in: i64,
        c_out: i64,
        kernel: i64,
    ) -> Vec<(String, Tensor)> {
        let (weight, bias) = self.active_weight(c_in, c_out, kernel);
        let mut out = vec![(join(prefix, "weight"), weight.detach().contiguous().copy())];
        if let Some(bias) = bias {
            out.push((join(prefix, "bias"), bias.detach().contiguous().copy()));
        }
        out
    }

    /// Indices of this layer's parameters in its store.
    pub fn param_ids(&self) -> &[usize] {
        &self.ids
    }
}

/// A fully connected layer with elastic input and output features.
pub struct ElasticLinear {
    /// `[out_max, in_max]`.
    pub weight: Tensor,
    /// `[out_max]`, if biased.
    pub bias: Option<Tensor>,
    ids: Vec<usize>,
}

impl ElasticLinear {
    /// Up to `in_max -> out_max` features, registered as `{prefix}.weight` (and `.bias`).
    pub fn new(
        store: &mut ParamStore,
        prefix: &str,
        in_max: i64,
        out_max: i64,
        bias: bool,
    ) -> Self {
        let (weight, wid) = store.param(
            &join(prefix, "weight"),
            uniform_fan_in(&[out_max, in_max], in_max),
        );
        let mut ids = vec![wid];
        let bias = bias.then(|| {
            let (b, id) = store.param(&join(prefix, "bias"), uniform_fan_in(&[out_max], in_max));
            ids.push(id);
            b
        });
        ElasticLinear { weight, bias, ids }
    }

    /// From an existing weight and bias (e.g. a row-reordered layout built by the caller).
    pub fn from_parts(weight: Tensor, bias: Option<Tensor>, ids: Vec<usize>) -> Self {
        ElasticLinear { weight, bias, ids }
    }

    /// The active weight and bias (views).
    pub fn active_weight(&self, in_features: i64, out_features: i64) -> (Tensor, Option<Tensor>) {
        (
            first(&first(&self.weight, 0, out_features), 1, in_features),
            self.bias.as_ref().map(|b| first(b, 0, out_features)),
        )
    }

    /// `[.., in] -> [.., out]` (`in` is `x`'s last dimension); `out_gate` multiplies outputs.
    pub fn forward(&self, x: &Tensor, out_features: i64, out_gate: Option<&Tensor>) -> Tensor {
        let in_features = *x.size().last().expect("features");
        let (weight, bias) = self.active_weight(in_features, out_features);
        let y = x.linear(&weight, bias.as_ref());
        match out_gate {
            Some(gate) => gate_features(&y, gate),
            None => y,
        }
    }

    /// Adds this layer at the given sizes, applied to `tokens` vectors, to `counter`.
    pub fn count(&self, counter: &mut Counter, in_features: i64, out_features: i64, tokens: i64) {
        counter.linear(in_features, out_features, tokens, self.bias.is_some());
    }

    /// The plain weight (and bias), named `{prefix}.weight|bias`.
    pub fn export(
        &self,
        prefix: &str,
        in_features: i64,
        out_features: i64,
    ) -> Vec<(String, Tensor)> {
        let mut out = vec![(
            join(prefix, "weight"),
            plain(&self.weight, &[out_features, in_features]),
        )];
        if let Some(bias) = &self.bias {
            out.push((join(prefix, "bias"), plain(bias, &[out_features])));
        }
        out
    }

    /// Indices of this layer's parameters in its store.
    pub fn param_ids(&self) -> &[usize] {
        &self.ids
    }
}

/// Layer norm over the active features (the statistics are those of the active features only,
/// as in AutoFormer).
pub struct ElasticLayerNorm {
    /// `[features_max]`.
    pub weight: Tensor,
    /// `[features_max]`.
    pub bias: Tensor,
    /// Added to the variance.
    pub eps: f64,
    ids: Vec<usize>,
}

impl ElasticLayerNorm {
    /// Up to `features_max`, registered as `{prefix}.weight|bias` (ones and zeros).
    pub fn new(store: &mut ParamStore, prefix: &str, features_max: i64, eps: f64) -> Self {
        let (weight, wid) = store.param(
            &join(prefix, "weight"),
            Tensor::ones([features_max], (Kind::Float, Device::Cpu)),
        );
        let (bias, bid) = store.param(
            &join(prefix, "bias"),
            Tensor::zeros([features_max], (Kind::Float, Device::Cpu)),
        );
        ElasticLayerNorm {
            weight,
            bias,
            eps,
            ids: vec![wid, bid],
        }
    }

    /// Normalises the last dimension of `x`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let features = *x.size().last().expect("features");
        x.layer_norm(
            [features],
            Some(&first(&self.weight, 0, features)),
            Some(&first(&self.bias, 0, features)),
            self.eps,
            false,
        )
    }

    /// The plain weight and bias, named `{prefix}.weight|bias`.
    pub fn export(&self, prefix: &str, features: i64) -> Vec<(String, Tensor)> {
        vec![
            (join(prefix, "weight"), plain(&self.weight, &[features])),
            (join(prefix, "bias"), plain(&self.bias, &[features])),
        ]
    }

    /// Indices of this layer's parameters in its store.
    pub fn param_ids(&self) -> &[usize] {
        &self.ids
    }
}

/// Squeeze-and-excite over elastic channels: global average pool, 1x1 conv to `reduce` channels
/// (bias), ReLU, 1x1 conv back (bias), a gate activation, channel-wise product.
pub struct SqueezeExcite {
    /// Channels -> reduced channels.
    pub reduce: ElasticConv2d,
    /// Reduced channels -> channels.
    pub expand: ElasticConv2d,
    /// The gate's activation (`hsigmoid` in MobileNetV3/AttentiveNAS, `sigmoid` in EfficientNet).
    pub gate_activation: Activation,
}

impl SqueezeExcite {
    /// Up to `channels_max` channels and `reduce_max` reduced channels, registered as
    /// `{prefix}.reduce.*` and `{prefix}.expand.*`.
    pub fn new(
        store: &mut ParamStore,
        prefix: &str,
        channels_max: i64,
        reduce_max: i64,
        gate_activation: Activation,
    ) -> Self {
        SqueezeExcite {
            reduce: ElasticConv2d::new(
                store,
                &join(prefix, "reduce"),
                channels_max,
                reduce_max,
                1,
                1,
                false,
                true,
            ),
            expand: ElasticConv2d::new(
                store,
                &join(prefix, "expand"),
                reduce_max,
                channels_max,
                1,
                1,
                false,
                true,
            ),
            gate_activation,
        }
    }

    /// `x * gate(expand(relu(reduce(pool(x)))))` with `reduce` active reduced channels.
    pub fn forward(&self, x: &Tensor, reduce: i64) -> Tensor {
        let channels = x.size()[1];
        let pooled = x.mean_dim([2i64, 3].as_slice(), true, x.kind());
        let squeezed = self.reduce.forward(&pooled, reduce, 1, None, None).relu();
        let excite = self.expand.forward(&squeezed, channels, 1, None, None);
        x * self.gate_activation.apply(&excite)
    }

    /// Adds both convs (on the 1x1 pooled map) to `counter`.
    pub fn count(&self, counter: &mut Counter, channels: i64, reduce: i64) {
        self.reduce.count(counter, channels, reduce, 1, (1, 1));
        self.expand.count(counter, reduce, channels, 1, (1, 1));
    }

    /// The plain convs, named `{prefix}.reduce.*|expand.*`.
    pub fn export(&self, prefix: &str, channels: i64, reduce: i64) -> Vec<(String, Tensor)> {
        let mut out = self
            .reduce
            .export(&join(prefix, "reduce"), channels, reduce, 1);
        out.extend(
            self.expand
                .export(&join(prefix, "expand"), reduce, channels, 1),
        );
        out
    }

    /// Indices of this layer's parameters in its store.
    pub fn param_ids(&self) -> Vec<usize> {
        [self.reduce.param_ids(), self.expand.param_ids()].concat()
    }
}

/// Multi-head self-attention whose q/k/v width is `head_dim x heads` (AutoFormer: 64 per head,
/// so the head count varies independently of the embed dim), with elastic embed dim and heads.
///
/// Parameters follow timm's layout: `{prefix}.qkv.weight` `[3 * heads_max * head_dim, embed_max]`
/// (rows: all query heads, then keys, then values), `{prefix}.qkv.bias`, `{prefix}.proj.weight`
/// `[embed_max, heads_max * head_dim]`, `{prefix}.proj.bias`.
pub struct ElasticSelfAttention {
    /// `[3 * heads_max * head_dim, embed_max]`.
    pub qkv_weight: Tensor,
    /// `[3 * heads_max * head_dim]`, if biased.
    pub qkv_bias: Option<Tensor>,
    /// Heads -> embed dim.
    pub proj: ElasticLinear,
    /// Query/key/value width per head.
    pub head_dim: i64,
    /// Relative position encoding, if any.
    pub relative_position: Option<RelativePosition2d>,
    heads_max: i64,
    ids: Vec<usize>,
}

impl ElasticSelfAttention {
    /// Up to `heads_max` heads of `head_dim` over up to `embed_max` features.
    pub fn new(
        store: &mut ParamStore,
        prefix: &str,
        embed_max: i64,
        heads_max: i64,
        head_dim: i64,
        qkv_bias: bool,
    ) -> Self {
        let width = heads_max * head_dim;
        let (qkv_weight, wid) = store.param(
            &join(prefix, "qkv.weight"),
            uniform_fan_in(&[3 * width, embed_max], embed_max),
        );
        let mut ids = vec![wid];
        let qkv_bias = qkv_bias.then(|| {
            let (b, id) = store.param(
                &join(prefix, "qkv.bias"),
                uniform_fan_in(&[3 * width], embed_max),
            );
            ids.push(id);
            b
        });
        let proj = ElasticLinear::new(store, &join(prefix, "proj"), width, embed_max, true);
        ids.extend_from_slice(proj.param_ids());
        ElasticSelfAttention {
            qkv_weight,
            qkv_bias,
            proj,
            head_dim,
            relative_position: None,
            heads_max,
            ids,
        }
    }

    /// Adds a relative position encoding (registered as `{prefix}.rel_pos_k|rel_pos_v.*`).
    pub fn with_relative_position(mut self, relative_position: RelativePosition2d) -> Self {
        self.ids.extend(relative_position.param_ids());
        self.relative_position = Some(relative_position);
        self
    }

    /// The largest head count.
    pub fn heads_max(&self) -> i64 {
        self.heads_max
    }

    /// Rows of the q, k and v blocks for `heads` heads.
    fn qkv_rows(&self, tensor: &Tensor, heads: i64) -> Tensor {
        if heads == self.heads_max {
            return tensor.shallow_clone();
        }
        let (full, active) = (self.heads_max * self.head_dim, heads * self.head_dim);
        Tensor::cat(
            &[
                tensor.narrow(0, 0, active),
                tensor.narrow(0, full, active),
                tensor.narrow(0, 2 * full, active),
            ],
            0,
        )
    }

    /// The active qkv weight `[3 * heads * head_dim, embed]` and bias.
    pub fn active_qkv(&self, embed: i64, heads: i64) -> (Tensor, Option<Tensor>) {
        (
            self.qkv_rows(&first(&self.qkv_weight, 1, embed), heads),
            self.qkv_bias.as_ref().map(|b| self.qkv_rows(b, heads)),
        )
    }

    /// `[n, tokens, embed] -> [n, tokens, embed]` with `heads` heads; `head_gate` multiplies each
    /// head's output. With a relative position encoding, tokens are the class token followed by
    /// a square grid of patches.
    pub fn forward(&self, x: &Tensor, heads: i64, head_gate: Option<&Tensor>) -> Tensor {
        let size = x.size();
        let (tokens, embed) = (size[1], size[2]);
        let (weight, bias) = self.active_qkv(embed, heads);
        // [n, t, 3 * h * d] -> [3, n, h, t, d]. The batch stays -1 so a traced module accepts
        // any batch size.
        let qkv = x
            .linear(&weight, bias.as_ref())
            .view([-1, tokens, 3, heads, self.head_dim])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        // [n, h, t, d]
        let out = match &self.relative_position {
            None => Tensor::scaled_dot_product_attention(
                &q,
                &k,
                &v,
                None::<Tensor>,
                0.0,
                false,
                scale,
                false,
            ),
            Some(relative) => {
                // [n, h, t, t]
                let logits =
                    q.matmul(&k.transpose(-2, -1)) * scale + relative.key_term(&q, tokens) * scale;
                let attention = logits.softmax(-1, q.kind());
                attention.matmul(&v) + relative.value_term(&attention, tokens)
            }
        };
        let out = match head_gate {
            Some(gate) => out * first(gate, 0, heads).view([1, heads, 1, 1]),
            None => out,
        };
        let out = out
            .transpose(1, 2)
            .reshape([-1, tokens, heads * self.head_dim]);
        self.proj.forward(&out, embed, None)
    }

    /// Adds qkv, the two attention products and the projection, for `tokens` tokens.
    pub fn count(&self, counter: &mut Counter, embed: i64, heads: i64, tokens: i64) {
        let width = heads * self.head_dim;
        counter.linear(embed, 3 * width, tokens, self.qkv_bias.is_some());
        // q k^T and attention x v.
        counter.multiply_accumulates(2 * tokens * tokens * width);
        self.proj.count(counter, width, embed, tokens);
        if let Some(relative) = &self.relative_position {
            relative.count(counter, heads, tokens);
        }
    }

    /// The plain tensors at the given sizes, named as [`ElasticSelfAttention::new`] names them.
    pub fn export(&self, prefix: &str, embed: i64, heads: i64) -> Vec<(String, Tensor)> {
        let (weight, bias) = self.active_qkv(embed, heads);
        let mut out = vec![(
            join(prefix, "qkv.weight"),
            weight.detach().contiguous().copy(),
        )];
        if let Some(bias) = bias {
            out.push((join(prefix, "qkv.bias"), bias.detach().contiguous().copy()));
        }
        out.extend(
            self.proj
                .export(&join(prefix, "proj"), heads * self.head_dim, embed),
        );
        if let Some(relative) = &self.relative_position {
            out.extend(relative.export(prefix, heads));
        }
        out
    }

    /// Indices of this layer's parameters in its store.
    pub fn param_ids(&self) -> &[usize] {
        &self.ids
    }
}

/// An additive cost model of a space whose exact complexity has interactions (width x expand x
/// kernel x resolution): `base` plus one cost per option of every decision, fitted by least
/// squares of the *relative* error over `samples` archs drawn uniformly (from
/// [`crate::rng::stream`] with `seed`). Option 0 of every decision costs 0 (the base absorbs it).
/// Returns the table and its error on the drawn archs.
///
/// ```
/// use nas_sdk::{elastic::additive_cost_table, Arch, Complexity, Metric};
/// // Exactly additive: cost = 10 + 3 * choice0 + 5 * choice1.
/// let exact = |arch: &Arch| Ok(Complexity {
///     macs: 10 + 3 * arch.choices()[0] as u64 + 5 * arch.choices()[1] as u64,
///     params: 0,
/// });
/// let (table, error) = additive_cost_table(&[2, 3], exact, Metric::Macs, 64, 0).unwrap();
/// assert!((table.base - 10.0).abs() < 1e-6);
/// assert!((table.per_option[1][2] - 10.0).abs() < 1e-6);
/// assert!(error.max_relative < 1e-9);
/// ```
pub fn additive_cost_table(
    options: &[u32],
    mut complexity: impl FnMut(&crate::Arch) -> crate::PluginResult<crate::Complexity>,
    metric: crate::Metric,
    samples: usize,
    seed: u64,
) -> crate::PluginResult<(crate::CostTable, CostModelError)> {
    use rand::Rng;
    let mut rng = crate::rng::stream(seed, 0, "additive-cost-table");
    let archs: Vec<crate::Arch> = (0..samples.max(1))
        .map(|_| crate::Arch::new(options.iter().map(|&m| rng.gen_range(0..m)).collect()))
        .collect();
    let exact: Vec<f64> = archs
        .iter()
        .map(|arch| Ok(metric.of(&complexity(arch)?) as f64))
        .collect::<crate::PluginResult<_>>()?;
    // Column 0 is the base; then one column per non-reference option.
    let mut column = Vec::with_capacity(options.len());
    let mut columns = 1usize;
    for &m in options {
        column.push(columns);
        columns += m.saturating_sub(1) as usize;
    }
    let rows = archs.len();
    let mut design = vec![0.0f64; rows * columns];
    let mut target = vec![0.0f64; rows];
    for (r, (arch, &cost)) in archs.iter().zip(&exact).enumerate() {
        // Each row is divided by the exact cost, so the fit minimises relative errors.
        let weight = 1.0 / cost.max(1.0);
        design[r * columns] = weight;
        for (i, &j) in arch.choices().iter().enumerate() {
            if j > 0 {
                design[r * columns + column[i] + j as usize - 1] = weight;
            }
        }
        target[r] = cost * weight;
    }
    let a = Tensor::from_slice(&design).view([rows as i64, columns as i64]);
    let b = Tensor::from_slice(&target).view([rows as i64, 1]);
    // gelsd copes with options no drawn arch used (rank deficiency).
    let (solution, _, _, _) = a.linalg_lstsq(&b, None, "gelsd");
    let solution = Vec::<f64>::try_from(solution.flatten(0, -1))
        .map_err(|err| crate::PluginError::runtime(format!("cost table fit: {err}")))?;
    let per_option: Vec<Vec<f64>> = options
        .iter()
        .enumerate()
        .map(|(i, &m)| {
            (0..m as usize)
                .map(|j| {
                    if j == 0 {
                        0.0
                    } else {
                        solution[column[i] + j - 1]
                    }
                })
                .collect()
        })
        .collect();
    let table = crate::CostTable {
        metric,
        base: solution[0],
        per_option: per_option.into_iter().map(Into::into).collect(),
    };
    let mut error = CostModelError::default();
    for (arch, &cost) in archs.iter().zip(&exact) {
        let relative = ((table.estimate(arch) - cost) / cost.max(1.0)).abs();
        error.mean_relative += relative / rows as f64;
        error.max_relative = error.max_relative.max(relative);
    }
    Ok((table, error))
}

/// Relative error of an additive cost model against the exact counter.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CostModelError {
    /// Mean of `|model - exact| / exact`.
    pub mean_relative: f64,
    /// Largest `|model - exact| / exact`.
    pub max_relative: f64,
}

/// AutoFormer's 2-D relative position encoding of one attention layer: for query token `i` and
/// key token `j` on a `side x side` patch grid, learned vectors (one per clipped row offset and
/// one per clipped column offset, summed; index 0 is reserved for pairs with the class token)
/// are added to the attention logits through the queries (`k` table) and to the output through
/// the attention weights (`v` table). Tables have `head_dim` features and are shared by all
/// heads, so they do not shrink with the head count.
pub struct RelativePosition2d {
    /// Key tables `(rows, cols)`, each `[2 * max_distance + 2, head_dim]`.
    pub key_tables: (Tensor, Tensor),
    /// Value tables `(rows, cols)`, each `[2 * max_distance + 2, head_dim]`.
    pub value_tables: (Tensor, Tensor),
    /// Offsets are clipped to `[-max_distance, max_distance]` (AutoFormer: 14).
    pub max_distance: i64,
    ids: Vec<usize>,
}

impl RelativePosition2d {
    /// Tables registered as `{prefix}.rel_pos_k.table_v|table_h` and
    /// `{prefix}.rel_pos_v.table_v|table_h` (`v` = vertical offsets, `h` = horizontal), drawn from
    /// a normal with std 0.02 as AutoFormer initialises them.
    pub fn new(store: &mut ParamStore, prefix: &str, head_dim: i64, max_distance: i64) -> Self {
        let rows = 2 * max_distance + 2;
        let mut ids = Vec::new();
        let mut table = |name: &str| {
            // AutoFormer's trunc_normal_(std=0.02) truncates at +-2 (absolute), 100 std away.
            let init =
                Tensor::empty([rows, head_dim], (Kind::Float, Device::Cpu)).normal_(0.0, 0.02);
            let (t, id) = store.param(&join(prefix, name), init);
            ids.push(id);
            t
        };
        let key_tables = (table("rel_pos_k.table_v"), table("rel_pos_k.table_h"));
        let value_tables = (table("rel_pos_v.table_v"), table("rel_pos_v.table_h"));
        RelativePosition2d {
            key_tables,
            value_tables,
            max_distance,
            ids,
        }
    }

    /// `[tokens, tokens]` table indices of the row and column offsets (class token first).
    fn indices(&self, tokens: i64, device: Device) -> (Tensor, Tensor) {
        let patches = tokens - 1;
        let side = (patches as f64).sqrt().round() as i64;
        assert_eq!(
            side * side,
            patches,
            "relative positions need a square patch grid"
        );
        let position = Tensor::arange(patches, (Kind::Int64, device));
        let (row, col) = (
            position.divide_scalar_mode(side, "floor"),
            position.remainder(side),
        );
        let offset = |p: &Tensor| {
            (p.unsqueeze(0) - p.unsqueeze(1)).clamp(-self.max_distance, self.max_distance)
                + (self.max_distance + 1)
        };
        // Index 0 marks pairs involving the class token.
        let pad = |m: Tensor| m.constant_pad_nd([1, 0, 1, 0]);
        (pad(offset(&row)), pad(offset(&col)))
    }

    fn embeddings(&self, tables: &(Tensor, Tensor), tokens: i64) -> Tensor {
        let (rows, cols) = self.indices(tokens, tables.0.device());
        // [t, t, head_dim]
        tables
            .0
            .index_select(0, &rows.flatten(0, 1))
            .view([tokens, tokens, -1])
            + tables
                .1
                .index_select(0, &cols.flatten(0, 1))
                .view([tokens, tokens, -1])
    }

    /// `q [n, h, t, d] -> [n, h, t, t]`: `sum_d q[i, d] * K[i, j, d]` (unscaled).
    pub fn key_term(&self, q: &Tensor, tokens: i64) -> Tensor {
        Tensor::einsum(
            "nhid,ijd->nhij",
            &[q, &self.embeddings(&self.key_tables, tokens)],
            None::<i64>,
        )
    }

    /// `attention [n, h, t, t] -> [n, h, t, d]`: `sum_j a[i, j] * V[i, j, d]`.
    pub fn value_term(&self, attention: &Tensor, tokens: i64) -> Tensor {
        Tensor::einsum(
            "nhij,ijd->nhid",
            &[attention, &self.embeddings(&self.value_tables, tokens)],
            None::<i64>,
        )
    }

    /// Adds the table parameters and the two extra products per head to `counter`.
    pub fn count(&self, counter: &mut Counter, heads: i64, tokens: i64) {
        let (rows, head_dim) = (self.key_tables.0.size()[0], self.key_tables.0.size()[1]);
        counter.parameters(4 * rows * head_dim);
        counter.multiply_accumulates(2 * heads * tokens * tokens * head_dim);
    }

    /// The tables, named as [`RelativePosition2d::new`] names them under `prefix`.
    pub fn export(&self, prefix: &str, _heads: i64) -> Vec<(String, Tensor)> {
        [
            ("rel_pos_k.table_v", &self.key_tables.0),
            ("rel_pos_k.table_h", &self.key_tables.1),
            ("rel_pos_v.table_v", &self.value_tables.0),
            ("rel_pos_v.table_h", &self.value_tables.1),
        ]
        .into_iter()
        .map(|(name, t)| (join(prefix, name), t.detach().contiguous().copy()))
        .collect()
    }

    /// Indices of this layer's parameters in its store.
    pub fn param_ids(&self) -> &[usize] {
        &self.ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BnMode, ForwardOptions};

    fn randn(shape: &[i64]) -> Tensor {
        Tensor::randn(shape, (Kind::Float, Device::Cpu))
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        assert_eq!(a.size(), b.size());
        (a - b).abs().max().double_value(&[])
    }

    /// A contiguous copy, so the plain op never sees a view of the elastic layer's weight.
    fn copy(t: &Tensor) -> Tensor {
        t.detach().contiguous().copy()
    }

    #[test]
    fn conv_equals_plain_conv_at_full_and_sliced_sizes() {
        tch::manual_seed(0);
        let mut store = ParamStore::new(Device::Cpu);
        let conv = ElasticConv2d::new(&mut store, "c", 8, 12, 7, 2, false, true);
        let x = randn(&[2, 8, 11, 11]);
        let full = conv.forward(&x, 12, 7, None, None);
        let plain = x.conv2d(
            &copy(&conv.weight),
            Some(&copy(conv.bias.as_ref().unwrap())),
            [2, 2],
            [3, 3],
            [1, 1],
            1,
        );
        assert!(max_diff(&full, &plain) <= 1e-6);
        for (c_in, c_out, k) in [(5, 7, 3), (8, 4, 5), (3, 12, 1)] {
            let xs = x.narrow(1, 0, c_in);
            let sliced = conv.forward(&xs, c_out, k, None, None);
            let start = (7 - k) / 2;
            let weight = copy(
                &conv
                    .weight
                    .narrow(0, 0, c_out)
                    .narrow(1, 0, c_in)
                    .narrow(2, start, k)
                    .narrow(3, start, k),
            );
            let bias = copy(&conv.bias.as_ref().unwrap().narrow(0, 0, c_out));
            let plain = xs.conv2d(&weight, Some(&bias), [2, 2], [k / 2, k / 2], [1, 1], 1);
            assert!(max_diff(&sliced, &plain) <= 1e-6, "{c_in} {c_out} {k}");
        }
    }

    #[test]
    fn depthwise_conv_equals_plain_grouped_conv() {
        tch::manual_seed(1);
        let mut store = ParamStore::new(Device::Cpu);
        let conv = ElasticConv2d::new(&mut store, "dw", 16, 16, 5, 1, true, false);
        let x = randn(&[2, 16, 9, 9]);
        let full = conv.forward(&x, 16, 5, None, None);
        let plain = x.conv2d(
            &copy(&conv.weight),
            None::<Tensor>,
            [1, 1],
            [2, 2],
            [1, 1],
            16,
        );
        assert!(max_diff(&full, &plain) <= 1e-6);
        let xs = x.narrow(1, 0, 10);
        let sliced = conv.forward(&xs, 10, 3, None, None);
        let weight = copy(&conv.weight.narrow(0, 0, 10).narrow(2, 1, 3).narrow(3, 1, 3));
        let plain = xs.conv2d(&weight, None::<Tensor>, [1, 1], [1, 1], [1, 1], 10);
        assert!(max_diff(&sliced, &plain) <= 1e-6);
    }

    #[test]
    fn batch_norm_uses_and_updates_only_the_active_channels() {
        tch::manual_seed(2);
        let mut store = ParamStore::new(Device::Cpu);
        let bn = crate::nn::BatchNorm2d::new(&mut store, "bn", 8, true, true, 0.1);
        tch::no_grad(|| {
            let _ = bn
                .weight
                .as_ref()
                .unwrap()
                .shallow_clone()
                .uniform_(0.5, 1.5);
            let _ = bn
                .bias
                .as_ref()
                .unwrap()
                .shallow_clone()
                .uniform_(-0.5, 0.5);
        });
        let x = randn(&[4, 5, 3, 3]) * 2.0 + 1.0;
        let running_mean = bn.running_mean.as_ref().unwrap();
        let running_var = bn.running_var.as_ref().unwrap();
        let (mean_before, var_before) = (copy(running_mean), copy(running_var));
        let y = bn.forward(&x, &ForwardOptions::TRAIN);
        let (rm, rv) = (
            mean_before.narrow(0, 0, 5).copy(),
            var_before.narrow(0, 0, 5).copy(),
        );
        let plain = x.batch_norm(
            Some(&copy(&bn.weight.as_ref().unwrap().narrow(0, 0, 5))),
            Some(&copy(&bn.bias.as_ref().unwrap().narrow(0, 0, 5))),
            Some(&rm),
            Some(&rv),
            true,
            0.1,
            1e-5,
            false,
        );
        assert!(max_diff(&y, &plain) <= 1e-6);
        // The active channels' statistics moved exactly as the plain op's; the others did not.
        assert!(max_diff(&running_mean.narrow(0, 0, 5), &rm) <= 1e-7);
        assert!(max_diff(&running_var.narrow(0, 0, 5), &rv) <= 1e-6);
        assert_eq!(
            max_diff(&running_mean.narrow(0, 5, 3), &mean_before.narrow(0, 5, 3)),
            0.0
        );
        // Full size in eval mode equals the plain op with running statistics.
        let x8 = randn(&[2, 8, 3, 3]);
        let eval = ForwardOptions {
            bn: BnMode::Running,
            ..ForwardOptions::EVAL
        };
        let y = bn.forward(&x8, &eval);
        let plain = x8.batch_norm(
            bn.weight.as_ref(),
            bn.bias.as_ref(),
            Some(running_mean),
            Some(running_var),
            false,
            0.1,
            1e-5,
            false,
        );
        assert!(max_diff(&y, &plain) <= 1e-6);
    }

    #[test]
    fn linear_and_layer_norm_equal_plain_ops() {
        tch::manual_seed(3);
        let mut store = ParamStore::new(Device::Cpu);
        let linear = ElasticLinear::new(&mut store, "fc", 10, 6, true);
        let norm = ElasticLayerNorm::new(&mut store, "ln", 10, 1e-6);
        tch::no_grad(|| {
            let _ = norm.weight.shallow_clone().uniform_(0.5, 1.5);
            let _ = norm.bias.shallow_clone().uniform_(-0.5, 0.5);
        });
        let x = randn(&[3, 4, 10]);
        let plain = x.linear(
            &copy(&linear.weight),
            Some(&copy(linear.bias.as_ref().unwrap())),
        );
        assert!(max_diff(&linear.forward(&x, 6, None), &plain) <= 1e-6);
        let xs = x.narrow(2, 0, 7);
        let plain = xs.linear(
            &copy(&linear.weight.narrow(0, 0, 4).narrow(1, 0, 7)),
            Some(&copy(&linear.bias.as_ref().unwrap().narrow(0, 0, 4))),
        );
        assert!(max_diff(&linear.forward(&xs, 4, None), &plain) <= 1e-6);
        let plain = x.layer_norm(
            [10],
            Some(&copy(&norm.weight)),
            Some(&copy(&norm.bias)),
            1e-6,
            false,
        );
        assert!(max_diff(&norm.forward(&x), &plain) <= 1e-6);
        let plain = xs.layer_norm(
            [7],
            Some(&copy(&norm.weight.narrow(0, 0, 7))),
            Some(&copy(&norm.bias.narrow(0, 0, 7))),
            1e-6,
            false,
        );
        assert!(max_diff(&norm.forward(&xs), &plain) <= 1e-6);
    }

    /// Plain multi-head attention from explicit q/k/v/proj weights, written out step by step.
    #[allow(clippy::too_many_arguments)]
    fn plain_attention(
        x: &Tensor,
        wq: &Tensor,
        wk: &Tensor,
        wv: &Tensor,
        bq: &Tensor,
        bk: &Tensor,
        bv: &Tensor,
        wp: &Tensor,
        bp: &Tensor,
        heads: i64,
        head_dim: i64,
    ) -> Tensor {
        let (n, t) = (x.size()[0], x.size()[1]);
        let split = |w: &Tensor, b: &Tensor| {
            x.linear(w, Some(b))
                .view([n, t, heads, head_dim])
                .transpose(1, 2)
        };
        let (q, k, v) = (split(wq, bq), split(wk, bk), split(wv, bv));
        let attention =
            (q.matmul(&k.transpose(-2, -1)) / (head_dim as f64).sqrt()).softmax(-1, Kind::Float);
        attention
            .matmul(&v)
            .transpose(1, 2)
            .reshape([n, t, heads * head_dim])
            .linear(wp, Some(bp))
    }

    #[test]
    fn attention_equals_plain_attention_at_full_and_sliced_sizes() {
        tch::manual_seed(4);
        let mut store = ParamStore::new(Device::Cpu);
        let (embed_max, heads_max, head_dim) = (12, 3, 4);
        let attention =
            ElasticSelfAttention::new(&mut store, "attn", embed_max, heads_max, head_dim, true);
        let x = randn(&[2, 5, embed_max]);
        for (embed, heads) in [(12, 3), (9, 2), (12, 1)] {
            let xs = x.narrow(2, 0, embed);
            let got = attention.forward(&xs, heads, None);
            let width = heads_max * head_dim;
            let block = |part: i64| {
                (
                    copy(
                        &attention
                            .qkv_weight
                            .narrow(0, part * width, heads * head_dim)
                            .narrow(1, 0, embed),
                    ),
                    copy(&attention.qkv_bias.as_ref().unwrap().narrow(
                        0,
                        part * width,
                        heads * head_dim,
                    )),
                )
            };
            let ((wq, bq), (wk, bk), (wv, bv)) = (block(0), block(1), block(2));
            let wp = copy(&attention.proj.weight.narrow(0, 0, embed).narrow(
                1,
                0,
                heads * head_dim,
            ));
            let bp = copy(&attention.proj.bias.as_ref().unwrap().narrow(0, 0, embed));
            let plain =
                plain_attention(&xs, &wq, &wk, &wv, &bq, &bk, &bv, &wp, &bp, heads, head_dim);
            assert!(
                max_diff(&got, &plain) <= 1e-6,
                "embed {embed} heads {heads}"
            );
            // The exported qkv weight is timm's fused layout of the same blocks.
            let exported = attention.export("attn", embed, heads);
            let fused = Tensor::cat(&[wq, wk, wv], 0);
            assert_eq!(exported[0].0, "attn.qkv.weight");
            assert_eq!(max_diff(&exported[0].1, &fused), 0.0);
        }
    }

    #[test]
    fn relative_positions_equal_a_direct_double_loop() {
        tch::manual_seed(5);
        let mut store = ParamStore::new(Device::Cpu);
        let relative = RelativePosition2d::new(&mut store, "attn", 4, 1);
        // A 3x3 patch grid plus the class token; offsets clip at 1.
        let tokens = 10;
        let q = randn(&[1, 2, tokens, 4]);
        let key_term = relative.key_term(&q, tokens);
        let index = |token: i64, other: i64, by_row: bool| -> i64 {
            if token == 0 || other == 0 {
                return 0;
            }
            let (a, b) = (token - 1, other - 1);
            let offset = if by_row { b / 3 - a / 3 } else { b % 3 - a % 3 };
            offset.clamp(-1, 1) + 2
        };
        for i in 0..tokens {
            for j in 0..tokens {
                let embedding = relative.key_tables.0.get(index(i, j, true))
                    + relative.key_tables.1.get(index(i, j, false));
                for h in 0..2 {
                    let expected = (q.get(0).get(h).get(i) * &embedding).sum(Kind::Float);
                    let got = key_term.get(0).get(h).get(i).get(j);
                    assert!(max_diff(&got, &expected) <= 1e-6);
                }
            }
        }
    }

    #[test]
    fn squeeze_excite_equals_plain_ops() {
        tch::manual_seed(6);
        let mut store = ParamStore::new(Device::Cpu);
        let se = SqueezeExcite::new(&mut store, "se", 16, 8, Activation::Hsigmoid);
        let x = randn(&[2, 12, 5, 5]);
        let got = se.forward(&x, 4);
        let pooled = x.mean_dim([2i64, 3].as_slice(), true, Kind::Float);
        let w1 = copy(&se.reduce.weight.narrow(0, 0, 4).narrow(1, 0, 12));
        let b1 = copy(&se.reduce.bias.as_ref().unwrap().narrow(0, 0, 4));
        let w2 = copy(&se.expand.weight.narrow(0, 0, 12).narrow(1, 0, 4));
        let b2 = copy(&se.expand.bias.as_ref().unwrap().narrow(0, 0, 12));
        let s = pooled
            .conv2d(&w1, Some(&b1), [1, 1], [0, 0], [1, 1], 1)
            .relu();
        let s = s
            .conv2d(&w2, Some(&b2), [1, 1], [0, 0], [1, 1], 1)
            .hardsigmoid();
        assert!(max_diff(&got, &(&x * s)) <= 1e-6);
    }

    #[test]
    fn all_ones_gates_change_nothing() {
        tch::manual_seed(7);
        let mut store = ParamStore::new(Device::Cpu);
        let conv = ElasticConv2d::new(&mut store, "c", 4, 6, 5, 1, false, false);
        let x = randn(&[1, 4, 6, 6]);
        let ones = Tensor::ones([6], (Kind::Float, Device::Cpu));
        let rings = Tensor::ones([2], (Kind::Float, Device::Cpu));
        let plain = conv.forward(&x, 6, 5, None, None);
        let gated = conv.forward(&x, 6, 5, Some(&ones), Some((&rings, &[3, 5])));
        assert_eq!(max_diff(&plain, &gated), 0.0);
        // A ring gate of zero on the outer ring equals the 3x3 crop zero-padded to 5x5.
        let inner_only = Tensor::from_slice(&[1.0f32, 0.0]);
        let masked = conv.forward(&x, 6, 5, None, Some((&inner_only, &[3, 5])));
        let cropped = x.conv2d(
            &copy(&centre_crop(&conv.weight, 3)),
            None::<Tensor>,
            [1, 1],
            [1, 1],
            [1, 1],
            1,
        );
        assert!(max_diff(&masked, &cropped) <= 1e-6);
    }
}
