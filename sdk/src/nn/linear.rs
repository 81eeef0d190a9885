//! A plain fully connected layer.

use tch::Tensor;

use super::{
    init::{join, uniform_fan_in},
    store::ParamStore,
};

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
