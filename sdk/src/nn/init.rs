//! PyTorch's default initialisation and the naming rule of registered tensors.

use tch::{Device, Kind, Tensor};

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
