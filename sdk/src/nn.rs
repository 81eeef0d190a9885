//! Building blocks for supernets: an ordered parameter store and plain layers with PyTorch's
//! default initialisation, whose batch norm follows the host's [`ForwardOptions`].
//!
//! Layers are plain structs with a `forward`, in the style of tch-rs's examples. Each remembers
//! the indices of its parameters in the [`ParamStore`] so a space can report the parameters an
//! arch uses ([`crate::SearchSpace::active_parameters`]).

use tch::{Device, Kind, Tensor};

use crate::{BnMode, ForwardOptions};

/// An ordered list of named parameters and buffers on one device.
///
/// ```
/// use nas_sdk::nn::{Conv2d, ParamStore};
/// let mut store = ParamStore::new(tch::Device::Cpu);
/// let conv = Conv2d::new(&mut store, "stem", 3, 8, 3, 1, 1, false);
/// assert_eq!(store.parameters()[0].0, "stem.weight");
/// assert_eq!(conv.param_ids(), &[0]);
/// ```
pub struct ParamStore {
    device: Device,
    params: Vec<(String, Tensor)>,
    buffers: Vec<(String, Tensor)>,
}

impl ParamStore {
    /// An empty store creating tensors on `device`.
    pub fn new(device: Device) -> Self {
        ParamStore {
            device,
            params: Vec::new(),
            buffers: Vec::new(),
        }
    }

    /// The device tensors are created on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Registers `init` (moved to the store's device) as a trainable parameter; returns the
    /// parameter and its index.
    pub fn param(&mut self, name: &str, init: Tensor) -> (Tensor, usize) {
        let tensor = init.to_device(self.device).set_requires_grad(true);
        self.params.push((name.to_string(), tensor.shallow_clone()));
        (tensor, self.params.len() - 1)
    }

    /// Registers `init` (moved to the store's device) as a buffer (no gradient).
    pub fn buffer(&mut self, name: &str, init: Tensor) -> Tensor {
        let tensor = init.to_device(self.device);
        self.buffers
            .push((name.to_string(), tensor.shallow_clone()));
        tensor
    }

    /// Shallow clones of all parameters, in registration order.
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect()
    }

    /// Shallow clones of all buffers, in registration order.
    pub fn buffers(&self) -> Vec<(String, Tensor)> {
        self.buffers
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect()
    }
}

/// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`: PyTorch's default for conv and linear weights
/// (kaiming-uniform with `a = sqrt(5)`) and biases.
pub(crate) fn uniform_fan_in(shape: &[i64], fan_in: i64) -> Tensor {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Tensor::empty(shape, (Kind::Float, Device::Cpu)).uniform_(-bound, bound)
}

pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// A 2-D convolution (`groups = 1`).
pub struct Conv2d {
    /// `[out, in, k, k]`.
    pub weight: Tensor,
    /// `[out]`, if biased.
    pub bias: Option<Tensor>,
    /// Stride.
    pub stride: i64,
    /// Zero padding.
    pub padding: i64,
    ids: Vec<usize>,
}

impl Conv2d {
    /// A `kernel x kernel` convolution from `c_in` to `c_out` channels, registered as
    /// `{prefix}.weight` (and `{prefix}.bias`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: &mut ParamStore,
        prefix: &str,
        c_in: i64,
        c_out: i64,
        kernel: i64,
        stride: i64,
        padding: i64,
        bias: bool,
    ) -> Self {
        let fan_in = c_in * kernel * kernel;
        let (weight, weight_id) = store.param(
            &join(prefix, "weight"),
            uniform_fan_in(&[c_out, c_in, kernel, kernel], fan_in),
        );
        let mut ids = vec![weight_id];
        let bias = bias.then(|| {
            let (b, id) = store.param(&join(prefix, "bias"), uniform_fan_in(&[c_out], fan_in));
            ids.push(id);
            b
        });
        Conv2d {
            weight,
            bias,
            stride,
            padding,
            ids,
        }
    }

    /// `[n, c_in, h, w] -> [n, c_out, h', w']`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d(
            &self.weight,
            self.bias.as_ref(),
            [self.stride, self.stride],
            [self.padding, self.padding],
            [1, 1],
            1,
        )
    }

    /// Indices of this layer's parameters in its store.
    pub fn param_ids(&self) -> &[usize] {
        &self.ids
    }
}

/// Batch normalisation over channels, optionally affine and optionally tracking running
/// statistics, behaving as [`ForwardOptions::bn`] asks.
pub struct BatchNorm2d {
    /// Scale `[c]`, if affine.
    pub weight: Option<Tensor>,
    /// Shift `[c]`, if affine.
    pub bias: Option<Tensor>,
    /// Running mean `[c]`, if tracked.
    pub running_mean: Option<Tensor>,
    /// Running (unbiased) variance `[c]`, if tracked.
    pub running_var: Option<Tensor>,
    /// Momentum of running statistics when the forward options do not set one.
    pub momentum: f64,
    /// Added to the variance.
    pub eps: f64,
    ids: Vec<usize>,
}

impl BatchNorm2d {
    /// Batch norm over `channels`, registered as `{prefix}.weight|bias|running_mean|running_var`.
    pub fn new(
        store: &mut ParamStore,
        prefix: &str,
        channels: i64,
        affine: bool,
        track_running_stats: bool,
        momentum: f64,
    ) -> Self {
        let mut ids = Vec::new();
        let (weight, bias) = if affine {
            let (w, wid) = store.param(
                &join(prefix, "weight"),
                Tensor::ones([channels], (Kind::Float, Device::Cpu)),
            );
            let (b, bid) = store.param(
                &join(prefix, "bias"),
                Tensor::zeros([channels], (Kind::Float, Device::Cpu)),
            );
            ids.extend([wid, bid]);
            (Some(w), Some(b))
        } else {
            (None, None)
        };
        let (running_mean, running_var) = if track_running_stats {
            (
                Some(store.buffer(
                    &join(prefix, "running_mean"),
                    Tensor::zeros([channels], (Kind::Float, Device::Cpu)),
                )),
                Some(store.buffer(
                    &join(prefix, "running_var"),
                    Tensor::ones([channels], (Kind::Float, Device::Cpu)),
                )),
            )
        } else {
            (None, None)
        };
        BatchNorm2d {
            weight,
            bias,
            running_mean,
            running_var,
            momentum,
            eps: 1e-5,
            ids,
        }
    }

    /// Normalises `[n, c, h, w]` as `options.bn` asks. Without running statistics every mode
    /// uses batch statistics, as PyTorch does.
    ///
    /// When `x` has fewer channels than the layer (an elastic width), the first `c` channels'
    /// affine parameters and running statistics are used, and a running-statistics update
    /// changes only those (the slices are views of the full buffers).
    pub fn forward(&self, x: &Tensor, options: &ForwardOptions) -> Tensor {
        let momentum = if options.bn_momentum >= 0.0 {
            options.bn_momentum
        } else {
            self.momentum
        };
        let channels = x.size()[1];
        let first = |t: &Option<Tensor>| t.as_ref().map(|t| crate::elastic::first(t, 0, channels));
        let (weight, bias) = (first(&self.weight), first(&self.bias));
        let (running_mean, running_var) = (first(&self.running_mean), first(&self.running_var));
        let (training, running_mean, running_var) = match (options.bn, running_mean.is_some()) {
            (BnMode::TrainUpdate, true) => (true, running_mean.as_ref(), running_var.as_ref()),
            (BnMode::Running, true) => (false, running_mean.as_ref(), running_var.as_ref()),
            (BnMode::BatchStats, _) | (_, false) => (true, None, None),
        };
        x.batch_norm(
            weight.as_ref(),
            bias.as_ref(),
            running_mean,
            running_var,
            training,
            momentum,
            self.eps,
            true,
        )
    }

    /// Channels of the full layer.
    pub fn channels(&self) -> i64 {
        self.weight
            .as_ref()
            .or(self.running_mean.as_ref())
            .map(|t| t.size()[0])
            .unwrap_or(0)
    }

    /// The first `channels` channels' parameters and buffers as plain tensors named
    /// `{prefix}.weight|bias|running_mean|running_var` (what [`BatchNorm2d::new`] registers).
    pub fn export(&self, prefix: &str, channels: i64) -> Vec<(String, Tensor)> {
        [
            ("weight", &self.weight),
            ("bias", &self.bias),
            ("running_mean", &self.running_mean),
            ("running_var", &self.running_var),
        ]
        .into_iter()
        .filter_map(|(name, t)| {
            t.as_ref()
                .map(|t| (join(prefix, name), crate::elastic::plain(t, &[channels])))
        })
        .collect()
    }

    /// Indices of this layer's parameters in its store (empty unless affine).
    pub fn param_ids(&self) -> &[usize] {
        &self.ids
    }
}

/// A fully connected layer with bias.
pub struct Linear {
    /// `[out, in]`.
    pub weight: Tensor,
    /// `[out]`.
    pub bias: Tensor,
    ids: Vec<usize>,
}

impl Linear {
    /// `in_features -> out_features`, registered as `{prefix}.weight|bias`.
    pub fn new(store: &mut ParamStore, prefix: &str, in_features: i64, out_features: i64) -> Self {
        let (weight, wid) = store.param(
            &join(prefix, "weight"),
            uniform_fan_in(&[out_features, in_features], in_features),
        );
        let (bias, bid) = store.param(
            &join(prefix, "bias"),
            uniform_fan_in(&[out_features], in_features),
        );
        Linear {
            weight,
            bias,
            ids: vec![wid, bid],
        }
    }

    /// `[n, in] -> [n, out]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, Some(&self.bias))
    }

    /// Indices of this layer's parameters in its store.
    pub fn param_ids(&self) -> &[usize] {
        &self.ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_norm_modes() {
        let mut store = ParamStore::new(Device::Cpu);
        let bn = BatchNorm2d::new(&mut store, "bn", 2, true, true, 0.1);
        let x = Tensor::randn([4, 2, 3, 3], (Kind::Float, Device::Cpu)) * 3.0 + 1.0;
        // Batch statistics leave the running statistics alone.
        let _ = bn.forward(&x, &ForwardOptions::BATCH_STATS);
        assert_eq!(
            bn.running_mean
                .as_ref()
                .unwrap()
                .abs()
                .sum(Kind::Float)
                .double_value(&[]),
            0.0
        );
        // A cumulative-average update with momentum 1 copies the batch mean.
        let options = ForwardOptions {
            bn_momentum: 1.0,
            ..ForwardOptions::TRAIN
        };
        let _ = bn.forward(&x, &options);
        let batch_mean = x.mean_dim([0i64, 2, 3].as_slice(), false, Kind::Float);
        let diff = (bn.running_mean.as_ref().unwrap() - batch_mean)
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff < 1e-5, "running mean differs by {diff}");
        // Running statistics at eval normalise the same batch to roughly zero mean.
        let y = bn.forward(&x, &ForwardOptions::EVAL);
        assert!(y.mean(Kind::Float).double_value(&[]).abs() < 1e-4);
    }
}
