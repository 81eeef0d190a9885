//! Choosing the device at run time: the CPU, or CUDA when present.

use anyhow::{bail, Context, Result};
use tch::Device;

/// libtorch's library folder, recorded at build time.
const LIBTORCH_LIB_DIR: &str = env!("NAS_LIBTORCH_LIB_DIR");

/// Makes libtorch's CUDA backend available if the libtorch build has one. `nas` links only
/// libtorch's CPU library (the linker drops unused libraries), so the CUDA library is loaded on
/// demand; this is the only GPU-specific code path of the host.
fn load_cuda_backend() -> bool {
    if tch::Cuda::is_available() {
        return true;
    }
    let library = std::path::Path::new(LIBTORCH_LIB_DIR).join("libtorch_cuda.so");
    if !library.is_file() {
        return false;
    }
    // SAFETY: libtorch's own CUDA library, from the folder the binary was linked against;
    // its initialisers register the CUDA backend with libtorch. Kept loaded for the process.
    match unsafe { libloading::Library::new(&library) } {
        Ok(lib) => {
            std::mem::forget(lib);
            tch::Cuda::is_available()
        }
        Err(_) => false,
    }
}

/// Parses `auto`, `cpu`, `cuda` or `cuda:N`.
pub fn select(spec: &str) -> Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(if load_cuda_backend() {
            Device::Cuda(0)
        } else {
            Device::Cpu
        }),
        _ => {
            let index = match spec {
                "cuda" => 0,
                other => other
                    .strip_prefix("cuda:")
                    .and_then(|i| i.parse::<usize>().ok())
                    .with_context(|| {
                        format!(
                            "config field `run.device`: `{other}` is not auto, cpu, cuda or cuda:N"
                        )
                    })?,
            };
            if !load_cuda_backend() {
                bail!("config field `run.device` asks for `{spec}`, but no CUDA device is available (libtorch at {LIBTORCH_LIB_DIR}); use `cpu` or `auto`");
            }
            let count = tch::Cuda::device_count() as usize;
            if index >= count {
                bail!("config field `run.device`: `{spec}` but only {count} CUDA device(s) exist");
            }
            Ok(Device::Cuda(index))
        }
    }
}

/// A short name for results (`cpu`, `cuda:0`).
pub fn name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}

/// Sets libtorch's intra-op threads (`run.threads`; 0 keeps libtorch's default).
pub fn set_threads(threads: usize) {
    if threads > 0 {
        tch::set_num_threads(threads as i32);
    }
}
