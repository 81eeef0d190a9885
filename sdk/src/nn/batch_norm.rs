//! Batch normalisation that follows the host's [`ForwardOptions`], at full or elastic width.

use tch::{Device, Kind, Tensor};

use super::{init::join, slice, store::ParamStore};
use crate::{BnMode, ForwardOptions};

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
        let first = |t: &Option<Tensor>| t.as_ref().map(|t| slice::first(t, 0, channels));
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
                .map(|t| (join(prefix, name), slice::plain(t, &[channels])))
        })
        .collect()
    }

    /// Indices of this layer's parameters in its store (empty unless affine).
    pub fn param_ids(&self) -> &[usize] {
        &self.ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{copy, max_diff, randn};

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

    #[test]
    fn batch_norm_uses_and_updates_only_the_active_channels() {
        tch::manual_seed(2);
        let mut store = ParamStore::new(Device::Cpu);
        let bn = BatchNorm2d::new(&mut store, "bn", 8, true, true, 0.1);
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
}
