//! Image-folder datasets: `ROOT/train/<class>/*` and `ROOT/test/<class>/*` (or `ROOT/val/`), the
//! torchvision `ImageFolder` layout, streamed. A [`FileIndex`] of paths and labels is built once
//! (sorted, so the example order and the seeded held-out split are the same on every machine);
//! images are decoded on demand by the pipeline's workers.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::image::Image;

/// File extensions read (lower-case).
const EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "bmp"];

/// The images of one split of a folder and their labels.
#[derive(Debug)]
pub struct FileIndex {
    /// The split's folder.
    pub dir: PathBuf,
    /// Image files, sorted by class then name.
    pub files: Vec<PathBuf>,
    /// Label of each file.
    pub labels: Vec<i64>,
}

/// A folder's classes and the index of its training and test splits.
#[derive(Debug)]
pub struct FolderIndex {
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// `ROOT/train`.
    pub train: FileIndex,
    /// `ROOT/test` or `ROOT/val`.
    pub test: FileIndex,
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
        let entry = entry?;
        let path = entry.path();
        let known = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if known
            && entry
                .file_type()
                .is_ok_and(|t| t.is_file() || t.is_symlink())
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn index_split(split_dir: &Path, classes: &[String], progress: &ProgressBar) -> Result<FileIndex> {
    let found = class_folders(split_dir)?;
    let mut index = FileIndex {
        dir: split_dir.to_path_buf(),
        files: Vec::new(),
        labels: Vec::new(),
    };
    for (name, dir) in &found {
        let Some(label) = classes.iter().position(|c| c == name) else {
            bail!(
                "{} has class folder `{name}`, which the training split lacks (classes: {})",
                split_dir.display(),
                classes.join(", ")
            );
        };
        let files = image_files(dir)?;
        if files.is_empty() {
            bail!(
                "class folder {} holds no PNG, JPEG or BMP images; add images or remove the folder",
                dir.display()
            );
        }
        progress.inc(files.len() as u64);
        index
            .labels
            .extend(std::iter::repeat_n(label as i64, files.len()));
        index.files.extend(files);
    }
    if index.files.is_empty() {
        bail!(
            "{} holds no PNG, JPEG or BMP images in class sub-folders",
            split_dir.display()
        );
    }
    Ok(index)
}

/// Indexes `root/train` and `root/test` (or `root/val`), showing progress on a terminal.
pub fn index(root: &Path) -> Result<FolderIndex> {
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
    let progress = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    progress.set_style(
        ProgressStyle::with_template("{spinner} indexing {msg}: {pos} images [{elapsed}]")
            .expect("valid template"),
    );
    progress.set_message(root.display().to_string());
    let train = index_split(&train_dir, &classes, &progress)?;
    let test = index_split(&test_dir, &classes, &progress)?;
    progress.finish_and_clear();
    Ok(FolderIndex {
        classes,
        train,
        test,
    })
}

/// Reads and decodes one image file to RGB (or grey).
pub fn decode(path: &Path, grayscale: bool) -> Result<Image> {
    let bytes = std::fs::read(path).with_context(|| format!("reading image {}", path.display()))?;
    let decoded = image::load_from_memory(&bytes)
        .with_context(|| format!("decoding image {}", path.display()))?;
    let (width, height) = (decoded.width(), decoded.height());
    if width == 0 || height == 0 {
        bail!("image {} is empty ({width}x{height})", path.display());
    }
    Ok(if grayscale {
        Image {
            width,
            height,
            channels: 1,
            pixels: decoded.into_luma8().into_raw(),
        }
    } else {
        Image {
            width,
            height,
            channels: 3,
            pixels: decoded.into_rgb8().into_raw(),
        }
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
    fn indexes_classes_in_sorted_order() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write_image(&r.join("train/red/a.png"), [255, 0, 0], (10, 6));
        write_image(&r.join("train/red/b.jpg"), [255, 0, 0], (8, 8));
        write_image(&r.join("train/blue/c.png"), [0, 0, 255], (5, 7));
        write_image(&r.join("val/blue/d.bmp"), [0, 0, 255], (4, 4));
        std::fs::write(r.join("train/red/notes.txt"), "ignored").unwrap();
        let index = index(r).unwrap();
        assert_eq!(index.classes, ["blue", "red"]);
        assert_eq!(index.train.labels, [0, 1, 1]);
        assert!(index.train.files[1].ends_with("red/a.png"));
        assert_eq!(index.test.files.len(), 1);
        let red = decode(&index.train.files[1], false).unwrap();
        assert_eq!((red.width, red.height, red.channels), (10, 6, 3));
        assert_eq!(red.at(3, 3, 0), 255);
        let grey = decode(&index.train.files[0], true).unwrap();
        assert_eq!(grey.channels, 1);
    }

    #[test]
    fn errors_name_the_folder() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let err = index(r).err().unwrap().to_string();
        assert!(err.contains("no train/ folder"), "{err}");
        write_image(&r.join("train/a/x.png"), [1, 2, 3], (2, 2));
        write_image(&r.join("train/b/y.png"), [1, 2, 3], (2, 2));
        write_image(&r.join("test/c/z.png"), [1, 2, 3], (2, 2));
        let err = index(r).err().unwrap().to_string();
        assert!(err.contains("class folder `c`"), "{err}");
        std::fs::remove_dir_all(r.join("test/c")).unwrap();
        write_image(&r.join("test/a/z.png"), [1, 2, 3], (2, 2));
        std::fs::create_dir_all(r.join("train/empty")).unwrap();
        let err = index(r).err().unwrap().to_string();
        assert!(
            err.contains("train/empty") && err.contains("holds no PNG, JPEG or BMP images"),
            "{err}"
        );
        std::fs::remove_dir_all(r.join("train/empty")).unwrap();
        std::fs::write(r.join("train/a/broken.png"), "not a png").unwrap();
        let index = index(r).unwrap();
        let err = format!("{:#}", decode(&index.train.files[0], false).err().unwrap());
        assert!(err.contains("broken.png"), "{err}");
    }
}
