//! The training input pipeline: global batch `b` of the seeded order, read, augmented and
//! collated by a pool of worker threads into a bounded queue of ready batches ahead of the
//! trainer, then mixed (Mixup / CutMix) and moved to the device.
//!
//! ```text
//! batch order (seed, epoch) -> producer thread -> worker pool: read + augment each sample
//!     keyed by (seed, epoch, index) -> bounded queue -> trainer: tensor, pin, copy, mix
//! ```
//!
//! Nothing depends on which worker did what or when, so any worker count, a resume and the
//! shards of a data-parallel run see the same images.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::{sync_channel, Receiver},
        Arc,
    },
    thread::JoinHandle,
};

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use super::{
    augment::{sample_rng, MixSettings, Recipe},
    batches::BatchSource,
    split::{Samples, Split},
};
use crate::config::BadImagePolicy;

/// One training batch, ready for the forward pass.
pub struct Batch {
    /// Images, `[n, c, h, w]`, on the training device.
    pub images: Tensor,
    /// Targets: class indices `[n]` (int64), or soft targets `[n, classes]` (float) when the
    /// batch was mixed.
    pub targets: Tensor,
    /// Training images left out of this batch because they could not be read (file: reason).
    pub skipped: Vec<String>,
}

/// How the pipeline runs.
#[derive(Clone, Debug)]
pub struct PipelineSettings {
    /// Worker threads (0: everything in the calling thread).
    pub workers: usize,
    /// Ready batches queued ahead of the trainer.
    pub prefetch: usize,
    /// What to do with an unreadable image.
    pub on_bad_image: BadImagePolicy,
    /// The run's seed.
    pub seed: u64,
    /// Classes (for soft targets).
    pub classes: i64,
    /// Output resolution.
    pub size: u32,
    /// Output channels.
    pub channels: u8,
    /// Per-channel normalisation mean.
    pub mean: Vec<f32>,
    /// Per-channel normalisation standard deviation.
    pub std: Vec<f32>,
}

/// What the worker side of the pipeline shares.
struct Shared {
    samples: Arc<dyn Samples>,
    recipe: Recipe,
    settings: PipelineSettings,
    per_epoch: u64,
}

/// A batch assembled on the CPU, before it becomes a tensor.
struct Prepared {
    index: u64,
    pixels: Vec<f32>,
    labels: Vec<i64>,
    skipped: Vec<String>,
}

impl Shared {
    /// Reads and augments the samples of global batch `index`.
    /// `parallel`: spread the samples over the current rayon pool.
    fn prepare(&self, index: u64, indices: &[i64], parallel: bool) -> Result<Prepared> {
        let epoch = index / self.per_epoch;
        let s = &self.settings;
        let image_len = (s.size * s.size) as usize * s.channels as usize;
        let mut pixels = vec![0f32; indices.len() * image_len];
        let work = |(out, &i): (&mut [f32], &i64)| -> Result<(), String> {
            let image = self
                .samples
                .read(i as usize)
                .map_err(|e| format!("{e:#}"))?;
            if image.channels != s.channels {
                return Err(format!(
                    "example {i} has {} channels, the split {}",
                    image.channels, s.channels
                ));
            }
            let mut rng = sample_rng(s.seed, epoch, i as u64);
            self.recipe
                .train_view(&image, s.size, &s.mean, &s.std, &mut rng, out);
            Ok(())
        };
        let outcomes: Vec<Result<(), String>> = if parallel {
            pixels
                .par_chunks_mut(image_len)
                .zip(indices.par_iter())
                .map(work)
                .collect()
        } else {
            pixels
                .chunks_mut(image_len)
                .zip(indices)
                .map(work)
                .collect()
        };
        let mut kept_pixels = Vec::with_capacity(pixels.len());
        let mut labels = Vec::with_capacity(indices.len());
        let mut skipped = Vec::new();
        for ((outcome, &i), chunk) in outcomes
            .into_iter()
            .zip(indices)
            .zip(pixels.chunks(image_len))
        {
            match outcome {
                Ok(()) => {
                    kept_pixels.extend_from_slice(chunk);
                    labels.push(self.samples.label(i as usize));
                }
                Err(reason) => match s.on_bad_image {
                    BadImagePolicy::Fail => bail!(
                        "training image unreadable: {reason} (set data.on_bad_image = \"skip\" to leave such images out and count them)"
                    ),
                    BadImagePolicy::Skip => skipped.push(reason),
                },
            }
        }
        if labels.is_empty() {
            bail!(
                "no image of training batch {index} could be read; first error: {}",
                skipped.first().map_or("none", String::as_str)
            );
        }
        Ok(Prepared {
            index,
            pixels: kept_pixels,
            labels,
            skipped,
        })
    }
}

/// A producer thread filling the queue from batch `next` on.
struct Running {
    next: u64,
    queue: Receiver<Result<Prepared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Closing the queue makes a producer blocked on a full queue give up at once.
        drop(std::mem::replace(&mut self.queue, sync_channel(1).1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Pipeline {
    shared: Arc<Shared>,
    pool: Option<Arc<rayon::ThreadPool>>,
    running: Option<Running>,
    mix: Option<MixSettings>,
}

enum Mode {
    /// Training images used as they are, gathered from the split's tensors.
    Tensors,
    /// Read and augmented per sample.
    Pipeline(Box<Pipeline>),
}

/// Training batches by global index.
pub struct TrainLoader {
    batches: BatchSource,
    device: Device,
    mode: Mode,
}

impl TrainLoader {
    /// Batches of `train` in the order `batches` gives, augmented by `recipe`.
    pub fn new(
        train: &Split,
        batches: BatchSource,
        recipe: &Recipe,
        settings: PipelineSettings,
        device: Device,
    ) -> Result<Self> {
        let mode = if recipe.is_identity() && !train.is_streamed() {
            Mode::Tensors
        } else {
            let Some(samples) = train.samples() else {
                bail!("config field `data.augment.preset` = \"{}\": augmentation needs image data, and this dataset (synthetic) is drawn as normalised floats; use preset \"none\"", recipe.preset);
            };
            let pool = if settings.workers == 0 {
                None
            } else {
                Some(Arc::new(
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(settings.workers)
                        .thread_name(|i| format!("nas-data-{i}"))
                        .build()
                        .context("starting the data workers")?,
                ))
            };
            Mode::Pipeline(Box::new(Pipeline {
                shared: Arc::new(Shared {
                    samples,
                    recipe: recipe.clone(),
                    settings,
                    per_epoch: batches.per_epoch(),
                }),
                pool,
                running: None,
                mix: recipe.mix.clone(),
            }))
        };
        Ok(TrainLoader {
            batches,
            device,
            mode,
        })
    }

    /// Batches per epoch.
    pub fn per_epoch(&self) -> u64 {
        self.batches.per_epoch()
    }

    /// Global batch `index` of `train` (this process's shard of it).
    pub fn batch(&mut self, train: &Split, index: u64) -> Result<Batch> {
        let pipeline = match &mut self.mode {
            Mode::Tensors => {
                let (images, targets) = self.batches.batch(train, index)?;
                return Ok(Batch {
                    images,
                    targets,
                    skipped: Vec::new(),
                });
            }
            Mode::Pipeline(pipeline) => pipeline,
        };
        let prepared = match &pipeline.pool {
            None => {
                let indices = self.batches.indices(index, pipeline.shared.samples.len());
                pipeline.shared.prepare(index, &indices, false)?
            }
            Some(pool) => {
                if pipeline.running.as_ref().map(|r| r.next) != Some(index) {
                    pipeline.running = Some(start_producer(
                        pipeline.shared.clone(),
                        pool.clone(),
                        self.batches.clone(),
                        index,
                    ));
                }
                let running = pipeline.running.as_mut().expect("just started");
                let prepared = running
                    .queue
                    .recv()
                    .context("the data pipeline's producer stopped")??;
                running.next += 1;
                debug_assert_eq!(prepared.index, index);
                prepared
            }
        };
        let s = &pipeline.shared.settings;
        let n = prepared.labels.len() as i64;
        let (size, channels) = (s.size as i64, s.channels as i64);
        let cpu = Tensor::from_slice(&prepared.pixels).view([n, channels, size, size]);
        let mut images = to_device(cpu, self.device);
        let labels = Tensor::from_slice(&prepared.labels).to_device(self.device);
        let targets = match &pipeline.mix {
            Some(mix) => {
                let mut rng = nas_sdk::rng::stream(s.seed, index, "mix");
                mix.apply(&mut images, &labels, s.classes, &mut rng).0
            }
            None => labels,
        };
        Ok(Batch {
            images,
            targets,
            skipped: prepared.skipped,
        })
    }
}

/// A CPU batch on `device`: through pinned memory with a non-blocking copy on CUDA.
fn to_device(cpu: Tensor, device: Device) -> Tensor {
    match device {
        Device::Cpu => cpu,
        _ => cpu
            .pin_memory(device)
            .to_device_(device, Kind::Float, true, false),
    }
}

fn start_producer(
    shared: Arc<Shared>,
    pool: Arc<rayon::ThreadPool>,
    mut batches: BatchSource,
    start: u64,
) -> Running {
    let (sender, queue) = sync_channel(shared.settings.prefetch.max(1));
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = std::thread::Builder::new()
        .name("nas-data-producer".into())
        .spawn(move || {
            let n = shared.samples.len();
            let mut index = start;
            while !stopped.load(Ordering::SeqCst) {
                let indices = batches.indices(index, n);
                let prepared = pool.install(|| shared.prepare(index, &indices, true));
                let failed = prepared.is_err();
                if sender.send(prepared).is_err() || failed {
                    break;
                }
                index += 1;
            }
        })
        .expect("spawning the data producer thread");
    Running {
        next: start,
        queue,
        stop,
        thread: Some(thread),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::AugmentSection, data::split::MemoryImages};

    fn memory_split(n: usize) -> Split {
        let size = 12u32;
        let pixels: Vec<u8> = (0..n * (size * size) as usize * 3)
            .map(|v| (v * 31 % 251) as u8)
            .collect();
        let raw = MemoryImages {
            size,
            channels: 3,
            pixels,
            labels: (0..n as i64).map(|i| i % 5).collect(),
        };
        let images = Tensor::zeros([n as i64, 3, 12, 12], (Kind::Float, Device::Cpu));
        let labels = Tensor::from_slice(&raw.labels);
        Split::from_tensors(images, labels, Some(Arc::new(raw)))
    }

    fn settings(workers: usize) -> PipelineSettings {
        PipelineSettings {
            workers,
            prefetch: 2,
            on_bad_image: BadImagePolicy::Skip,
            seed: 11,
            classes: 5,
            size: 12,
            channels: 3,
            mean: vec![0.5; 3],
            std: vec![0.25; 3],
        }
    }

    fn recipe(preset: &str) -> Recipe {
        Recipe::resolve(&AugmentSection {
            preset: preset.into(),
            ..AugmentSection::default()
        })
        .unwrap()
    }

    fn batches(
        split: &Split,
        workers: usize,
        preset: &str,
        indices: &[u64],
        shard: (usize, usize),
    ) -> Vec<(Tensor, Tensor)> {
        let source = BatchSource::sharded(split.len(), 8, 11, shard.0, shard.1).unwrap();
        let mut loader = TrainLoader::new(
            split,
            source,
            &recipe(preset),
            settings(workers),
            Device::Cpu,
        )
        .unwrap();
        indices
            .iter()
            .map(|&i| {
                let batch = loader.batch(split, i).unwrap();
                (batch.images, batch.targets)
            })
            .collect()
    }

    fn same(a: &[(Tensor, Tensor)], b: &[(Tensor, Tensor)]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|((ia, ta), (ib, tb))| ia.equal(ib) && ta.equal(tb))
    }

    #[test]
    fn any_worker_count_and_a_resume_give_the_same_batches() {
        let split = memory_split(40);
        for preset in ["cifar", "vit"] {
            let order: Vec<u64> = (0..12).collect();
            let inline = batches(&split, 0, preset, &order, (0, 1));
            assert!(
                same(&inline, &batches(&split, 1, preset, &order, (0, 1))),
                "{preset}"
            );
            assert!(
                same(&inline, &batches(&split, 4, preset, &order, (0, 1))),
                "{preset}"
            );
            // A resumed run asks for batch 7 first: the same batches from there on.
            let resumed = batches(&split, 4, preset, &order[7..], (0, 1));
            assert!(same(&inline[7..], &resumed), "{preset}");
            // Epochs differ: batch 5 (epoch 1) is not batch 0 (epoch 0) again.
            assert!(!inline[0].0.equal(&inline[5].0));
        }
    }

    #[test]
    fn data_parallel_shards_are_the_single_process_batches() {
        let split = memory_split(40);
        let order: Vec<u64> = (0..6).collect();
        let whole = batches(&split, 2, "cifar", &order, (0, 1));
        let rank0 = batches(&split, 2, "cifar", &order, (0, 2));
        let rank1 = batches(&split, 1, "cifar", &order, (1, 2));
        for (k, (full, _)) in whole.iter().enumerate() {
            let joined = Tensor::cat(&[&rank0[k].0, &rank1[k].0], 0);
            assert!(joined.equal(full), "batch {k}");
        }
    }

    #[test]
    fn mixed_batches_carry_soft_targets_that_sum_to_one() {
        let split = memory_split(40);
        let mixed = batches(&split, 2, "vit", &[0, 1], (0, 1));
        let targets = &mixed[0].1;
        assert_eq!(targets.size(), [8, 5]);
        let sums = targets.sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
        assert!((sums - 1.0).abs().max().double_value(&[]) < 1e-6);
    }

    #[test]
    fn synthetic_data_refuses_augmentation() {
        let split = Split::from_tensors(
            Tensor::zeros([16, 3, 4, 4], (Kind::Float, Device::Cpu)),
            Tensor::zeros([16], (Kind::Int64, Device::Cpu)),
            None,
        );
        let source = BatchSource::new(16, 4, 1).unwrap();
        let err = TrainLoader::new(&split, source, &recipe("cifar"), settings(0), Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("data.augment.preset") && err.contains("synthetic"),
            "{err}"
        );
    }
}
