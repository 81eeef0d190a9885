//! Helpers of the SDK's own unit tests.

use tch::{Device, Kind, Tensor};

pub(crate) fn randn(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}

pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

/// A contiguous copy, so the plain op never sees a view of the elastic layer's weight.
pub(crate) fn copy(t: &Tensor) -> Tensor {
    t.detach().contiguous().copy()
}
