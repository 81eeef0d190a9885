//! Data-parallel training across processes: what the trainer asks of a c10d process group.
//!
//! A run launched by torchrun (`RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`) with more than
//! one process joins a process group (Gloo on CPU, `nas-dist`). Every rank builds the same
//! supernet and plans the same subnets (samplers and generators draw from streams seeded by run
//! seed and step, and their state evolves from the same, all-reduced, feedback); the data is
//! sharded so each rank takes its slice of every global batch; after the backward pass the
//! gradients are averaged in flattened buckets, once per step, so every rank applies the same
//! update. Only rank 0 writes the run folder.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use nas_dist::{Launch, ProcessGroup};
use tch::{Kind, Tensor};

/// Elements per all-reduce bucket (16 MiB of `f32`): large enough to amortise a collective's
/// latency, small enough not to double the memory of a large supernet at once.
const BUCKET_ELEMENTS: i64 = 4 << 20;

/// This process's place in a data-parallel run.
pub struct Distributed {
    group: ProcessGroup,
    launch: Launch,
}

impl Distributed {
    /// Joins the process group described by torchrun's environment; `None` for a single-process
    /// run (no `WORLD_SIZE`, or 1). `timeout` bounds every collective, so a rank that dies makes
    /// the others fail instead of hanging.
    pub fn from_env(timeout: Duration) -> Result<Option<Self>> {
        let Some(launch) = Launch::from_env().context("reading torchrun's environment")? else {
            return Ok(None);
        };
        let group = ProcessGroup::new(&launch, timeout).with_context(|| {
            format!(
                "joining the process group as rank {} of {} at {}:{}",
                launch.rank, launch.world_size, launch.master_addr, launch.master_port
            )
        })?;
        Ok(Some(Distributed { group, launch }))
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.launch.rank
    }

    /// Number of processes.
    pub fn world_size(&self) -> usize {
        self.launch.world_size
    }

    /// The rank on this machine (picks the GPU when there are several).
    pub fn local_rank(&self) -> usize {
        self.launch.local_rank
    }

    /// Refuses to start when the ranks' configs differ: each rank compares its trajectory hash
    /// with rank 0's, and all learn whether any differed, so every rank stops with the reason.
    pub fn check_same_config(&self, hash: &str) -> Result<()> {
        let value = u64::from_str_radix(hash, 16)
            .with_context(|| format!("config hash `{hash}` is not hexadecimal"))?;
        let comparison = self.compare_with_rank0(value, "config hash")?;
        if comparison.rank0 != value {
            bail!(
                "rank {}'s config (hash {hash}) differs from rank 0's (hash {:016x}); every rank must run the same config (check the --set arguments and config file of each)",
                self.rank(),
                comparison.rank0
            );
        }
        if comparison.differing > 0 {
            let count = comparison.differing;
            bail!(
                "{count} rank(s) run a config that differs from rank 0's (hash {hash}); see their errors, and give every rank the same config"
            );
        }
        Ok(())
    }

    /// Makes every rank start from rank 0's tensors (parameters, buffers, optimizer state).
    pub fn broadcast_from_rank0(&self, tensors: &[Tensor]) -> Result<()> {
        for_buckets(tensors, |flat| {
            self.group
                .broadcast(&[flat.shallow_clone()], 0)
                .context("broadcasting rank 0's tensors")
        })
    }

    /// Averages the gradients of `params` over the ranks, in place. A parameter without a
    /// gradient contributes zeros; if it then receives a non-zero average, another rank trained a
    /// different subnet, which is an error (the ranks must plan identically).
    pub fn average_gradients(&self, params: &[Tensor]) -> Result<()> {
        let grads: Vec<(Tensor, bool)> = params
            .iter()
            .map(|p| {
                let grad = p.grad();
                if grad.defined() {
                    (grad, true)
                } else {
                    (p.zeros_like(), false)
                }
            })
            .collect();
        let tensors: Vec<Tensor> = grads.iter().map(|(g, _)| g.shallow_clone()).collect();
        for_buckets(&tensors, |flat| {
            self.group
                .all_reduce_mean(&[flat.shallow_clone()])
                .context("averaging gradients over the ranks")
        })?;
        for (index, (grad, defined)) in grads.iter().enumerate() {
            if !defined && grad.abs().max().double_value(&[]) != 0.0 {
                bail!(
                    "parameter {index} has no gradient on rank {} but a non-zero one on another rank: the ranks trained different subnets (a sampler or generator whose draws are not seeded by run seed and step?)",
                    self.rank()
                );
            }
        }
        Ok(())
    }

    /// Whether `flag` is set on any rank (so all ranks stop at the same step on an interrupt).
    pub fn any(&self, flag: bool) -> Result<bool> {
        let count = Tensor::from_slice(&[i64::from(flag)]);
        self.group
            .all_reduce_sum(&[count.shallow_clone()])
            .context("agreeing on an interrupt")?;
        Ok(count.int64_value(&[0]) > 0)
    }

    /// The mean of each value over the ranks (losses, for the log).
    pub fn average(&self, values: &[f64]) -> Result<Vec<f64>> {
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let tensor = Tensor::from_slice(values);
        self.group
            .all_reduce_mean(&[tensor.shallow_clone()])
            .context("averaging values over the ranks")?;
        Ok(Vec::<f64>::try_from(&tensor).expect("f64 tensor"))
    }

    /// Fails unless every rank holds bit-identical `tensors` (parameters, buffers, optimizer
    /// state): each rank hashes its own and compares with rank 0's digest. Returns the digest.
    pub fn check_identical(&self, tensors: &[Tensor], what: &str) -> Result<String> {
        let digest = state_digest(tensors);
        let value = u64::from_str_radix(&digest, 16).expect("hex digest");
        let count = self.compare_with_rank0(value, "state digest")?.differing;
        if count > 0 {
            bail!(
                "{count} rank(s) hold {what} that differ from rank 0's (this rank's digest {digest}): the ranks diverged, which is a bug (report it with the config)"
            );
        }
        Ok(digest)
    }

    /// Broadcasts rank 0's `value` and counts the ranks whose own value differs from it.
    fn compare_with_rank0(&self, value: u64, what: &str) -> Result<Comparison> {
        // Two 32-bit halves: exact in any integer collective.
        let halves = Tensor::from_slice(&[(value >> 32) as i64, (value & 0xffff_ffff) as i64]);
        let from_rank0 = halves.copy();
        self.group
            .broadcast(&[from_rank0.shallow_clone()], 0)
            .with_context(|| format!("broadcasting rank 0's {what}"))?;
        let rank0 =
            ((from_rank0.int64_value(&[0]) as u64) << 32) | from_rank0.int64_value(&[1]) as u64;
        let count = Tensor::from_slice(&[i64::from(rank0 != value)]);
        self.group
            .all_reduce_sum(&[count.shallow_clone()])
            .with_context(|| format!("comparing {what}s"))?;
        Ok(Comparison {
            rank0,
            differing: count.int64_value(&[0]),
        })
    }

    /// Waits for every rank (e.g. so no rank exits while rank 0 still writes).
    pub fn barrier(&self) -> Result<()> {
        self.group.barrier().context("waiting for the other ranks")
    }
}

/// Rank 0's value and how many ranks hold another.
struct Comparison {
    rank0: u64,
    differing: i64,
}

/// A 64-bit hex digest (SHA-256 prefix) of the tensors' bytes, in order.
pub fn state_digest(tensors: &[Tensor]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for tensor in tensors {
        let bytes = tensor
            .to_device(tch::Device::Cpu)
            .contiguous()
            .reshape([-1])
            .view_dtype(Kind::Uint8);
        hasher.update(Vec::<u8>::try_from(&bytes).expect("byte view"));
    }
    hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs `exchange` on flattened buckets of `tensors` (grouped by dtype and device, in order) and
/// copies the result back.
fn for_buckets(tensors: &[Tensor], mut exchange: impl FnMut(&Tensor) -> Result<()>) -> Result<()> {
    let mut start = 0;
    while start < tensors.len() {
        let kind = tensors[start].kind();
        let device = tensors[start].device();
        let mut end = start;
        let mut elements = 0;
        while end < tensors.len()
            && tensors[end].kind() == kind
            && tensors[end].device() == device
            && (end == start || elements + tensors[end].numel() as i64 <= BUCKET_ELEMENTS)
        {
            elements += tensors[end].numel() as i64;
            end += 1;
        }
        let bucket = &tensors[start..end];
        let flat = tch::no_grad(|| {
            Tensor::cat(
                &bucket
                    .iter()
                    .map(|t| t.detach().reshape([-1]))
                    .collect::<Vec<_>>(),
                0,
            )
        });
        exchange(&flat)?;
        tch::no_grad(|| {
            let mut offset = 0;
            for tensor in bucket {
                let n = tensor.numel() as i64;
                let part = flat.narrow(0, offset, n).view_as(tensor);
                tensor.shallow_clone().copy_(&part);
                offset += n;
            }
        });
        start = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_sees_every_bit() {
        let a = [
            Tensor::from_slice(&[1.0f32, 2.0]),
            Tensor::from_slice(&[3i64]),
        ];
        let same = [
            Tensor::from_slice(&[1.0f32, 2.0]),
            Tensor::from_slice(&[3i64]),
        ];
        let next = f32::from_bits(2.0f32.to_bits() + 1);
        let other = [
            Tensor::from_slice(&[1.0f32, next]),
            Tensor::from_slice(&[3i64]),
        ];
        assert_eq!(state_digest(&a), state_digest(&same));
        assert_ne!(state_digest(&a), state_digest(&other));
        assert_eq!(state_digest(&a).len(), 16);
    }

    #[test]
    fn buckets_round_trip_and_respect_the_size_limit() {
        let tensors = vec![
            Tensor::from_slice(&[1.0f32, 2.0]),
            Tensor::from_slice(&[3.0f32]).reshape([1, 1]),
            Tensor::from_slice(&[4i64, 5]),
            Tensor::zeros([BUCKET_ELEMENTS + 1], (Kind::Float, tch::Device::Cpu)),
        ];
        let mut sizes = Vec::new();
        for_buckets(&tensors, |flat| {
            sizes.push((flat.kind(), flat.numel()));
            let _ = flat.shallow_clone().g_mul_scalar_(2);
            Ok(())
        })
        .unwrap();
        // Floats until the dtype changes, the int64 alone, the oversized tensor alone.
        assert_eq!(
            sizes,
            vec![
                (Kind::Float, 3),
                (Kind::Int64, 2),
                (Kind::Float, (BUCKET_ELEMENTS + 1) as usize)
            ]
        );
        assert_eq!(Vec::<f32>::try_from(&tensors[0]).unwrap(), vec![2.0, 4.0]);
        assert_eq!(tensors[1].double_value(&[0, 0]), 6.0);
        assert_eq!(Vec::<i64>::try_from(&tensors[2]).unwrap(), vec![8, 10]);
    }
}
