//! PyTorch's own c10d process groups for data-parallel training, from Rust.
//!
//! `nas-dist` binds the c10d classes inside the libtorch that `tch` links (`TCPStore`,
//! `PrefixStore`, `ProcessGroupGloo`) through a small C++ shim (`src/shim.cpp`), so processes of
//! one run exchange `tch` tensors with the same collectives, wire protocol and timeouts PyTorch's
//! `torch.distributed` uses.
//!
//! # Launching
//!
//! A run is started by torchrun (or `nas launch`), which gives every process its place in the
//! environment; [`Launch::from_env`] reads it:
//!
//! | variable | meaning |
//! |---|---|
//! | `WORLD_SIZE` | number of processes; unset or 1 means a single-process run (`Ok(None)`) |
//! | `RANK` | this process's rank, `0..WORLD_SIZE` |
//! | `LOCAL_RANK` | this process's index on its machine (picks the GPU) |
//! | `MASTER_ADDR`, `MASTER_PORT` | where the rendezvous store listens |
//! | `TORCHELASTIC_USE_AGENT_STORE` | `True` when torchrun's agent hosts the store (optional) |
//! | `GLOO_SOCKET_IFNAME` | network interfaces for Gloo, comma-separated (optional) |
//!
//! # The rendezvous store
//!
//! The processes find each other through a c10d `TCPStore` at `MASTER_ADDR:MASTER_PORT`. When
//! torchrun's agent hosts it (`TORCHELASTIC_USE_AGENT_STORE=True`, torchrun's default) every rank
//! connects as a client; otherwise rank 0 hosts it and the others connect to rank 0 (as
//! `torch.distributed`'s `env://` does). Each [`ProcessGroup`] keeps its keys under its own
//! prefix, so a process may open several groups one after the other (all ranks in the same
//! order).
//!
//! # Gloo and NCCL
//!
//! Groups use Gloo, which exchanges CPU tensors over TCP. Gloo binds to the interfaces in
//! `GLOO_SOCKET_IFNAME` when set, to loopback when `MASTER_ADDR` is a loopback address (a run on
//! one machine), else to the address this machine's host name resolves to
//! ([`Launch::gloo_device`]); across machines whose host names resolve to loopback, set
//! `GLOO_SOCKET_IFNAME`.
//!
//! NCCL (GPU collectives) is **not built yet**: compiling `ProcessGroupNCCL` needs CUDA's and
//! NCCL's headers and a GPU to test it on, and an untested path is worse than none. CUDA tensors
//! may still go through Gloo if this libtorch's Gloo supports them (through host memory).
//!
//! # Timeouts and failures
//!
//! [`ProcessGroup::new`] takes one timeout that bounds joining (connecting to the store, meeting
//! every rank) and every collective: a rank that dies, hangs or skips a collective makes the
//! others' call return [`DistError::Collective`] (carrying c10d's own message, e.g. a closed
//! connection or "timed out") instead of hanging or aborting the process.
//!
//! # Tensors are exchanged in place
//!
//! Collectives read and write each tensor's own storage: after [`ProcessGroup::all_reduce_sum`]
//! the tensors you passed hold the sums. Tensors must therefore be defined and contiguous (a
//! strided view would leave its base untouched), and all of one call's tensors on one kind of
//! device; calls are checked and fail with [`DistError::InvalidTensor`] otherwise. Every rank
//! must make the same calls in the same order, with tensors of the same shapes and kinds.
//!
//! # Building
//!
//! The shim is compiled against libtorch's headers (beside the library torch-sys links) and
//! gloo's headers, which PyTorch's wheel lacks: `scripts/setup.sh` fetches Debian's
//! `libgloo-dev` headers into `.deps/gloo`, or set `NAS_GLOO_INCLUDE`. Without them the crate
//! still builds, with a cargo warning, and [`ProcessGroup::new`] returns
//! [`DistError::Unavailable`]; [`available`] tells which build this is.

#![warn(missing_docs)]

mod launch;
mod sys;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tch::{Device, Tensor};

pub use launch::{GlooDevice, Launch};

/// Why a process group could not be joined or a collective failed.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// This build has no c10d shim (gloo's headers were missing when it was compiled).
    #[error("data-parallel training is unavailable: nas-dist was built without its c10d shim ({reason})")]
    Unavailable {
        /// Why the shim was not built, and how to get it built.
        reason: String,
    },
    /// A launch variable is missing or malformed.
    #[error("{}", env_message(variable, value.as_deref(), reason))]
    Env {
        /// The variable, e.g. `RANK`.
        variable: &'static str,
        /// Its value, `None` when unset.
        value: Option<String>,
        /// What it must be.
        reason: String,
    },
    /// Joining the process group failed (store unreachable, a rank missing, a bad device).
    #[error(
        "joining the process group as rank {rank} of {world_size} through the store at {address} failed: {message}. Check that every rank runs with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE, that the store's host can bind the port and the others reach it, and that all ranks start within the timeout"
    )]
    Init {
        /// This process's rank.
        rank: usize,
        /// Number of processes.
        world_size: usize,
        /// `MASTER_ADDR:MASTER_PORT`.
        address: String,
        /// c10d's message.
        message: String,
    },
    /// A collective failed: another rank died, hung past the timeout, or made different calls.
    #[error(
        "{op} failed: {message}. A rank that died, stalled past the timeout or made different collective calls fails the others here: check the other ranks' output (raise the timeout only if a rank is merely slow)"
    )]
    Collective {
        /// The collective and this process's place, e.g. `all_reduce_sum of 2 tensors (rank 0
        /// of 2, timeout 5s)`.
        op: String,
        /// c10d's message (timeouts included).
        message: String,
    },
    /// A tensor handed to a collective cannot be exchanged in place.
    #[error("{op}: tensor {index} {reason}")]
    InvalidTensor {
        /// The collective.
        op: &'static str,
        /// The tensor's position in the list.
        index: usize,
        /// What is wrong with it and what to do.
        reason: String,
    },
    /// An argument outside what c10d accepts (timeout, broadcast root, sizes).
    #[error("{0}")]
    InvalidArgument(String),
}

fn env_message(variable: &str, value: Option<&str>, reason: &str) -> String {
    match value {
        None => format!("environment variable {variable} is not set: {reason}"),
        Some(value) => {
            format!("environment variable {variable}={value:?} is invalid: {reason}")
        }
    }
}

/// Whether this build has the c10d shim (gloo's headers were found at build time).
pub fn available() -> bool {
    sys::AVAILABLE
}

/// Counts the groups this process opened, so each keeps its store keys under its own prefix.
static GROUPS_OPENED: AtomicU64 = AtomicU64::new(0);

/// A Gloo process group: this process's handle on collectives with the other ranks.
///
/// Not `Sync`: collectives must be issued in the same order on every rank, so one thread issues
/// them. Dropping the group leaves it (waiting, at most the timeout, for its worker threads).
#[derive(Debug)]
pub struct ProcessGroup {
    handle: sys::Handle,
    rank: usize,
    world_size: usize,
    timeout: Duration,
}

// SAFETY: the shim's group (c10d's ProcessGroupGloo and its store) may be used from any thread;
// `ProcessGroup` is not `Sync`, so calls never overlap.
unsafe impl Send for ProcessGroup {}

impl ProcessGroup {
    /// Joins the process group `launch` describes: connects to (or, on rank 0 without an agent
    /// store, hosts) the rendezvous store and meets every rank. `timeout` bounds joining and
    /// every later collective (at least 1 ms).
    pub fn new(launch: &Launch, timeout: Duration) -> Result<ProcessGroup, DistError> {
        if !available() {
            return Err(DistError::Unavailable {
                reason: option_env!("NAS_DIST_UNAVAILABLE")
                    .unwrap_or("gloo's headers were missing; run scripts/setup.sh, then rebuild")
                    .to_owned(),
            });
        }
        let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        if timeout_ms < 1 {
            return Err(DistError::InvalidArgument(format!(
                "the process group timeout must be at least 1 ms, got {timeout:?}"
            )));
        }
        let too_large = |what: &str, value: usize| {
            DistError::InvalidArgument(format!("{what} {value} is too large for c10d"))
        };
        let rank = i32::try_from(launch.rank).map_err(|_| too_large("rank", launch.rank))?;
        let world_size = i32::try_from(launch.world_size)
            .map_err(|_| too_large("world size", launch.world_size))?;
        if launch.rank >= launch.world_size {
            return Err(DistError::InvalidArgument(format!(
                "rank {} is outside a world of {} processes",
                launch.rank, launch.world_size
            )));
        }
        let device = launch.gloo_device();
        let (kind, arg) = match &device {
            GlooDevice::Default => (0, ""),
            GlooDevice::Hostname(host) => (1, host.as_str()),
            GlooDevice::Interfaces(names) => (2, names.as_str()),
        };
        let prefix = format!(
            "nas/group{}/",
            GROUPS_OPENED.fetch_add(1, Ordering::Relaxed)
        );
        let spec = sys::GroupSpec {
            host: &launch.master_addr,
            port: launch.master_port,
            is_server: launch.hosts_store(),
            rank,
            world_size,
            timeout_ms,
            prefix: &prefix,
            device: sys::Device { kind, arg },
        };
        let handle = sys::group_new(&spec).map_err(|message| DistError::Init {
            rank: launch.rank,
            world_size: launch.world_size,
            address: format!("{}:{}", launch.master_addr, launch.master_port),
            message,
        })?;
        Ok(ProcessGroup {
            handle,
            rank: launch.rank,
            world_size: launch.world_size,
            timeout,
        })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of processes in the group.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// The timeout bounding every collective.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Replaces each tensor, in place, by its sum over the ranks.
    pub fn all_reduce_sum(&self, tensors: &[Tensor]) -> Result<(), DistError> {
        const OP: &str = "all_reduce_sum";
        let pointers = check_tensors(OP, tensors)?;
        if pointers.is_empty() {
            return Ok(());
        }
        sys::all_reduce_sum(self.handle, &pointers)
            .map_err(|message| self.collective_error(OP, tensors.len(), message))
    }

    /// Replaces each tensor, in place, by its mean over the ranks (the sum divided by the world
    /// size). The tensors must be floating point.
    pub fn all_reduce_mean(&self, tensors: &[Tensor]) -> Result<(), DistError> {
        const OP: &str = "all_reduce_mean";
        check_tensors(OP, tensors)?;
        for (index, tensor) in tensors.iter().enumerate() {
            if !tensor.is_floating_point() {
                return Err(DistError::InvalidTensor {
                    op: OP,
                    index,
                    reason: format!(
                        "has kind {:?}, but a mean needs floating-point tensors; use all_reduce_sum and divide yourself",
                        tensor.kind()
                    ),
                });
            }
        }
        self.all_reduce_sum(tensors)?;
        let divisor = self.world_size as f64;
        tch::no_grad(|| {
            for (index, tensor) in tensors.iter().enumerate() {
                tensor
                    .shallow_clone()
                    .f_div_scalar_(divisor)
                    // The returned handle is the same tensor, already divided in place.
                    .map(drop)
                    .map_err(|error| DistError::InvalidTensor {
                        op: OP,
                        index,
                        reason: format!("could not be divided by the world size in place: {error}"),
                    })?;
            }
            Ok(())
        })
    }

    /// Overwrites each tensor, in place, with rank `root`'s.
    pub fn broadcast(&self, tensors: &[Tensor], root: usize) -> Result<(), DistError> {
        const OP: &str = "broadcast";
        if root >= self.world_size {
            return Err(DistError::InvalidArgument(format!(
                "broadcast root {root} is outside a world of {} processes",
                self.world_size
            )));
        }
        let pointers = check_tensors(OP, tensors)?;
        if pointers.is_empty() {
            return Ok(());
        }
        // `root < world_size`, which fits an i32 (checked when the group was made).
        sys::broadcast(self.handle, &pointers, root as i32)
            .map_err(|message| self.collective_error(OP, tensors.len(), message))
    }

    /// Returns once every rank has called `barrier` (and this rank's earlier collectives are done).
    pub fn barrier(&self) -> Result<(), DistError> {
        sys::barrier(self.handle).map_err(|message| DistError::Collective {
            op: format!(
                "barrier (rank {} of {}, timeout {:?})",
                self.rank, self.world_size, self.timeout
            ),
            message,
        })
    }

    fn collective_error(&self, op: &str, count: usize, message: String) -> DistError {
        DistError::Collective {
            op: format!(
                "{op} of {count} tensor{} (rank {} of {}, timeout {:?})",
                if count == 1 { "" } else { "s" },
                self.rank,
                self.world_size,
                self.timeout
            ),
            message,
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Err(message) = sys::group_free(self.handle) {
            eprintln!(
                "warning: nas-dist: leaving the process group (rank {} of {}) failed: {message}",
                self.rank, self.world_size
            );
        }
    }
}

/// Checks that `tensors` can be exchanged in place and returns their `at::Tensor` pointers.
fn check_tensors(op: &'static str, tensors: &[Tensor]) -> Result<Vec<sys::TensorPtr>, DistError> {
    let invalid = |index: usize, reason: String| DistError::InvalidTensor { op, index, reason };
    let mut first_device: Option<Device> = None;
    let mut pointers = Vec::with_capacity(tensors.len());
    for (index, tensor) in tensors.iter().enumerate() {
        if !tensor.defined() {
            return Err(invalid(
                index,
                "is undefined; pass a tensor with storage (e.g. zeros for a missing gradient)"
                    .to_owned(),
            ));
        }
        if !tensor.is_contiguous() {
            return Err(invalid(
                index,
                "is not contiguous; collectives work in place on a tensor's own storage, so pass a contiguous tensor (copy it with .contiguous() and copy the result back)".to_owned(),
            ));
        }
        let device = tensor.device();
        match first_device {
            None => first_device = Some(device),
            Some(first) if std::mem::discriminant(&first) != std::mem::discriminant(&device) => {
                return Err(invalid(
                    index,
                    format!(
                        "is on {device:?} but tensor 0 is on {first:?}; one call's tensors must all be on one kind of device"
                    ),
                ));
            }
            Some(_) => {}
        }
        pointers.push(tensor.as_ptr());
    }
    Ok(pointers)
}
