//! The ordered parameter store every layer registers its tensors in.

use tch::{Device, Tensor};

/// An ordered list of named parameters and buffers on one device.
///
/// ```
/// use nas_sdk::nn::{Conv2d, ParamStore};
/// let mut store = ParamStore::new(tch::Device::Cpu);
/// let conv = Conv2d::new(&mut store, "stem", 3, 8, 3, 1, 1, false);
/// assert_eq!(store.parameters()[0].0, "stem.weight");
/// assert_eq!(conv.param_ids(), &[0]);
/// ```
pub struct ParamStore {
    device: Device,
    params: Vec<(String, Tensor)>,
    buffers: Vec<(String, Tensor)>,
}

impl ParamStore {
    /// An empty store creating tensors on `device`.
    pub fn new(device: Device) -> Self {
        ParamStore {
            device,
            params: Vec::new(),
            buffers: Vec::new(),
        }
    }

    /// The device tensors are created on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Registers `init` (moved to the store's device) as a trainable parameter; returns the
    /// parameter and its index.
    pub fn param(&mut self, name: &str, init: Tensor) -> (Tensor, usize) {
        let tensor = init.to_device(self.device).set_requires_grad(true);
        self.params.push((name.to_string(), tensor.shallow_clone()));
        (tensor, self.params.len() - 1)
    }

    /// Registers `init` (moved to the store's device) as a buffer (no gradient).
    pub fn buffer(&mut self, name: &str, init: Tensor) -> Tensor {
        let tensor = init.to_device(self.device);
        self.buffers
            .push((name.to_string(), tensor.shallow_clone()));
        tensor
    }

    /// Shallow clones of all parameters, in registration order.
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect()
    }

    /// Shallow clones of all buffers, in registration order.
    pub fn buffers(&self) -> Vec<(String, Tensor)> {
        self.buffers
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect()
    }
}
