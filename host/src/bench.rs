//! `nas bench`: supernet training speed on synthetic data, through the real trainer and plugins.
//!
//! Reports steps/s and where a step's time goes; the host overhead is the share of wall time
//! spent outside libtorch work (planning, checks, complexity and bookkeeping). Compare with the
//! PyTorch peer `bench/peer_nb201.py` (see `scripts/bench.sh`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use crate::{
    config::RunConfig,
    device, session,
    trainer::{StepTimings, Trainer},
};

/// Options of `nas bench`.
#[derive(Args, Clone, Debug)]
pub struct BenchOptions {
    /// NB201 channels C.
    #[arg(long, default_value_t = 16)]
    pub channels: i64,
    /// NB201 cells per stage N.
    #[arg(long, default_value_t = 5)]
    pub cells: i64,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Input resolution (3-channel synthetic images).
    #[arg(long, default_value_t = 32)]
    pub resolution: i64,
    /// Timed steps.
    #[arg(long, default_value_t = 50)]
    pub steps: u64,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// libtorch threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Seed of the sampled paths.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct BenchReport {
    options: String,
    steps: u64,
    steps_per_s: f64,
    mean_step_ms: f64,
    host_share_percent: f64,
    data_share_percent: f64,
    compute_share_percent: f64,
    optimizer_share_percent: f64,
}

/// Runs the benchmark.
pub fn bench(options: &BenchOptions, plugin_path: &[PathBuf]) -> Result<()> {
    let mut config = RunConfig::with_default_components();
    config.run.seed = options.seed;
    config.run.device = "cpu".into();
    config.data.dataset = "synthetic".into();
    config.data.synthetic_resolution = options.resolution;
    config.data.synthetic_channels = 3;
    config.data.synthetic_train = options.batch * (options.steps + options.warmup) as usize;
    config.data.synthetic_test = options.batch;
    config
        .space
        .config
        .insert("channels".into(), options.channels.into());
    config
        .space
        .config
        .insert("cells_per_stage".into(), options.cells.into());
    config.train.batch_size = options.batch;
    config.train.steps = options.steps + options.warmup;
    tch::set_num_threads(options.threads as i32);
    let device = device::select(&config.run.device)?;
    let catalog = session::catalog(&config.plugins.path, plugin_path);
    let run_dir = std::env::temp_dir().join(format!("nas-bench-{}", std::process::id()));
    let mut trainer = Trainer::new(config, run_dir, catalog, device, false)?;
    trainer.bench_steps(options.warmup)?;
    let timings = trainer.bench_steps(options.steps)?;
    let sum = timings
        .iter()
        .fold(StepTimings::default(), |acc, t| StepTimings {
            host: acc.host + t.host,
            data: acc.data + t.data,
            compute: acc.compute + t.compute,
            optimizer: acc.optimizer + t.optimizer,
            total: acc.total + t.total,
        });
    let share = |x: f64| 100.0 * x / sum.total;
    let report = BenchReport {
        options: format!(
            "nb201 C={} N={} batch={} {}x{} threads={} steps={} warmup={}",
            options.channels,
            options.cells,
            options.batch,
            options.resolution,
            options.resolution,
            options.threads,
            options.steps,
            options.warmup
        ),
        steps: options.steps,
        steps_per_s: options.steps as f64 / sum.total,
        mean_step_ms: 1000.0 * sum.total / options.steps as f64,
        host_share_percent: share(sum.host),
        data_share_percent: share(sum.data),
        compute_share_percent: share(sum.compute),
        optimizer_share_percent: share(sum.optimizer),
    };
    if options.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report.options);
        println!("  steps/s          {:.3}", report.steps_per_s);
        println!("  mean step        {:.1} ms", report.mean_step_ms);
        println!("  host overhead    {:.2} %", report.host_share_percent);
        println!("  batch gather     {:.2} %", report.data_share_percent);
        println!("  fwd+loss+bwd     {:.2} %", report.compute_share_percent);
        println!("  optimizer        {:.2} %", report.optimizer_share_percent);
    }
    Ok(())
}
