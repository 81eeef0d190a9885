//! The C API of `shim.cpp`, wrapped so each call returns the C++ error message as a `String`.
//!
//! Built without the shim (no gloo headers at build time), every call returns an error instead;
//! [`crate::ProcessGroup::new`] reports that as `DistError::Unavailable` before any call here.

use std::ffi::c_void;
use std::ptr::NonNull;

/// An open process group in the shim (a `Group*`).
pub(crate) type Handle = NonNull<c_void>;

/// What `GlooDevice` becomes across the C API: a kind and its argument.
#[cfg_attr(not(nas_c10d), allow(dead_code))] // only the shim reads it
pub(crate) struct Device<'a> {
    /// 0 default, 1 host name, 2 interfaces.
    pub kind: i32,
    pub arg: &'a str,
}

/// Everything `nas_c10d_group_new` needs.
#[cfg_attr(not(nas_c10d), allow(dead_code))] // only the shim reads it
pub(crate) struct GroupSpec<'a> {
    pub host: &'a str,
    pub port: u16,
    pub is_server: bool,
    pub rank: i32,
    pub world_size: i32,
    pub timeout_ms: i64,
    pub prefix: &'a str,
    pub device: Device<'a>,
}

#[cfg(nas_c10d)]
mod imp {
    use std::ffi::{c_char, c_int, c_void, CStr, CString};
    use std::ptr::NonNull;

    use torch_sys::C_tensor;

    use super::{GroupSpec, Handle};

    /// Room for the C++ side's error message (longer ones are truncated).
    const ERROR_CAPACITY: usize = 8192;

    extern "C" {
        fn nas_c10d_group_new(
            host: *const c_char,
            port: u16,
            is_server: c_int,
            rank: c_int,
            world_size: c_int,
            timeout_ms: i64,
            prefix: *const c_char,
            device_kind: c_int,
            device_arg: *const c_char,
            out: *mut *mut c_void,
            err: *mut c_char,
            err_len: usize,
        ) -> c_int;
        fn nas_c10d_all_reduce_sum(
            handle: *mut c_void,
            tensors: *const *const C_tensor,
            count: usize,
            err: *mut c_char,
            err_len: usize,
        ) -> c_int;
        fn nas_c10d_broadcast(
            handle: *mut c_void,
            tensors: *const *const C_tensor,
            count: usize,
            root: c_int,
            err: *mut c_char,
            err_len: usize,
        ) -> c_int;
        fn nas_c10d_barrier(handle: *mut c_void, err: *mut c_char, err_len: usize) -> c_int;
        fn nas_c10d_group_free(handle: *mut c_void, err: *mut c_char, err_len: usize) -> c_int;
    }

    /// Calls `f` with an error buffer; `Err` holds the message when it returns non-zero.
    fn call(f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), String> {
        let mut buffer = vec![0 as c_char; ERROR_CAPACITY];
        if f(buffer.as_mut_ptr(), buffer.len()) == 0 {
            return Ok(());
        }
        // SAFETY: the shim always NUL-terminates within the buffer (and it starts zeroed).
        let message = unsafe { CStr::from_ptr(buffer.as_ptr()) };
        let message = message.to_string_lossy();
        let message = message
            .trim()
            .trim_end_matches(['.', '!'])
            .trim_end()
            .to_owned();
        Err(if message.is_empty() {
            "the C++ side reported an error without a message".to_owned()
        } else {
            message
        })
    }

    fn c_string(what: &str, text: &str) -> Result<CString, String> {
        CString::new(text).map_err(|_| format!("{what} `{text}` contains a NUL byte"))
    }

    pub(crate) fn group_new(spec: &GroupSpec<'_>) -> Result<Handle, String> {
        let host = c_string("MASTER_ADDR", spec.host)?;
        let prefix = c_string("store prefix", spec.prefix)?;
        let arg = c_string("Gloo device", spec.device.arg)?;
        let mut out: *mut c_void = std::ptr::null_mut();
        call(|err, len| {
            // SAFETY: every pointer is valid for the call; the shim writes `out` only on success.
            unsafe {
                nas_c10d_group_new(
                    host.as_ptr(),
                    spec.port,
                    c_int::from(spec.is_server),
                    spec.rank,
                    spec.world_size,
                    spec.timeout_ms,
                    prefix.as_ptr(),
                    spec.device.kind,
                    arg.as_ptr(),
                    &mut out,
                    err,
                    len,
                )
            }
        })?;
        NonNull::new(out).ok_or_else(|| "the C++ side returned no process group".to_owned())
    }

    pub(crate) fn all_reduce_sum(
        handle: Handle,
        tensors: &[*const C_tensor],
    ) -> Result<(), String> {
        // SAFETY: `handle` is live and the tensor pointers are borrowed from live `tch::Tensor`s.
        call(|err, len| unsafe {
            nas_c10d_all_reduce_sum(handle.as_ptr(), tensors.as_ptr(), tensors.len(), err, len)
        })
    }

    pub(crate) fn broadcast(
        handle: Handle,
        tensors: &[*const C_tensor],
        root: i32,
    ) -> Result<(), String> {
        // SAFETY: as in `all_reduce_sum`.
        call(|err, len| unsafe {
            nas_c10d_broadcast(
                handle.as_ptr(),
                tensors.as_ptr(),
                tensors.len(),
                root,
                err,
                len,
            )
        })
    }

    pub(crate) fn barrier(handle: Handle) -> Result<(), String> {
        // SAFETY: `handle` is live.
        call(|err, len| unsafe { nas_c10d_barrier(handle.as_ptr(), err, len) })
    }

    pub(crate) fn group_free(handle: Handle) -> Result<(), String> {
        // SAFETY: `handle` is live and not used again.
        call(|err, len| unsafe { nas_c10d_group_free(handle.as_ptr(), err, len) })
    }
}

#[cfg(not(nas_c10d))]
mod imp {
    use torch_sys::C_tensor;

    use super::{GroupSpec, Handle};

    const MISSING: &str = "nas-dist was built without its c10d shim";

    pub(crate) fn group_new(_spec: &GroupSpec<'_>) -> Result<Handle, String> {
        Err(MISSING.to_owned())
    }

    pub(crate) fn all_reduce_sum(
        _handle: Handle,
        _tensors: &[*const C_tensor],
    ) -> Result<(), String> {
        Err(MISSING.to_owned())
    }

    pub(crate) fn broadcast(
        _handle: Handle,
        _tensors: &[*const C_tensor],
        _root: i32,
    ) -> Result<(), String> {
        Err(MISSING.to_owned())
    }

    pub(crate) fn barrier(_handle: Handle) -> Result<(), String> {
        Err(MISSING.to_owned())
    }

    pub(crate) fn group_free(_handle: Handle) -> Result<(), String> {
        Err(MISSING.to_owned())
    }
}

pub(crate) use imp::{all_reduce_sum, barrier, broadcast, group_free, group_new};

/// Whether this build has the shim.
pub(crate) const AVAILABLE: bool = cfg!(nas_c10d);

/// A borrowed `at::Tensor*`, as `tch::Tensor::as_ptr` gives it.
pub(crate) type TensorPtr = *const torch_sys::C_tensor;
