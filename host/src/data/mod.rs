//! The `data/` stage: datasets and the training input pipeline.
//!
//! - Sources: Fashion-MNIST idx files, CIFAR-10 binary batches and synthetic data held in memory;
//!   image folders streamed from disk ([`image_folder`]).
//! - [`Split`]: one split behind one interface, gathered in the evaluation view.
//! - [`TrainLoader`]: training batches in the seeded order, augmented ([`augment`]) by a worker
//!   pool ahead of the trainer.
//!
//! Images are normalised per channel with the training split's published mean and std. Batches
//! drop the last incomplete batch, so every step sees `batch_size` images.

use std::{
    io::Read,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::config::DataSection;

pub mod augment;
mod batches;
pub mod image;
pub mod image_folder;
mod loader;
mod split;

pub use augment::Recipe;
pub use batches::{epoch_order, steps_per_epoch, BatchSource};
pub use loader::{Batch, PipelineSettings, TrainLoader};
pub use split::{FileSamples, MemoryImages, Samples, Split, View};

/// What a result file records about the data.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct DataInfo {
    /// Dataset name.
    pub dataset: String,
    /// Folder read (empty for synthetic).
    pub path: String,
    /// Training images (after carving the held-out split).
    pub train: usize,
    /// Held-out images carved from the training split.
    pub holdout: usize,
    /// Test images.
    pub test: usize,
    /// Per-channel mean and std the images were normalised with, after scaling pixels to [0, 1]
    /// (empty for synthetic data, which is drawn normalised).
    pub mean: Vec<f64>,
    /// See `mean`.
    pub std: Vec<f64>,
    /// The training augmentation.
    pub augment: Recipe,
}

impl DataInfo {
    /// How images reach a space, in words (for export manifests).
    pub fn normalisation(&self) -> String {
        if self.mean.is_empty() {
            "none: synthetic images are drawn already normalised".into()
        } else {
            format!(
                "pixels / 255, then per channel (x - {:?}) / {:?}",
                self.mean, self.std
            )
        }
    }
}

/// A dataset: its splits and what it is.
pub struct Dataset {
    /// Training split (held-out images removed).
    pub train: Split,
    /// Held-out split carved from the training data (may be empty).
    pub holdout: Split,
    /// Test split.
    pub test: Split,
    /// Classes.
    pub classes: i64,
    /// Image channels.
    pub channels: i64,
    /// Image height = width.
    pub resolution: i64,
    /// Provenance.
    pub info: DataInfo,
}

const FASHION_MEAN: [f64; 1] = [0.2860];
const FASHION_STD: [f64; 1] = [0.3530];
const CIFAR_MEAN: [f64; 3] = [0.4914, 0.4822, 0.4465];
const CIFAR_STD: [f64; 3] = [0.2470, 0.2435, 0.2616];
const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

impl Dataset {
    /// Loads the configured dataset onto `device`, carving `holdout` training images (seeded).
    pub fn load(section: &DataSection, seed: u64, device: Device) -> Result<Self> {
        let recipe = Recipe::resolve(&section.augment)?;
        if section.dataset == "image-folder" {
            return Self::load_folder(section, seed, device, recipe);
        }
        let keep_raw = !recipe.is_identity();
        let (raw, classes, path, (mean, std)) = match section.dataset.as_str() {
            "fashion-mnist" => {
                let dir = locate(section, "fashion-mnist", &["train-images-idx3-ubyte.gz"])?;
                let train = read_idx_pair(&dir, "train", 10)?;
                let test = read_idx_pair(&dir, "t10k", 10)?;
                (
                    Some((train, test)),
                    10,
                    dir.display().to_string(),
                    (FASHION_MEAN.to_vec(), FASHION_STD.to_vec()),
                )
            }
            "cifar10" => {
                let dir = locate(section, "cifar10", &["data_batch_1.bin", "cifar-10-batches-bin/data_batch_1.bin"])?;
                let dir = if dir.join("data_batch_1.bin").is_file() {
                    dir
                } else {
                    dir.join("cifar-10-batches-bin")
                };
                let train_files: Vec<PathBuf> =
                    (1..=5).map(|i| dir.join(format!("data_batch_{i}.bin"))).collect();
                let train = read_cifar_batches(&train_files)?;
                let test = read_cifar_batches(&[dir.join("test_batch.bin")])?;
                (
                    Some((train, test)),
                    10,
                    dir.display().to_string(),
                    (CIFAR_MEAN.to_vec(), CIFAR_STD.to_vec()),
                )
            }
            "synthetic" => (None, section.synthetic_classes, String::new(), (Vec::new(), Vec::new())),
            other => bail!(
                "config field `data.dataset`: unknown dataset `{other}`; use fashion-mnist, cifar10, image-folder or synthetic"
            ),
        };
        let (train, holdout, test) = match raw {
            Some((train, test)) => {
                let (kept, held) = carve_rows(train.len(), section.holdout, seed)?;
                // Only the training split is augmented, so only it keeps its 8-bit images.
                let split = |raw: MemoryImages, augmented: bool| {
                    let images = normalise(&raw, &mean, &std);
                    let labels = Tensor::from_slice(&raw.labels);
                    Split::from_tensors(images, labels, augmented.then(|| Arc::new(raw)))
                };
                (
                    split(train.select(&kept), keep_raw),
                    split(train.select(&held), false),
                    split(test, false),
                )
            }
            None => {
                let (train, test) = synthetic(section, seed);
                let (kept, held) = carve_rows(train.len(), section.holdout, seed)?;
                let part = |rows: &[i64]| {
                    let (images, labels) = train.gather(rows).expect("tensors gather");
                    Split::from_tensors(images, labels, None)
                };
                (part(&kept), part(&held), test)
            }
        };
        let (channels, resolution) = match section.dataset.as_str() {
            "synthetic" => (section.synthetic_channels, section.synthetic_resolution),
            "fashion-mnist" => (1, 28),
            _ => (3, 32),
        };
        let info = DataInfo {
            dataset: section.dataset.clone(),
            path,
            train: train.len(),
            holdout: holdout.len(),
            test: test.len(),
            mean,
            std,
            augment: recipe,
        };
        Ok(Dataset {
            channels,
            resolution,
            train: train.to_device(device),
            holdout: holdout.to_device(device),
            test: test.to_device(device),
            classes,
            info,
        })
    }

    /// An image folder, indexed and streamed.
    fn load_folder(
        section: &DataSection,
        seed: u64,
        device: Device,
        recipe: Recipe,
    ) -> Result<Self> {
        let options = &section.image_folder;
        if section.path.as_os_str().is_empty() {
            bail!("config field `data.path` must name the image folder (with train/ and test/ inside) for dataset `image-folder`");
        }
        if options.size == 0 {
            bail!("config field `data.image_folder.size` must be at least 1");
        }
        let channels: u8 = if options.grayscale { 1 } else { 3 };
        let (mean, std) = folder_statistics(options)?;
        let index = image_folder::index(&section.path)?;
        let classes = index.classes.len() as i64;
        let (kept, held) = carve_rows(index.train.files.len(), section.holdout, seed)?;
        let rows = |r: &[i64]| r.iter().map(|&i| i as u32).collect::<Vec<u32>>();
        let view = Arc::new(View {
            size: options.size,
            channels,
            mean: mean.iter().map(|&m| m as f32).collect(),
            std: std.iter().map(|&s| s as f32).collect(),
            recipe: recipe.clone(),
        });
        let pool = Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(section.workers.max(1))
                .thread_name(|i| format!("nas-decode-{i}"))
                .build()
                .context("starting the image decoding threads")?,
        );
        let train_index = Arc::new(index.train);
        let test_rows: Vec<u32> = (0..index.test.files.len() as u32).collect();
        let split = |index: &Arc<image_folder::FileIndex>, rows: Vec<u32>| {
            Split::streamed(
                FileSamples::new(index.clone(), rows, options.grayscale),
                view.clone(),
                pool.clone(),
                device,
            )
        };
        let train = split(&train_index, rows(&kept));
        let holdout = split(&train_index, rows(&held));
        let test = split(&Arc::new(index.test), test_rows);
        let info = DataInfo {
            dataset: section.dataset.clone(),
            path: section.path.display().to_string(),
            train: train.len(),
            holdout: holdout.len(),
            test: test.len(),
            mean,
            std,
            augment: recipe,
        };
        Ok(Dataset {
            train,
            holdout,
            test,
            classes,
            channels: channels as i64,
            resolution: options.size as i64,
            info,
        })
    }

    /// How the training pipeline of this dataset runs under `section` and `seed`.
    pub fn pipeline_settings(&self, section: &DataSection, seed: u64) -> PipelineSettings {
        PipelineSettings {
            workers: section.workers,
            prefetch: section.prefetch,
            on_bad_image: section.on_bad_image,
            seed,
            classes: self.classes,
            size: self.resolution as u32,
            channels: self.channels as u8,
            mean: self.info.mean.iter().map(|&m| m as f32).collect(),
            std: self.info.std.iter().map(|&s| s as f32).collect(),
        }
    }
}

/// The normalisation of an image folder: configured, or ImageNet's (grey: their luma).
fn folder_statistics(options: &crate::config::ImageFolderSection) -> Result<(Vec<f64>, Vec<f64>)> {
    let channels = if options.grayscale { 1 } else { 3 };
    let luma = |v: [f64; 3]| vec![0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2]];
    let (mut mean, mut std) = if options.grayscale {
        (luma(IMAGENET_MEAN), luma(IMAGENET_STD))
    } else {
        (IMAGENET_MEAN.to_vec(), IMAGENET_STD.to_vec())
    };
    if !options.mean.is_empty() || !options.std.is_empty() {
        if options.mean.len() != channels || options.std.len() != channels {
            bail!(
                "config fields `data.image_folder.mean` and `.std` need {channels} values each (one per channel), got {} and {}",
                options.mean.len(),
                options.std.len()
            );
        }
        if options.std.iter().any(|&s| !(s > 0.0 && s.is_finite())) {
            bail!(
                "config field `data.image_folder.std` must be positive, got {:?}",
                options.std
            );
        }
        mean = options.mean.clone();
        std = options.std.clone();
    }
    Ok((mean, std))
}

/// Finds the dataset folder: the configured path, `$NAS_DATA_DIR/<name>`, `./data/<name>`, and
/// for Fashion-MNIST Debian's install location.
fn locate(section: &DataSection, name: &str, markers: &[&str]) -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if !section.path.as_os_str().is_empty() {
        candidates.push(section.path.clone());
    } else {
        if let Some(root) = std::env::var_os("NAS_DATA_DIR") {
            candidates.push(PathBuf::from(root).join(name));
        }
        candidates.push(PathBuf::from("data").join(name));
        if name == "fashion-mnist" {
            candidates.push(PathBuf::from("/usr/share/datasets/fashion-mnist"));
        }
    }
    for dir in &candidates {
        if markers.iter().any(|m| dir.join(m).is_file()) {
            return Ok(dir.clone());
        }
    }
    let tried: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
    bail!(
        "dataset `{name}` not found (looked for {} in: {}); run scripts/setup.sh to fetch Fashion-MNIST, \
         or set `data.path` / NAS_DATA_DIR to the folder holding the files",
        markers.join(" or "),
        tried.join(", ")
    )
}

fn read_gz(path: &Path) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .with_context(|| format!("decompressing {}", path.display()))?;
    Ok(bytes)
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Reads `{prefix}-images-idx3-ubyte.gz` and `{prefix}-labels-idx1-ubyte.gz`; a label outside
/// `0..classes` is refused with its file, position and value.
fn read_idx_pair(dir: &Path, prefix: &str, classes: u8) -> Result<MemoryImages> {
    let images_path = dir.join(format!("{prefix}-images-idx3-ubyte.gz"));
    let labels_path = dir.join(format!("{prefix}-labels-idx1-ubyte.gz"));
    let images = read_gz(&images_path)?;
    let labels = read_gz(&labels_path)?;
    if images.len() < 16 || be_u32(&images, 0) != 0x0803 {
        bail!("{} is not an idx3 image file", images_path.display());
    }
    if labels.len() < 8 || be_u32(&labels, 0) != 0x0801 {
        bail!("{} is not an idx1 label file", labels_path.display());
    }
    let (n, h, w) = (
        be_u32(&images, 4) as usize,
        be_u32(&images, 8) as usize,
        be_u32(&images, 12) as usize,
    );
    let expected = n
        .checked_mul(h)
        .and_then(|v| v.checked_mul(w))
        .and_then(|v| v.checked_add(16));
    if expected != Some(images.len()) || labels.len() != 8 + n || be_u32(&labels, 4) as usize != n {
        bail!(
            "{} and {} disagree on their sizes (truncated download?)",
            images_path.display(),
            labels_path.display()
        );
    }
    if h != w || h == 0 {
        bail!(
            "{} holds {h}x{w} images; square images are expected",
            images_path.display()
        );
    }
    let label_bytes = &labels[8..];
    if let Some(at) = label_bytes.iter().position(|&l| l >= classes) {
        bail!(
            "{}: label {} of example {at} is out of range (the dataset has {classes} classes, 0..={}); the file is corrupt, fetch it again (scripts/setup.sh)",
            labels_path.display(),
            label_bytes[at],
            classes - 1
        );
    }
    Ok(MemoryImages {
        size: h as u32,
        channels: 1,
        pixels: images[16..].to_vec(),
        labels: label_bytes.iter().map(|&l| l as i64).collect(),
    })
}

/// Reads CIFAR-10 binary batches: records of 1 label byte + 3072 pixel bytes (CHW, 32x32),
/// kept as HWC bytes.
fn read_cifar_batches(files: &[PathBuf]) -> Result<MemoryImages> {
    const RECORD: usize = 1 + 3 * 32 * 32;
    const PLANE: usize = 32 * 32;
    let mut labels = Vec::new();
    let mut pixels = Vec::new();
    for file in files {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        if bytes.is_empty() || bytes.len() % RECORD != 0 {
            bail!(
                "{} is not a CIFAR-10 binary batch (size {} is not a multiple of {RECORD})",
                file.display(),
                bytes.len()
            );
        }
        for (at, record) in bytes.chunks_exact(RECORD).enumerate() {
            if record[0] > 9 {
                bail!(
                    "{}: label {} of record {at} is out of range (CIFAR-10 has 10 classes, 0..=9)",
                    file.display(),
                    record[0]
                );
            }
            labels.push(record[0] as i64);
            let chw = &record[1..];
            pixels.extend((0..PLANE).flat_map(|i| [chw[i], chw[PLANE + i], chw[2 * PLANE + i]]));
        }
    }
    Ok(MemoryImages {
        size: 32,
        channels: 3,
        pixels,
        labels,
    })
}

/// 8-bit HWC images as normalised `[n, c, h, w]` float tensors.
fn normalise(raw: &MemoryImages, mean: &[f64], std: &[f64]) -> Tensor {
    let (n, s, c) = (
        raw.labels.len() as i64,
        raw.size as i64,
        raw.channels as i64,
    );
    let images = Tensor::from_slice(&raw.pixels)
        .view([n, s, s, c])
        .permute([0, 3, 1, 2])
        .contiguous()
        .to_kind(Kind::Float)
        / 255.0;
    let mean = Tensor::from_slice(mean)
        .to_kind(Kind::Float)
        .view([1, c, 1, 1]);
    let std = Tensor::from_slice(std)
        .to_kind(Kind::Float)
        .view([1, c, 1, 1]);
    (images - mean) / std
}

/// A learnable synthetic task: each class has a fixed random template; an image is its class
/// template plus Gaussian noise. Drawn from a generator seeded by `seed`, so it is reproducible.
fn synthetic(section: &DataSection, seed: u64) -> (Split, Split) {
    let shape = [
        section.synthetic_channels,
        section.synthetic_resolution,
        section.synthetic_resolution,
    ];
    let classes = section.synthetic_classes.max(1);
    // Draw from a private stream so the data does not depend on other uses of libtorch's RNG.
    let mut rng = nas_sdk::rng::stream(seed, 0, "synthetic-data");
    use rand::Rng;
    use rand_distr_normal::sample_normal;
    let per_image = (shape[0] * shape[1] * shape[2]) as usize;
    let templates: Vec<f32> = (0..classes as usize * per_image)
        .map(|_| sample_normal(&mut rng))
        .collect();
    let mut make = |n: usize| {
        let mut labels = Vec::with_capacity(n);
        let mut pixels = Vec::with_capacity(n * per_image);
        for _ in 0..n {
            let label = rng.gen_range(0..classes);
            labels.push(label);
            let template = &templates[label as usize * per_image..(label as usize + 1) * per_image];
            pixels.extend(template.iter().map(|t| t + 1.5 * sample_normal(&mut rng)));
        }
        Split::from_tensors(
            Tensor::from_slice(&pixels).view([n as i64, shape[0], shape[1], shape[2]]),
            Tensor::from_slice(&labels),
            None,
        )
    };
    let train = make(section.synthetic_train);
    let test = make(section.synthetic_test);
    (train, test)
}

/// Box-Muller standard normal samples (avoids another dependency for one distribution); the
/// one sampler of the data stage (synthetic data, RandAugment magnitudes, random erasing).
pub(crate) mod rand_distr_normal {
    use rand::Rng;

    /// One draw, in f64.
    pub fn standard_normal(rng: &mut impl Rng) -> f64 {
        let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
        let u2: f64 = rng.gen();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// One draw, rounded to f32.
    pub fn sample_normal(rng: &mut impl Rng) -> f32 {
        standard_normal(rng) as f32
    }
}

/// Rows kept for training and rows held out: `holdout` rows drawn by a seeded permutation of
/// the `n` training examples, both lists in ascending order.
fn carve_rows(n: usize, holdout: usize, seed: u64) -> Result<(Vec<i64>, Vec<i64>)> {
    if holdout >= n {
        bail!("config field `data.holdout` ({holdout}) must be smaller than the training split ({n} images)");
    }
    if holdout == 0 {
        return Ok(((0..n as i64).collect(), Vec::new()));
    }
    let mut order: Vec<i64> = (0..n as i64).collect();
    order.shuffle(&mut nas_sdk::rng::stream(seed, 0, "holdout"));
    let (held, kept) = order.split_at(holdout);
    let mut kept = kept.to_vec();
    kept.sort_unstable();
    let mut held = held.to_vec();
    held.sort_unstable();
    Ok((kept, held))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_data_is_reproducible_and_carved() {
        let section = DataSection {
            dataset: "synthetic".into(),
            holdout: 100,
            synthetic_train: 300,
            synthetic_test: 50,
            ..DataSection::default()
        };
        let a = Dataset::load(&section, 1, Device::Cpu).unwrap();
        let b = Dataset::load(&section, 1, Device::Cpu).unwrap();
        assert_eq!(a.train.len(), 200);
        assert_eq!(a.holdout.len(), 100);
        assert!(a
            .train
            .slice(0, 200)
            .unwrap()
            .0
            .equal(&b.train.slice(0, 200).unwrap().0));
        assert_eq!((a.channels, a.resolution, a.classes), (3, 32, 10));
    }

    #[test]
    fn cifar10_binary_batches_load_with_labels_and_pixels_in_place() {
        let dir = tempfile::tempdir().unwrap();
        const RECORD: usize = 1 + 3 * 32 * 32;
        let write = |name: &str, labels: &[u8]| {
            let mut bytes = Vec::new();
            for &label in labels {
                bytes.push(label);
                // Red channel = label * 10, green = 0, blue = 255.
                bytes.extend(std::iter::repeat_n(label * 10, 1024));
                bytes.extend(std::iter::repeat_n(0u8, 1024));
                bytes.extend(std::iter::repeat_n(255u8, 1024));
            }
            assert_eq!(bytes.len(), labels.len() * RECORD);
            std::fs::write(dir.path().join(name), bytes).unwrap();
        };
        for i in 1..=5 {
            write(&format!("data_batch_{i}.bin"), &[i as u8, 9 - i as u8]);
        }
        write("test_batch.bin", &[0, 1, 2]);
        let section = DataSection {
            dataset: "cifar10".into(),
            path: dir.path().to_path_buf(),
            ..DataSection::default()
        };
        let data = Dataset::load(&section, 0, Device::Cpu).unwrap();
        assert_eq!((data.train.len(), data.test.len()), (10, 3));
        assert_eq!((data.channels, data.resolution, data.classes), (3, 32, 10));
        assert_eq!(data.train.labels().int64_value(&[2]), 2);
        let (train_images, _) = data.train.slice(0, 10).unwrap();
        let (test_images, _) = data.test.slice(0, 3).unwrap();
        // Pixel (channel 0) of train example 2 (label 2 -> 20/255), normalised.
        let expected = (20.0 / 255.0 - CIFAR_MEAN[0]) / CIFAR_STD[0];
        let got = train_images.double_value(&[2, 0, 5, 7]);
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
        let blue = (1.0 - CIFAR_MEAN[2]) / CIFAR_STD[2];
        assert!((test_images.double_value(&[1, 2, 31, 0]) - blue).abs() < 1e-5);

        std::fs::write(dir.path().join("test_batch.bin"), b"short").unwrap();
        let err = Dataset::load(&section, 0, Device::Cpu).err().unwrap();
        assert!(format!("{err:#}").contains("test_batch.bin"), "{err:#}");
    }

    #[test]
    fn missing_dataset_names_the_places_tried() {
        let section = DataSection {
            dataset: "cifar10".into(),
            path: "/nonexistent/cifar".into(),
            ..DataSection::default()
        };
        let err = Dataset::load(&section, 0, Device::Cpu).err().unwrap();
        let text = format!("{err:#}");
        assert!(
            text.contains("/nonexistent/cifar") && text.contains("data.path"),
            "{text}"
        );
    }
}
