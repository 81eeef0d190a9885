//! Exact complexity of active layer sizes.

/// Exact MACs and parameters of active layer sizes (the convention of [`crate::Complexity`]).
///
/// ```
/// use nas_sdk::elastic::Counter;
/// let mut count = Counter::default();
/// count.conv2d(3, 32, 3, 1, 112, 112, false); // MobileNetV2's stem at 224
/// count.batch_norm(32);
/// assert_eq!((count.macs, count.params), (10_838_016, 928));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Multiply-accumulates so far.
    pub macs: u64,
    /// Parameters so far.
    pub params: u64,
}

impl Counter {
    /// A convolution with `groups` groups producing `h_out x w_out`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d(
        &mut self,
        c_in: i64,
        c_out: i64,
        kernel: i64,
        groups: i64,
        h_out: i64,
        w_out: i64,
        bias: bool,
    ) {
        let weights = (c_in / groups * kernel * kernel * c_out) as u64;
        self.macs += weights * (h_out * w_out) as u64;
        self.params += weights + if bias { c_out as u64 } else { 0 };
    }

    /// A fully connected layer applied to `tokens` vectors.
    pub fn linear(&mut self, in_features: i64, out_features: i64, tokens: i64, bias: bool) {
        let weights = (in_features * out_features) as u64;
        self.macs += weights * tokens as u64;
        self.params += weights + if bias { out_features as u64 } else { 0 };
    }

    /// An affine batch norm (parameters only).
    pub fn batch_norm(&mut self, channels: i64) {
        self.params += 2 * channels as u64;
    }

    /// An affine layer norm (parameters only).
    pub fn layer_norm(&mut self, features: i64) {
        self.params += 2 * features as u64;
    }

    /// Extra parameters (tokens, embeddings, tables).
    pub fn parameters(&mut self, count: i64) {
        self.params += count as u64;
    }

    /// Extra multiply-accumulates (attention matmuls).
    pub fn multiply_accumulates(&mut self, count: i64) {
        self.macs += count as u64;
    }

    /// As a [`crate::Complexity`].
    pub fn complexity(&self) -> crate::Complexity {
        crate::Complexity {
            macs: self.macs,
            params: self.params,
        }
    }
}
