//! Image-folder datasets: `ROOT/train/<class>/*` and `ROOT/test/<class>/*` (or `ROOT/val/`), the
//! torchvision `ImageFolder` layout. Classes are the sorted names of the training split's
//! sub-folders; the test split must use the same names. PNG, JPEG and BMP files are decoded,
//! converted to RGB (or grey) and resized to a square; everything is held in memory.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use image::imageops::FilterType;
use tch::{Kind, Tensor};

use super::split::Split;
use crate::config::ImageFolderSection;

/// File extensions read (lower-case).
const EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "bmp"];

/// A loaded image folder, pixels scaled to [0, 1].
pub struct ImageFolder {
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// Training images.
    pub train: Split,
    /// Test images.
    pub test: Split,
}

impl ImageFolder {
    /// Per-channel mean and standard deviation of the training images.
    pub fn train_statistics(&self) -> (Vec<f64>, Vec<f64>) {
        let images = &self.train.images;
        let channels = images.size()[1];
        let per_channel = images.transpose(0, 1).reshape([channels, -1]);
        let mean = Vec::<f64>::try_from(per_channel.mean_dim(1, false, Kind::Double))
            .expect("a float vector");
        let std = Vec::<f64>::try_from(per_channel.to_kind(Kind::Double).std_dim(1, false, false))
            .expect("a float vector")
            .into_iter()
            // A constant channel would divide by zero.
            .map(|s| if s > 1e-12 { s } else { 1.0 })
            .collect();
        (mean, std)
    }
}

/// Sorted class folders of `split_dir`.
fn class_folders(split_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut classes = Vec::new();
    for entry in std::fs::read_dir(split_dir)
        .with_context(|| format!("reading folder {}", split_dir.display()))?
    {
        let path = entry?.path();
        if path.is_dir() {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| format!("{} has a non-UTF-8 name", path.display()))?
                .to_string();
            classes.push((name, path));
        }
    }
    classes.sort();
    Ok(classes)
}

fn image_files(class_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(class_dir)
        .with_context(|| format!("reading folder {}", class_dir.display()))?
    {
        let path = entry?.path();
        let known = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if path.is_file() && known {
            files.push(path);
        }
    }
    // Sorted, so the example order (and the seeded holdout) is the same on every machine.
    files.sort();
    Ok(files)
}

fn read_split(split_dir: &Path, classes: &[String], options: &ImageFolderSection) -> Result<Split> {
    let found = class_folders(split_dir)?;
    for (name, _) in &found {
        if !classes.contains(name) {
            bail!(
                "{} has class folder `{name}`, which the training split lacks (classes: {})",
                split_dir.display(),
                classes.join(", ")
            );
        }
    }
    let size = options.size;
    let channels: usize = if options.grayscale { 1 } else { 3 };
    let mut pixels: Vec<u8> = Vec::new();
    let mut labels: Vec<i64> = Vec::new();
    for (name, dir) in &found {
        let label = classes.iter().position(|c| c == name).expect("checked") as i64;
        for file in image_files(dir)? {
            let decoded =
                image::open(&file).with_context(|| format!("decoding image {}", file.display()))?;
            let resized = decoded.resize_exact(size, size, FilterType::Triangle);
            let bytes = if options.grayscale {
                resized.into_luma8().into_raw()
            } else {
                resized.into_rgb8().into_raw()
            };
            // HWC -> CHW.
            let plane = (size * size) as usize;
            for c in 0..channels {
                pixels.extend((0..plane).map(|i| bytes[i * channels + c]));
            }
            labels.push(label);
        }
    }
    if labels.is_empty() {
        bail!(
            "{} holds no PNG, JPEG or BMP images in class sub-folders",
            split_dir.display()
        );
    }
    let n = labels.len() as i64;
    Ok(Split {
        images: Tensor::from_slice(&pixels)
            .view([n, channels as i64, size as i64, size as i64])
            .to_kind(Kind::Float)
            / 255.0,
        labels: Tensor::from_slice(&labels),
    })
}

/// Loads `root/train` and `root/test` (or `root/val`).
pub fn load(root: &Path, options: &ImageFolderSection) -> Result<ImageFolder> {
    if options.size == 0 {
        bail!("config field `data.image_folder.size` must be at least 1");
    }
    let train_dir = root.join("train");
    if !train_dir.is_dir() {
        bail!(
            "{} has no train/ folder (expected train/<class>/* and test/<class>/* images)",
            root.display()
        );
    }
    let test_dir = ["test", "val"]
        .iter()
        .map(|name| root.join(name))
        .find(|dir| dir.is_dir())
        .with_context(|| format!("{} has no test/ or val/ folder", root.display()))?;
    let classes: Vec<String> = class_folders(&train_dir)?
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    if classes.len() < 2 {
        bail!(
            "{} needs at least two class folders, found {}",
            train_dir.display(),
            classes.len()
        );
    }
    Ok(ImageFolder {
        train: read_split(&train_dir, &classes, options)?,
        test: read_split(&test_dir, &classes, options)?,
        classes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_image(path: &Path, colour: [u8; 3], size: (u32, u32)) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(size.0, size.1, image::Rgb(colour))
            .save(path)
            .unwrap();
    }

    #[test]
    fn reads_classes_in_sorted_order_and_resizes() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write_image(&r.join("train/red/a.png"), [255, 0, 0], (10, 6));
        write_image(&r.join("train/red/b.jpg"), [255, 0, 0], (8, 8));
        write_image(&r.join("train/blue/c.png"), [0, 0, 255], (5, 7));
        write_image(&r.join("val/blue/d.bmp"), [0, 0, 255], (4, 4));
        std::fs::write(r.join("train/red/notes.txt"), "ignored").unwrap();
        let options = ImageFolderSection {
            size: 4,
            grayscale: false,
        };
        let folder = load(r, &options).unwrap();
        assert_eq!(folder.classes, ["blue", "red"]);
        assert_eq!(folder.train.images.size(), [3, 3, 4, 4]);
        assert_eq!(
            Vec::<i64>::try_from(&folder.train.labels).unwrap(),
            [0, 1, 1]
        );
        assert_eq!(folder.test.len(), 1);
        // Blue image: channel 2 is 1, channels 0 and 1 are 0 (a uniform colour survives resizing).
        let blue = folder.train.images.get(0);
        assert!((blue.get(2).mean(Kind::Float).double_value(&[]) - 1.0).abs() < 1e-6);
        assert!(blue.get(0).abs().max().double_value(&[]) < 1e-6);
        // JPEG is lossy; the red channel of the JPEG is still close to 1.
        let jpeg_red = folder
            .train
            .images
            .get(2)
            .get(0)
            .mean(Kind::Float)
            .double_value(&[]);
        assert!(jpeg_red > 0.95, "{jpeg_red}");
        let (mean, std) = folder.train_statistics();
        assert_eq!(mean.len(), 3);
        assert!(std.iter().all(|&s| s > 0.0));

        let grey = load(
            r,
            &ImageFolderSection {
                size: 2,
                grayscale: true,
            },
        )
        .unwrap();
        assert_eq!(grey.train.images.size(), [3, 1, 2, 2]);
    }

    #[test]
    fn errors_name_the_folder() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let options = ImageFolderSection::default();
        let err = load(r, &options).err().unwrap().to_string();
        assert!(err.contains("no train/ folder"), "{err}");
        write_image(&r.join("train/a/x.png"), [1, 2, 3], (2, 2));
        write_image(&r.join("train/b/y.png"), [1, 2, 3], (2, 2));
        write_image(&r.join("test/c/z.png"), [1, 2, 3], (2, 2));
        let err = load(r, &options).err().unwrap().to_string();
        assert!(err.contains("class folder `c`"), "{err}");
        std::fs::write(r.join("train/a/broken.png"), "not a png").unwrap();
        std::fs::remove_dir_all(r.join("test/c")).unwrap();
        write_image(&r.join("test/a/z.png"), [1, 2, 3], (2, 2));
        let err = format!("{:#}", load(r, &options).err().unwrap());
        assert!(err.contains("broken.png"), "{err}");
    }
}
