//! Squeeze-and-excite over elastic channels.

use tch::Tensor;

use super::{activation::Activation, conv::ElasticConv2d, counter::Counter};
use crate::nn::{init::join, ParamStore};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{copy, max_diff, randn};
    use tch::{Device, Kind};

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
}
