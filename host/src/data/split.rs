//! One split of a dataset: images held as tensors (in-memory datasets) or streamed from files
//! (image folders), behind one interface that evaluation, search and calibration use.

use std::sync::Arc;

use anyhow::Result;
use rayon::prelude::*;
use tch::{Device, Tensor};

use super::{augment::Recipe, image::Image, image_folder::FileIndex};

/// Read access to the raw (un-normalised, un-augmented) images of a split, from any thread: what
/// the training pipeline augments.
pub trait Samples: Send + Sync {
    /// Number of examples.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Label of example `i`.
    fn label(&self, i: usize) -> i64;
    /// Example `i`'s image; the error names the file it came from.
    fn read(&self, i: usize) -> Result<Image>;
}

/// 8-bit images held in memory (Fashion-MNIST, CIFAR), rows of interleaved channels.
pub struct MemoryImages {
    /// Width = height of every image.
    pub size: u32,
    /// Channels per pixel.
    pub channels: u8,
    /// `n * size * size * channels` bytes.
    pub pixels: Vec<u8>,
    /// Labels.
    pub labels: Vec<i64>,
}

impl MemoryImages {
    fn image_bytes(&self) -> usize {
        (self.size * self.size) as usize * self.channels as usize
    }

    /// The examples at `rows`, in that order.
    pub fn select(&self, rows: &[i64]) -> MemoryImages {
        let bytes = self.image_bytes();
        let mut pixels = Vec::with_capacity(rows.len() * bytes);
        for &row in rows {
            let at = row as usize * bytes;
            pixels.extend_from_slice(&self.pixels[at..at + bytes]);
        }
        MemoryImages {
            size: self.size,
            channels: self.channels,
            pixels,
            labels: rows.iter().map(|&r| self.labels[r as usize]).collect(),
        }
    }
}

impl Samples for MemoryImages {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn label(&self, i: usize) -> i64 {
        self.labels[i]
    }

    fn read(&self, i: usize) -> Result<Image> {
        let bytes = self.image_bytes();
        Ok(Image {
            width: self.size,
            height: self.size,
            channels: self.channels,
            pixels: self.pixels[i * bytes..(i + 1) * bytes].to_vec(),
        })
    }
}

/// Some rows of an image folder's file index.
pub struct FileSamples {
    index: Arc<FileIndex>,
    rows: Vec<u32>,
    grayscale: bool,
}

impl FileSamples {
    /// Rows `rows` of `index`, decoded as RGB or grey.
    pub fn new(index: Arc<FileIndex>, rows: Vec<u32>, grayscale: bool) -> Self {
        FileSamples {
            index,
            rows,
            grayscale,
        }
    }

    /// The file of example `i`.
    pub fn path(&self, i: usize) -> &std::path::Path {
        &self.index.files[self.rows[i] as usize]
    }

    fn labels(&self) -> Vec<i64> {
        self.rows
            .iter()
            .map(|&r| self.index.labels[r as usize])
            .collect()
    }
}

impl Samples for FileSamples {
    fn len(&self) -> usize {
        self.rows.len()
    }

    fn label(&self, i: usize) -> i64 {
        self.index.labels[self.rows[i] as usize]
    }

    fn read(&self, i: usize) -> Result<Image> {
        super::image_folder::decode(self.path(i), self.grayscale)
    }
}

/// How streamed images become network inputs: the evaluation view at `size`, normalised.
pub struct View {
    /// Output resolution.
    pub size: u32,
    /// Output channels.
    pub channels: u8,
    /// Per-channel mean (pixels in [0, 1]).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation.
    pub std: Vec<f32>,
    /// The recipe whose evaluation view is used.
    pub recipe: Recipe,
}

impl View {
    /// Floats per image.
    pub fn image_len(&self) -> usize {
        (self.size * self.size) as usize * self.channels as usize
    }
}

enum Store {
    Tensors {
        images: Tensor,
        raw: Option<Arc<MemoryImages>>,
    },
    Streamed {
        samples: Arc<FileSamples>,
        view: Arc<View>,
        pool: Arc<rayon::ThreadPool>,
        device: Device,
    },
}

/// One split: images (float, normalised, `[n, c, h, w]` when gathered) and labels (int64).
pub struct Split {
    labels: Tensor,
    store: Store,
}

impl Split {
    /// A split held as tensors; `raw` keeps the 8-bit images for augmentation.
    pub fn from_tensors(images: Tensor, labels: Tensor, raw: Option<Arc<MemoryImages>>) -> Split {
        Split {
            labels,
            store: Store::Tensors { images, raw },
        }
    }

    /// A split streamed from image files through `view`, decoded on `pool`.
    pub fn streamed(
        samples: FileSamples,
        view: Arc<View>,
        pool: Arc<rayon::ThreadPool>,
        device: Device,
    ) -> Split {
        let labels = Tensor::from_slice(&samples.labels()).to_device(device);
        Split {
            labels,
            store: Store::Streamed {
                samples: Arc::new(samples),
                view,
                pool,
                device,
            },
        }
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }

    /// Whether the split is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All labels, `[n]`.
    pub fn labels(&self) -> &Tensor {
        &self.labels
    }

    /// The device batches come on.
    pub fn device(&self) -> Device {
        match &self.store {
            Store::Tensors { images, .. } => images.device(),
            Store::Streamed { device, .. } => *device,
        }
    }

    /// The raw images, for the training pipeline (`None` for data drawn as floats).
    pub fn samples(&self) -> Option<Arc<dyn Samples>> {
        match &self.store {
            Store::Tensors { raw, .. } => raw.clone().map(|r| r as Arc<dyn Samples>),
            Store::Streamed { samples, .. } => Some(samples.clone() as Arc<dyn Samples>),
        }
    }

    /// Whether images are read from files as batches need them.
    pub fn is_streamed(&self) -> bool {
        matches!(self.store, Store::Streamed { .. })
    }

    /// The examples at `indices` (evaluation view).
    pub fn gather(&self, indices: &[i64]) -> Result<(Tensor, Tensor)> {
        let index = Tensor::from_slice(indices).to_device(self.labels.device());
        let labels = self.labels.index_select(0, &index);
        let images = match &self.store {
            Store::Tensors { images, .. } => {
                images.index_select(0, &index.to_device(images.device()))
            }
            Store::Streamed {
                samples,
                view,
                pool,
                device,
            } => decode_batch(samples, view, pool, indices)?.to_device(*device),
        };
        Ok((images, labels))
    }

    /// Consecutive examples `[start, start + count)`.
    pub fn slice(&self, start: usize, count: usize) -> Result<(Tensor, Tensor)> {
        match &self.store {
            Store::Tensors { images, .. } => Ok((
                images.narrow(0, start as i64, count as i64),
                self.labels.narrow(0, start as i64, count as i64),
            )),
            Store::Streamed { .. } => {
                let indices: Vec<i64> = (start as i64..(start + count) as i64).collect();
                self.gather(&indices)
            }
        }
    }

    /// The first `count` examples as a split of their own.
    pub fn head(&self, count: usize) -> Split {
        let count = count.min(self.len());
        let labels = self.labels.narrow(0, 0, count as i64);
        let store = match &self.store {
            Store::Tensors { images, raw } => Store::Tensors {
                images: images.narrow(0, 0, count as i64),
                raw: raw
                    .as_ref()
                    .map(|r| Arc::new(r.select(&(0..count as i64).collect::<Vec<_>>()))),
            },
            Store::Streamed {
                samples,
                view,
                pool,
                device,
            } => Store::Streamed {
                samples: Arc::new(FileSamples::new(
                    samples.index.clone(),
                    samples.rows[..count].to_vec(),
                    samples.grayscale,
                )),
                view: view.clone(),
                pool: pool.clone(),
                device: *device,
            },
        };
        Split { labels, store }
    }

    /// The split held as tensors if it is streamed and its decoded images fit in
    /// `budget_bytes` (decoded once, in the evaluation view); otherwise the split as it is.
    pub fn materialized(&self, budget_bytes: usize) -> Result<Split> {
        if let Store::Streamed { view, .. } = &self.store {
            if self.len() * view.image_len() * 4 <= budget_bytes {
                let (images, labels) = self.slice(0, self.len())?;
                return Ok(Split::from_tensors(images, labels, None));
            }
        }
        Ok(self.head(self.len()))
    }

    pub(super) fn to_device(&self, device: Device) -> Split {
        let store = match &self.store {
            Store::Tensors { images, raw } => Store::Tensors {
                images: images.to_device(device),
                raw: raw.clone(),
            },
            Store::Streamed {
                samples,
                view,
                pool,
                ..
            } => Store::Streamed {
                samples: samples.clone(),
                view: view.clone(),
                pool: pool.clone(),
                device,
            },
        };
        Split {
            labels: self.labels.to_device(device),
            store,
        }
    }
}

/// Decodes `indices` of `samples` on `pool` into one `[n, c, size, size]` CPU tensor; the first
/// unreadable file fails the batch (evaluation must see every example), naming it.
fn decode_batch(
    samples: &FileSamples,
    view: &View,
    pool: &rayon::ThreadPool,
    indices: &[i64],
) -> Result<Tensor> {
    let image_len = view.image_len();
    let mut pixels = vec![0f32; indices.len() * image_len];
    pool.install(|| {
        pixels
            .par_chunks_mut(image_len)
            .zip(indices.par_iter())
            .try_for_each(|(out, &i)| -> Result<()> {
                let image = samples.read(i as usize)?;
                view.recipe
                    .eval_view(&image, view.size)
                    .normalise_into(&view.mean, &view.std, out);
                Ok(())
            })
    })?;
    let s = view.size as i64;
    Ok(Tensor::from_slice(&pixels).view([indices.len() as i64, view.channels as i64, s, s]))
}
