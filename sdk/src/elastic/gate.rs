//! Gates over a layer's units (see the module docs of [`crate::elastic`]).

use tch::Tensor;

use crate::nn::slice::first;

/// Multiplies channel `i` of `x` (`[n, c, ...]`) by `gate[i]`.
pub fn gate_channels(x: &Tensor, gate: &Tensor) -> Tensor {
    let size = x.size();
    let mut shape = vec![1i64; size.len()];
    shape[1] = size[1];
    x * first(gate, 0, size[1]).view(shape.as_slice())
}

/// Multiplies feature `i` of `x` (`[.., c]`) by `gate[i]`.
pub fn gate_features(x: &Tensor, gate: &Tensor) -> Tensor {
    let features = *x.size().last().expect("features");
    x * first(gate, 0, features)
}

/// A gate over units from a gate over nested levels: unit `u` gets the gate of the first level
/// whose size exceeds `u` (`level_sizes` ascending, e.g. the hidden widths of MLP ratios
/// 3, 3.5, 4 at the active embed dim). With a one-hot policy `p` for option `j`, `p' = M p` has
/// ones on levels `0..=j`, so every active unit gets 1.
///
/// ```
/// use nas_sdk::elastic::expand_levels;
/// use tch::Tensor;
/// let units = expand_levels(&Tensor::from_slice(&[1.0f32, 0.5, 0.25]), &[2, 3, 5]);
/// assert_eq!(Vec::<f32>::try_from(&units).unwrap(), [1.0, 1.0, 0.5, 0.25, 0.25]);
/// ```
pub fn expand_levels(level_gate: &Tensor, level_sizes: &[i64]) -> Tensor {
    let mut owner = Vec::new();
    let mut previous = 0;
    for (level, &size) in level_sizes.iter().enumerate() {
        assert!(size >= previous, "level sizes must be ascending");
        owner.extend(std::iter::repeat_n(
            level as i64,
            (size - previous) as usize,
        ));
        previous = size;
    }
    let index = Tensor::from_slice(&owner).to_device(level_gate.device());
    level_gate.index_select(0, &index)
}
