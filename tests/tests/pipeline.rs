//! Acceptance of the input pipeline: streamed image folders train and resume bit-identically
//! whatever the worker count; bad input is refused or skipped with a message, never a crash.

use std::{io::Write, path::Path, time::Duration};

use nas_tests::*;

/// Writes `ROOT/{train,test}/<class>/*` images of varying sizes whose colour and stripe pattern
/// depend on the class (JPEG and PNG mixed).
fn write_folder(root: &Path, per_class_train: usize, per_class_test: usize) {
    let classes = ["circle", "stripes", "plain"];
    for (split, count) in [("train", per_class_train), ("test", per_class_test)] {
        for (label, class) in classes.iter().enumerate() {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..count {
                let (w, h) = (24 + (i as u32 * 7) % 20, 20 + (i as u32 * 5) % 16);
                let image = image::RgbImage::from_fn(w, h, |x, y| {
                    let base = (i * 13 % 40) as u8;
                    match label {
                        0 => {
                            let (dx, dy) = (x as i32 - w as i32 / 2, y as i32 - h as i32 / 2);
                            let inside = dx * dx + dy * dy < (h as i32 / 3).pow(2);
                            image::Rgb(if inside {
                                [220, base, 40]
                            } else {
                                [base, base, base]
                            })
                        }
                        1 => image::Rgb(if (x / 3) % 2 == 0 {
                            [40, 200, base]
                        } else {
                            [base, 20, 90]
                        }),
                        _ => image::Rgb([base + 60, base + 60, 200]),
                    }
                });
                let name = if i % 2 == 0 {
                    format!("{i}.png")
                } else {
                    format!("{i}.jpg")
                };
                image.save(dir.join(name)).unwrap();
            }
        }
    }
}

fn folder_args(out: &Path, name: &str, root: &Path, extra: &[&str]) -> Vec<String> {
    let mut sets: Vec<String> = vec![
        format!("run.out_dir={}", out.display()),
        format!("run.name={name}"),
        "run.threads=1".into(),
        "run.device=cpu".into(),
        "data.dataset=\"image-folder\"".into(),
        format!("data.path={}", root.display()),
        "data.image_folder.size=16".into(),
        "data.holdout=12".into(),
        "data.augment.preset=\"imagenet\"".into(),
        "space.config.channels=4".into(),
        "space.config.cells_per_stage=1".into(),
        "train.batch_size=16".into(),
        "train.progress=false".into(),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    sets.into_iter()
        .flat_map(|s| ["--set".to_string(), s])
        .collect()
}

#[test]
fn a_streamed_folder_run_killed_and_resumed_equals_a_straight_run_with_other_workers() {
    let data = tempfile::tempdir().unwrap();
    write_folder(data.path(), 40, 6);
    let out = tempfile::tempdir().unwrap();
    let common = ["train.steps=60", "train.checkpoint_every=4"];
    let mut straight: Vec<&str> = common.to_vec();
    straight.push("data.workers=2");
    run_ok(
        nas()
            .arg("train")
            .args(folder_args(out.path(), "straight", data.path(), &straight)),
    );

    // The same run with one worker, killed after its first checkpoint, then resumed.
    let mut killed_sets: Vec<&str> = common.to_vec();
    killed_sets.push("data.workers=1");
    let killed = out.path().join("killed");
    let mut child = nas()
        .arg("train")
        .args(folder_args(out.path(), "killed", data.path(), &killed_sets))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    kill_after_first_checkpoint(&mut child, &killed, Duration::from_secs(180));
    assert!(!latest_checkpoint(&killed).ends_with("step-00000060"));
    run_ok(nas().args(["train", "--resume"]).arg(&killed));
    assert_same_run(&out.path().join("straight"), &killed);

    // Evaluation and search read the streamed held-out and test splits.
    let stdout = run_ok(nas().args(["eval", "--run"]).arg(&killed).args([
        "--arch",
        "[3,3,3,3,3,3]",
        "--arch",
        "[0,1,2,3,4,0]",
        "--split",
        "holdout",
    ]));
    assert!(stdout.contains("results:"), "{stdout}");
}

#[test]
fn a_corrupt_training_image_is_skipped_warned_about_and_counted() {
    let data = tempfile::tempdir().unwrap();
    write_folder(data.path(), 10, 2);
    let bad = data.path().join("train/plain/99-corrupt.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff\xe0 this is not a JPEG").unwrap();
    let out = tempfile::tempdir().unwrap();
    // 31 images, batch 16, 1 epoch = 1 step; the corrupt file lands in a batch in 2 of 3 epochs.
    let (output, stdout, stderr) = run(nas().arg("train").args(folder_args(
        out.path(),
        "skip",
        data.path(),
        &["train.epochs=3", "data.holdout=0"],
    )));
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let metrics = std::fs::read_to_string(out.path().join("skip/metrics.jsonl")).unwrap();
    let skipped: u64 = metrics
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            record["skipped_images"].as_u64().unwrap_or(0)
        })
        .sum();
    let warnings = stderr.matches("99-corrupt.jpg").count() as u64;
    assert!(
        skipped >= 1 && warnings == skipped,
        "{skipped} skipped, {warnings} warnings\n{stderr}"
    );
    assert!(
        stdout.contains("unreadable training images were skipped"),
        "{stdout}"
    );

    let (output, _, stderr) = run(nas().arg("train").args(folder_args(
        out.path(),
        "fail",
        data.path(),
        &[
            "train.epochs=3",
            "data.holdout=0",
            "data.on_bad_image=\"fail\"",
        ],
    )));
    assert!(!output.status.success());
    assert!(
        stderr.contains("99-corrupt.jpg") && stderr.contains("data.on_bad_image"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("libtorch"),
        "{stderr}"
    );
}

#[test]
fn an_empty_class_folder_is_refused_with_its_path() {
    let data = tempfile::tempdir().unwrap();
    write_folder(data.path(), 4, 2);
    std::fs::create_dir_all(data.path().join("train/zebra")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let (output, _, stderr) = run(nas().arg("train").args(folder_args(
        out.path(),
        "empty",
        data.path(),
        &["train.steps=1", "data.holdout=0"],
    )));
    assert!(!output.status.success());
    assert!(
        stderr.contains("train/zebra") && stderr.contains("holds no"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn gz(path: &Path, bytes: &[u8]) {
    let file = std::fs::File::create(path).unwrap();
    let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap();
}

/// Fashion-MNIST files of `n` 28x28 images with the given labels.
fn write_idx(dir: &Path, prefix: &str, labels: &[u8]) {
    let n = labels.len() as u32;
    let mut images = Vec::new();
    for value in [0x0803u32, n, 28, 28] {
        images.extend_from_slice(&value.to_be_bytes());
    }
    images.extend(std::iter::repeat_n(7u8, labels.len() * 784));
    gz(&dir.join(format!("{prefix}-images-idx3-ubyte.gz")), &images);
    let mut label_bytes = Vec::new();
    for value in [0x0801u32, n] {
        label_bytes.extend_from_slice(&value.to_be_bytes());
    }
    label_bytes.extend_from_slice(labels);
    gz(
        &dir.join(format!("{prefix}-labels-idx1-ubyte.gz")),
        &label_bytes,
    );
}

#[test]
fn out_of_range_labels_are_refused_naming_the_file_and_the_value() {
    let out = tempfile::tempdir().unwrap();
    let train = |dataset: &str, dir: &Path| {
        let mut command = nas();
        command
            .arg("train")
            .args(small_run_args(out.path(), dataset))
            .args([
                "--set",
                &format!("data.dataset=\"{dataset}\""),
                "--set",
                &format!("data.path={}", dir.display()),
                "--set",
                "train.steps=1",
            ]);
        run(&mut command)
    };
    // One bad label, then many: both refused at load, never a libtorch trace.
    for labels in [vec![0u8, 1, 2, 10, 4, 5], vec![200u8; 40]] {
        let dir = tempfile::tempdir().unwrap();
        write_idx(dir.path(), "train", &labels);
        write_idx(dir.path(), "t10k", &[0, 1]);
        let (output, _, stderr) = train("fashion-mnist", dir.path());
        assert!(!output.status.success());
        let position = labels.iter().position(|&l| l >= 10).unwrap();
        let expected = format!(
            "label {} of example {position} is out of range",
            labels[position]
        );
        assert!(
            stderr.contains("train-labels-idx1-ubyte.gz") && stderr.contains(&expected),
            "{stderr}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("c10::"),
            "{stderr}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let record = |label: u8| {
        let mut bytes = vec![label];
        bytes.extend(std::iter::repeat_n(9u8, 3072));
        bytes
    };
    for i in 1..=5 {
        let labels: Vec<u8> = if i == 3 { vec![1, 12] } else { vec![1, 2] };
        let bytes: Vec<u8> = labels.into_iter().flat_map(record).collect();
        std::fs::write(dir.path().join(format!("data_batch_{i}.bin")), bytes).unwrap();
    }
    std::fs::write(dir.path().join("test_batch.bin"), record(0)).unwrap();
    let (output, _, stderr) = train("cifar10", dir.path());
    assert!(!output.status.success());
    assert!(
        stderr.contains("data_batch_3.bin") && stderr.contains("label 12 of record 1"),
        "{stderr}"
    );
}
