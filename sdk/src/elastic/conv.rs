//! A convolution with elastic channels and kernels, dense or depthwise.

use tch::Tensor;

use super::{
    counter::Counter,
    gate::gate_channels,
    kernel::{centre_crop, kernel_ring_mask},
};
use crate::nn::{
    init::{join, uniform_fan_in},
    slice::first,
    ParamStore,
};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{copy, max_diff, randn};
    use tch::{Device, Kind};

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
