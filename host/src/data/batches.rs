//! Seeded batch order: which examples each global batch holds, for any epoch, rank and resume.

use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use tch::Tensor;

use super::split::Split;

/// The order of training examples in `epoch`: a permutation drawn from `(seed, epoch)`.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<i64> {
    let mut order: Vec<i64> = (0..n as i64).collect();
    order.shuffle(&mut nas_sdk::rng::stream(seed, epoch, "data-order"));
    order
}

/// Steps per epoch for `n` examples (the last incomplete batch is dropped).
pub fn steps_per_epoch(n: usize, batch_size: usize) -> u64 {
    (n / batch_size) as u64
}

/// Draws training batches by global batch index: batch `b` is the `b % steps_per_epoch`-th batch
/// of epoch `b / steps_per_epoch`. Stateless apart from a cache of the current epoch's order, so
/// a resumed run sees exactly the batches the interrupted one would have.
#[derive(Clone, Debug)]
pub struct BatchSource {
    batch_size: usize,
    seed: u64,
    per_epoch: u64,
    cached: Option<(u64, Vec<i64>)>,
    /// `(rank, world size)`: this process takes its slice of every global batch.
    shard: (usize, usize),
}

impl BatchSource {
    /// Batches of `batch_size` from a split of `n` examples.
    pub fn new(n: usize, batch_size: usize, seed: u64) -> Result<Self> {
        let per_epoch = steps_per_epoch(n, batch_size);
        if per_epoch == 0 {
            bail!("config field `train.batch_size` ({batch_size}) is larger than the training split ({n} images)");
        }
        Ok(BatchSource {
            batch_size,
            seed,
            per_epoch,
            cached: None,
            shard: (0, 1),
        })
    }

    /// Global batches of `batch_size` of which this process (`rank` of `world_size`) takes the
    /// `rank`-th of `world_size` equal slices: the ranks together see exactly the batches of a
    /// single-process run, each epoch in the same seeded order.
    pub fn sharded(
        n: usize,
        batch_size: usize,
        seed: u64,
        rank: usize,
        world_size: usize,
    ) -> Result<Self> {
        if world_size == 0 || rank >= world_size {
            bail!("rank {rank} is not within a world of {world_size} processes");
        }
        if !batch_size.is_multiple_of(world_size) {
            bail!(
                "config field `train.batch_size` ({batch_size}) is the global batch and must split evenly over the {world_size} processes; pick a multiple of {world_size}"
            );
        }
        let mut source = BatchSource::new(n, batch_size, seed)?;
        source.shard = (rank, world_size);
        Ok(source)
    }

    /// Batches per epoch.
    pub fn per_epoch(&self) -> u64 {
        self.per_epoch
    }

    /// Indices of global batch `index`.
    pub fn indices(&mut self, index: u64, n: usize) -> Vec<i64> {
        let epoch = index / self.per_epoch;
        if self.cached.as_ref().map(|(e, _)| *e) != Some(epoch) {
            self.cached = Some((epoch, epoch_order(n, self.seed, epoch)));
        }
        let order = &self.cached.as_ref().expect("just cached").1;
        let (rank, world_size) = self.shard;
        let share = self.batch_size / world_size;
        let start = (index % self.per_epoch) as usize * self.batch_size + rank * share;
        order[start..start + share].to_vec()
    }

    /// Global batch `index` of `split`.
    pub fn batch(&mut self, split: &Split, index: u64) -> Result<(Tensor, Tensor)> {
        let indices = self.indices(index, split.len());
        split.gather(&indices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_each_global_batch_in_rank_order() {
        let mut whole = BatchSource::new(20, 6, 3).unwrap();
        for index in [0, 2, 4] {
            let global = whole.indices(index, 20);
            let parts: Vec<i64> = (0..3)
                .flat_map(|rank| {
                    BatchSource::sharded(20, 6, 3, rank, 3)
                        .unwrap()
                        .indices(index, 20)
                })
                .collect();
            assert_eq!(parts, global);
        }
        let err = BatchSource::sharded(20, 6, 3, 0, 4).err().unwrap();
        assert!(err.to_string().contains("train.batch_size"), "{err}");
    }

    #[test]
    fn batches_cover_each_epoch_once_and_depend_on_seed() {
        let mut source = BatchSource::new(10, 3, 5).unwrap();
        assert_eq!(source.per_epoch(), 3);
        let mut seen: Vec<i64> = (0..3).flat_map(|b| source.indices(b, 10)).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 9);
        let again = BatchSource::new(10, 3, 5).unwrap().indices(4, 10);
        assert_eq!(source.indices(4, 10), again);
        let other = BatchSource::new(10, 3, 6).unwrap().indices(4, 10);
        assert_ne!(again, other);
    }
}
