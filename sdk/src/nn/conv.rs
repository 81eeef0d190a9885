//! A plain 2-D convolution.

use tch::Tensor;

use super::{
    init::{join, uniform_fan_in},
    store::ParamStore,
};

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
