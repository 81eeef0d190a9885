//! `nas bench-data`: the input pipeline alone on an image folder — indexing, then batches of
//! the training split read, decoded, augmented and collated by the worker pool, timed after a
//! warm-up — and the process's peak resident memory. The peer is `bench/peer_pipeline.py`
//! (torchvision `ImageFolder` + `DataLoader`), run side by side by `scripts/bench-pipeline.sh`.

use std::time::Instant;

use anyhow::{bail, Result};
use serde::Serialize;
use tch::Device;

use crate::{
    cli::BenchDataArgs,
    config::DataSection,
    data::{BatchSource, Dataset, TrainLoader},
};

#[derive(Serialize)]
struct DataBenchReport {
    folder: String,
    preset: String,
    resolution: u32,
    batch: usize,
    workers: usize,
    train_images: usize,
    index_seconds: f64,
    batches: u64,
    images_per_s: f64,
    peak_rss_mib: f64,
}

/// Peak resident set size of this process, in MiB (Linux `VmHWM`).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Runs the benchmark.
pub fn bench_data(args: &BenchDataArgs) -> Result<()> {
    if args.batches == 0 || args.batch == 0 {
        bail!("--batches and --batch must be at least 1");
    }
    let mut section = DataSection {
        dataset: "image-folder".into(),
        path: args.folder.clone(),
        workers: args.workers,
        prefetch: args.prefetch,
        ..DataSection::default()
    };
    section.image_folder.size = args.resolution;
    section.augment.preset = args.preset.clone();
    section.augment.color_jitter = args.color_jitter;
    let seed = 0;
    let started = Instant::now();
    let data = Dataset::load(&section, seed, Device::Cpu)?;
    let index_seconds = started.elapsed().as_secs_f64();
    let batches = BatchSource::new(data.train.len(), args.batch, seed)?;
    let mut loader = TrainLoader::new(
        &data.train,
        batches,
        &data.info.augment,
        data.pipeline_settings(&section, seed),
        Device::Cpu,
    )?;
    const WARM_UP: u64 = 3;
    for index in 0..WARM_UP {
        loader.batch(&data.train, index)?;
    }
    let timed = Instant::now();
    let mut images = 0usize;
    for index in WARM_UP..WARM_UP + args.batches {
        images += loader.batch(&data.train, index)?.images.size()[0] as usize;
    }
    let seconds = timed.elapsed().as_secs_f64();
    let report = DataBenchReport {
        folder: args.folder.display().to_string(),
        preset: args.preset.clone(),
        resolution: args.resolution,
        batch: args.batch,
        workers: args.workers,
        train_images: data.train.len(),
        index_seconds,
        batches: args.batches,
        images_per_s: images as f64 / seconds,
        peak_rss_mib: peak_rss_mib(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "pipeline on {} ({} training images, indexed in {:.2}s)",
            report.folder, report.train_images, report.index_seconds
        );
        println!(
            "  {} at {}x{}, batch {}, {} workers: {:.0} images/s over {} batches",
            report.preset,
            report.resolution,
            report.resolution,
            report.batch,
            report.workers,
            report.images_per_s,
            report.batches
        );
        println!("  peak resident memory {:.0} MiB", report.peak_rss_mib);
    }
    Ok(())
}
