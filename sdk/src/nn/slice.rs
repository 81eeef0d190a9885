//! Slicing a layer's full-size tensors to an active (elastic) size; re-exported by
//! [`crate::elastic`].

use tch::Tensor;

/// The first `len` entries of `tensor` along `dim` (a view; the tensor itself when it already
/// has that length, so a layer at its full size runs exactly the plain op).
pub fn first(tensor: &Tensor, dim: i64, len: i64) -> Tensor {
    let size = tensor.size()[dim as usize];
    assert!(
        len <= size,
        "elastic slice of {len} along dim {dim} exceeds the layer's {size}"
    );
    if len == size {
        tensor.shallow_clone()
    } else {
        tensor.narrow(dim, 0, len)
    }
}

/// A detached, contiguous copy of the leading block of `tensor` with sizes `shape` (one entry per
/// leading dimension; trailing dimensions are kept whole): the plain weight of a sliced layer.
pub fn plain(tensor: &Tensor, shape: &[i64]) -> Tensor {
    let mut view = tensor.shallow_clone();
    for (dim, &len) in shape.iter().enumerate() {
        view = first(&view, dim as i64, len);
    }
    view.detach().contiguous().copy()
}
