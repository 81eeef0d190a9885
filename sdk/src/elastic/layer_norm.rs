//! Layer norm over elastic features.

use tch::{Device, Kind, Tensor};

use crate::nn::{
    init::join,
    slice::{first, plain},
    ParamStore,
};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elastic::linear::ElasticLinear;
    use crate::test_support::{copy, max_diff, randn};

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
}
