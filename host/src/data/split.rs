//! One split of a dataset held as tensors.

use tch::{Device, Tensor};

/// One split: images `[n, c, h, w]` (float, normalised) and labels `[n]` (int64).
pub struct Split {
    /// Images.
    pub images: Tensor,
    /// Labels.
    pub labels: Tensor,
}

impl Split {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }

    /// Whether the split is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The examples at `indices`.
    pub fn gather(&self, indices: &[i64]) -> (Tensor, Tensor) {
        let index = Tensor::from_slice(indices).to_device(self.images.device());
        (
            self.images.index_select(0, &index),
            self.labels.index_select(0, &index),
        )
    }

    /// Consecutive examples `[start, start + count)`.
    pub fn slice(&self, start: usize, count: usize) -> (Tensor, Tensor) {
        (
            self.images.narrow(0, start as i64, count as i64),
            self.labels.narrow(0, start as i64, count as i64),
        )
    }

    pub(super) fn to_device(&self, device: Device) -> Split {
        Split {
            images: self.images.to_device(device),
            labels: self.labels.to_device(device),
        }
    }
}
