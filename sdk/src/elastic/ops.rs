//! Elastic depth (a gated residual) and elastic resolution (a resize).

use tch::Tensor;

/// `x + gate * branch`: a residual block that elastic depth can drop (the space skips blocks
/// past the active depth; the gate of an active block is 1 in the forward pass).
pub fn residual(x: &Tensor, branch: &Tensor, gate: Option<&Tensor>) -> Tensor {
    match gate {
        Some(gate) => x + branch * gate,
        None => x + branch,
    }
}

/// Bilinear resize of `[n, c, h, w]` to `resolution x resolution` (elastic resolution; the input
/// itself when it already has that size).
pub fn resize(x: &Tensor, resolution: i64) -> Tensor {
    let size = x.size();
    if size[2] == resolution && size[3] == resolution {
        return x.shallow_clone();
    }
    x.upsample_bilinear2d([resolution, resolution], false, None, None)
}
