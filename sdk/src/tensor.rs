//! Tensors crossing the plugin boundary.
//!
//! The host and every plugin link the same shared libtorch, so an `at::Tensor` created on one
//! side is valid on the other; only the pointer to it crosses. Two types carry it:
//!
//! - [`TensorHandle`] **owns** one heap-allocated `at::Tensor` (a reference-counted handle to the
//!   storage and autograd metadata, exactly what a [`tch::Tensor`] owns). Dropping the handle
//!   frees that `at::Tensor` object, which decrements libtorch's reference count; the storage lives
//!   on while any other handle or `tch::Tensor` refers to it.
//! - [`TensorRef`] **borrows** a tensor for the duration of one call; the callee must not keep it.
//!   To keep a tensor it received, a callee calls [`TensorRef::to_tensor`], which makes a shallow
//!   clone (new `at::Tensor` object, same storage, same autograd identity).
//!
//! Conversions never copy data, and gradients flow across the boundary as they would inside one
//! program, because autograd state lives in libtorch, not in either side's Rust code.

use std::{ffi::c_void, marker::PhantomData, ptr::NonNull};

use abi_stable::StableAbi;
use tch::Tensor;

/// An owned tensor that can cross the plugin boundary.
///
/// ```
/// use nas_sdk::TensorHandle;
/// let handle = TensorHandle::new(tch::Tensor::from_slice(&[1.0f32, 2.0]));
/// let back: tch::Tensor = handle.into_tensor();
/// assert_eq!(back.size(), vec![2]);
/// ```
#[repr(transparent)]
#[derive(StableAbi)]
pub struct TensorHandle {
    raw: NonNull<c_void>,
}

// SAFETY: the handle owns a libtorch tensor object like `tch::Tensor` does, which is `Send`.
unsafe impl Send for TensorHandle {}

impl TensorHandle {
    /// Takes ownership of `tensor` without copying it.
    pub fn new(mut tensor: Tensor) -> Self {
        let raw = NonNull::new(tensor.as_mut_ptr() as *mut c_void)
            .expect("tch::Tensor always holds a non-null pointer");
        std::mem::forget(tensor);
        TensorHandle { raw }
    }

    /// Gives the tensor back as a `tch::Tensor`, without copying it.
    pub fn into_tensor(self) -> Tensor {
        let raw = self.raw.as_ptr();
        std::mem::forget(self);
        // SAFETY: `raw` came from `Tensor::as_mut_ptr` of a tensor whose ownership we took.
        unsafe { Tensor::from_ptr(raw as *mut torch_sys::C_tensor) }
    }

    /// A shallow clone as a `tch::Tensor` (same storage and autograd identity); `self` stays valid.
    pub fn to_tensor(&self) -> Tensor {
        self.as_ref().to_tensor()
    }

    /// Borrows the tensor for one call across the boundary.
    pub fn as_ref(&self) -> TensorRef<'_> {
        TensorRef {
            raw: self.raw,
            _borrow: PhantomData,
        }
    }
}

impl Drop for TensorHandle {
    fn drop(&mut self) {
        // SAFETY: we own this at::Tensor; rebuilding the tch::Tensor and dropping it frees it.
        drop(unsafe { Tensor::from_ptr(self.raw.as_ptr() as *mut torch_sys::C_tensor) });
    }
}

impl From<Tensor> for TensorHandle {
    fn from(tensor: Tensor) -> Self {
        TensorHandle::new(tensor)
    }
}

impl std::fmt::Debug for TensorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tensor = self.as_ref();
        write!(f, "TensorHandle({:?})", tensor.with(|t| t.size()))
    }
}

/// A tensor borrowed for the duration of one call across the boundary.
///
/// ```
/// use nas_sdk::TensorRef;
/// let tensor = tch::Tensor::ones([2, 3], (tch::Kind::Float, tch::Device::Cpu));
/// let borrowed = TensorRef::from_tensor(&tensor);
/// assert_eq!(borrowed.with(|t| t.size()), vec![2, 3]);
/// ```
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy)]
pub struct TensorRef<'a> {
    raw: NonNull<c_void>,
    _borrow: PhantomData<&'a ()>,
}

impl<'a> TensorRef<'a> {
    /// Borrows a `tch::Tensor`.
    pub fn from_tensor(tensor: &'a Tensor) -> Self {
        let raw = NonNull::new(tensor.as_ptr() as *mut c_void)
            .expect("tch::Tensor always holds a non-null pointer");
        TensorRef {
            raw,
            _borrow: PhantomData,
        }
    }

    /// Runs `f` on a temporary `tch::Tensor` view of the borrowed tensor (no clone, no copy).
    pub fn with<R>(&self, f: impl FnOnce(&Tensor) -> R) -> R {
        // SAFETY: the pointer is valid for 'a; ManuallyDrop keeps us from freeing what we borrow.
        let tensor = std::mem::ManuallyDrop::new(unsafe {
            Tensor::from_ptr(self.raw.as_ptr() as *mut torch_sys::C_tensor)
        });
        f(&tensor)
    }

    /// A shallow clone the callee may keep (same storage and autograd identity).
    pub fn to_tensor(&self) -> Tensor {
        self.with(|t| t.shallow_clone())
    }
}

/// A tensor with a name, as in a state dict (`cells.3.edges.2.conv.weight`).
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct NamedTensor {
    /// Dotted name, unique within its list.
    pub name: abi_stable::std_types::RString,
    /// The tensor (a shallow handle: updating it in place updates the plugin's tensor).
    pub tensor: TensorHandle,
}

impl NamedTensor {
    /// Wraps a name and a tensor.
    pub fn new(name: impl Into<String>, tensor: Tensor) -> Self {
        NamedTensor {
            name: name.into().into(),
            tensor: TensorHandle::new(tensor),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_round_trip_shares_storage() {
        let original = Tensor::zeros([3], (tch::Kind::Float, tch::Device::Cpu));
        let handle = TensorHandle::new(original.shallow_clone());
        let _ = handle.to_tensor().fill_(2.0);
        assert_eq!(original.double_value(&[1]), 2.0);
        let back = handle.into_tensor();
        assert_eq!(back.double_value(&[0]), 2.0);
    }

    #[test]
    fn gradients_flow_through_handles() {
        let x = Tensor::from_slice(&[3.0f32]).set_requires_grad(true);
        let handle = TensorHandle::new(x.shallow_clone());
        let y = handle.as_ref().with(|t| t * t);
        y.backward();
        assert_eq!(x.grad().double_value(&[0]), 6.0);
    }
}
