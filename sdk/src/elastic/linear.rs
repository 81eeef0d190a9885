//! A fully connected layer with elastic features.

use tch::Tensor;

use super::{counter::Counter, gate::gate_features};
use crate::nn::{
    init::{join, uniform_fan_in},
    slice::{first, plain},
    ParamStore,
};

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
