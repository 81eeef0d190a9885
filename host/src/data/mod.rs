//! Datasets (Fashion-MNIST idx files, CIFAR-10 binary batches, synthetic) held as tensors, and
//! seeded batch order.
//!
//! Images are normalised per channel with the training split's published mean and std. Batches
//! drop the last incomplete batch, so every step sees `batch_size` images.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::config::DataSection;

mod batches;
pub mod image_folder;
mod split;

pub use batches::{epoch_order, steps_per_epoch, BatchSource};
pub use split::Split;

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

/// A dataset in memory.
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

impl Dataset {
    /// Loads the configured dataset onto `device`, carving `holdout` training images (seeded).
    pub fn load(section: &DataSection, seed: u64, device: Device) -> Result<Self> {
        let (train, test, classes, path, (mean, std)) = match section.dataset.as_str() {
            "fashion-mnist" => {
                let dir = locate(section, "fashion-mnist", &["train-images-idx3-ubyte.gz"])?;
                let train = read_idx_pair(&dir, "train")?;
                let test = read_idx_pair(&dir, "t10k")?;
                (
                    normalise(train, &FASHION_MEAN, &FASHION_STD),
                    normalise(test, &FASHION_MEAN, &FASHION_STD),
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
                    normalise(train, &CIFAR_MEAN, &CIFAR_STD),
                    normalise(test, &CIFAR_MEAN, &CIFAR_STD),
                    10,
                    dir.display().to_string(),
                    (CIFAR_MEAN.to_vec(), CIFAR_STD.to_vec()),
                )
            }
            "image-folder" => {
                if section.path.as_os_str().is_empty() {
                    bail!("config field `data.path` must name the image folder (with train/ and test/ inside) for dataset `image-folder`");
                }
                let folder = image_folder::load(&section.path, &section.image_folder)?;
                let (mean, std) = folder.train_statistics();
                (
                    normalise(folder.train, &mean, &std),
                    normalise(folder.test, &mean, &std),
                    folder.classes.len() as i64,
                    section.path.display().to_string(),
                    (mean, std),
                )
            }
            "synthetic" => {
                let (train, test) = synthetic(section, seed);
                (train, test, section.synthetic_classes, String::new(), (Vec::new(), Vec::new()))
            }
            other => bail!(
                "config field `data.dataset`: unknown dataset `{other}`; use fashion-mnist, cifar10, image-folder or synthetic"
            ),
        };
        let (train, holdout) = carve(train, section.holdout, seed)?;
        let size = train.images.size();
        let info = DataInfo {
            dataset: section.dataset.clone(),
            path,
            train: train.len(),
            holdout: holdout.len(),
            test: test.len(),
            mean,
            std,
        };
        Ok(Dataset {
            channels: size[1],
            resolution: size[2],
            train: train.to_device(device),
            holdout: holdout.to_device(device),
            test: test.to_device(device),
            classes,
            info,
        })
    }
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

/// Reads `{prefix}-images-idx3-ubyte.gz` and `{prefix}-labels-idx1-ubyte.gz`.
fn read_idx_pair(dir: &Path, prefix: &str) -> Result<Split> {
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
    if images.len() != 16 + n * h * w || labels.len() != 8 + n || be_u32(&labels, 4) as usize != n {
        bail!(
            "{} and {} disagree on their sizes (truncated download?)",
            images_path.display(),
            labels_path.display()
        );
    }
    let pixels = Tensor::from_slice(&images[16..]).view([n as i64, 1, h as i64, w as i64]);
    let labels = Tensor::from_slice(&labels[8..]).to_kind(Kind::Int64);
    Ok(Split {
        images: pixels.to_kind(Kind::Float) / 255.0,
        labels,
    })
}

/// Reads CIFAR-10 binary batches: records of 1 label byte + 3072 pixel bytes (CHW, 32x32).
fn read_cifar_batches(files: &[PathBuf]) -> Result<Split> {
    const RECORD: usize = 1 + 3 * 32 * 32;
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
        for record in bytes.chunks_exact(RECORD) {
            if record[0] > 9 {
                bail!(
                    "{} has label {} (CIFAR-10 has 10 classes)",
                    file.display(),
                    record[0]
                );
            }
            labels.push(record[0] as i64);
            pixels.extend_from_slice(&record[1..]);
        }
    }
    let n = labels.len() as i64;
    Ok(Split {
        images: Tensor::from_slice(&pixels)
            .view([n, 3, 32, 32])
            .to_kind(Kind::Float)
            / 255.0,
        labels: Tensor::from_slice(&labels),
    })
}

fn normalise(split: Split, mean: &[f64], std: &[f64]) -> Split {
    let c = mean.len() as i64;
    let mean = Tensor::from_slice(mean)
        .to_kind(Kind::Float)
        .view([1, c, 1, 1]);
    let std = Tensor::from_slice(std)
        .to_kind(Kind::Float)
        .view([1, c, 1, 1]);
    Split {
        images: (split.images - mean) / std,
        labels: split.labels,
    }
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
        Split {
            images: Tensor::from_slice(&pixels).view([n as i64, shape[0], shape[1], shape[2]]),
            labels: Tensor::from_slice(&labels),
        }
    };
    let train = make(section.synthetic_train);
    let test = make(section.synthetic_test);
    (train, test)
}

/// Box-Muller normal samples (avoids another dependency for one distribution).
mod rand_distr_normal {
    use rand::Rng;

    pub fn sample_normal(rng: &mut impl Rng) -> f32 {
        let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
        let u2: f64 = rng.gen();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}

/// Splits `holdout` examples off `train` with a seeded permutation.
fn carve(train: Split, holdout: usize, seed: u64) -> Result<(Split, Split)> {
    let n = train.len();
    if holdout >= n {
        bail!("config field `data.holdout` ({holdout}) must be smaller than the training split ({n} images)");
    }
    if holdout == 0 {
        let empty = Split {
            images: train.images.narrow(0, 0, 0),
            labels: train.labels.narrow(0, 0, 0),
        };
        return Ok((train, empty));
    }
    let mut order: Vec<i64> = (0..n as i64).collect();
    order.shuffle(&mut nas_sdk::rng::stream(seed, 0, "holdout"));
    let (held, kept) = order.split_at(holdout);
    let mut kept = kept.to_vec();
    kept.sort_unstable();
    let mut held = held.to_vec();
    held.sort_unstable();
    let (ki, kl) = train.gather(&kept);
    let (hi, hl) = train.gather(&held);
    Ok((
        Split {
            images: ki,
            labels: kl,
        },
        Split {
            images: hi,
            labels: hl,
        },
    ))
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
        assert!(a.train.images.equal(&b.train.images));
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
        assert_eq!(data.train.labels.int64_value(&[2]), 2);
        // Pixel (channel 0) of train example 2 (label 2 -> 20/255), normalised.
        let expected = (20.0 / 255.0 - CIFAR_MEAN[0]) / CIFAR_STD[0];
        let got = data.train.images.double_value(&[2, 0, 5, 7]);
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
        let blue = (1.0 - CIFAR_MEAN[2]) / CIFAR_STD[2];
        assert!((data.test.images.double_value(&[1, 2, 31, 0]) - blue).abs() < 1e-5);

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
