//! Activation functions.

use tch::Tensor;

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
