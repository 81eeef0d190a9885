//! Elastic kernel sizes: centre crops of the largest kernel and the ring mask of a kernel gate.

use tch::Tensor;

/// The centre `kernel x kernel` crop of `weight` (`[.., K, K]`), a view.
pub fn centre_crop(weight: &Tensor, kernel: i64) -> Tensor {
    let full = *weight
        .size()
        .last()
        .expect("a kernel has spatial dimensions");
    assert!(
        kernel <= full && (full - kernel) % 2 == 0,
        "kernel {kernel} is not a centre crop of {full}"
    );
    if kernel == full {
        return weight.shallow_clone();
    }
    let start = (full - kernel) / 2;
    let dims = weight.dim() as i64;
    weight
        .narrow(dims - 2, start, kernel)
        .narrow(dims - 1, start, kernel)
}

/// The kernel-size mask of a ring gate: `[kernel, kernel]` where position `(i, j)` gets the gate
/// of the smallest option in `kernel_options` (ascending odd sizes) whose centre crop contains it.
/// With ones on the active and smaller options the mask is all ones.
pub fn kernel_ring_mask(kernel: i64, kernel_options: &[i64], gate: &Tensor) -> Tensor {
    let centre = kernel / 2;
    let mut owner = Vec::with_capacity((kernel * kernel) as usize);
    for i in 0..kernel {
        for j in 0..kernel {
            let reach = 2 * (i - centre).abs().max((j - centre).abs()) + 1;
            let ring = kernel_options
                .iter()
                .position(|&k| k >= reach)
                .expect("the kernel is among the options");
            owner.push(ring as i64);
        }
    }
    let index = Tensor::from_slice(&owner).to_device(gate.device());
    gate.index_select(0, &index).view([kernel, kernel])
}
