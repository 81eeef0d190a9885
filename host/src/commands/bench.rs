//! `nas bench`: supernet training speed on synthetic data, through the real trainer and plugins.
//!
//! Reports steps/s and where a step's time goes; the host overhead is the share of wall time
//! spent outside libtorch work (planning, checks, complexity and bookkeeping). Compare with the
//! PyTorch peers `bench/peer_nb201.py` and `bench/peer_vit.py` (see `scripts/bench.sh` and
//! `scripts/bench-spaces.sh`). With `--arch A --compare-plain` it also trains subnet `A` as a
//! plain model (the space rebuilt at the subnet's sizes) in the same run, which measures what
//! weight slicing costs.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::{
    cli::BenchArgs,
    config::RunConfig,
    device,
    plugins::{open_catalog, Space},
    train::{StepTimings, Trainer},
};

#[derive(Serialize)]
struct BenchReport {
    options: String,
    model: &'static str,
    steps: u64,
    steps_per_s: f64,
    mean_step_ms: f64,
    host_share_percent: f64,
    data_share_percent: f64,
    compute_share_percent: f64,
    optimizer_share_percent: f64,
}

/// Steps per block when the supernet and the plain model alternate.
const BLOCK: u64 = 5;

fn config_for(options: &BenchArgs, space: &str, space_config: toml::Table) -> RunConfig {
    let mut config = RunConfig::with_default_components();
    config.run.seed = options.seed;
    config.run.device = "cpu".into();
    config.data.dataset = "synthetic".into();
    config.data.synthetic_resolution = options.resolution;
    config.data.synthetic_channels = 3;
    config.data.synthetic_classes = options.classes;
    config.data.synthetic_train = options.batch * (options.steps + options.warmup) as usize;
    config.data.synthetic_test = options.batch;
    config.space.name = space.to_string();
    config.space.config = space_config;
    config.train.batch_size = options.batch;
    config.train.steps = options.steps + options.warmup;
    config
}

fn fixed_sampler(config: &mut RunConfig, choices: &[u32]) {
    config.sampler.name = "fixed".into();
    config.sampler.config = toml::Table::new();
    config.sampler.config.insert(
        "choices".into(),
        toml::Value::Array(choices.iter().map(|&c| i64::from(c).into()).collect()),
    );
}

fn json_to_table(json: &str, what: &str) -> Result<toml::Table> {
    serde_json::from_str(json).with_context(|| format!("{what} must be a JSON object"))
}

fn summarise(timings: &[StepTimings]) -> StepTimings {
    timings
        .iter()
        .fold(StepTimings::default(), |acc, t| StepTimings {
            host: acc.host + t.host,
            data: acc.data + t.data,
            compute: acc.compute + t.compute,
            optimizer: acc.optimizer + t.optimizer,
            sync: acc.sync + t.sync,
            total: acc.total + t.total,
        })
}

fn report(description: String, model: &'static str, sum: &StepTimings, steps: u64) -> BenchReport {
    let share = |x: f64| 100.0 * x / sum.total;
    BenchReport {
        options: description,
        model,
        steps,
        steps_per_s: steps as f64 / sum.total,
        mean_step_ms: 1000.0 * sum.total / steps as f64,
        host_share_percent: share(sum.host),
        data_share_percent: share(sum.data),
        compute_share_percent: share(sum.compute),
        optimizer_share_percent: share(sum.optimizer),
    }
}

fn print_report(report: &BenchReport) {
    println!("{} [{}]", report.options, report.model);
    println!("  steps/s          {:.3}", report.steps_per_s);
    println!("  mean step        {:.1} ms", report.mean_step_ms);
    println!("  host overhead    {:.2} %", report.host_share_percent);
    println!("  batch gather     {:.2} %", report.data_share_percent);
    println!("  fwd+loss+bwd     {:.2} %", report.compute_share_percent);
    println!("  optimizer        {:.2} %", report.optimizer_share_percent);
}

/// Runs the benchmark.
pub fn bench(options: &BenchArgs, plugin_path: &[PathBuf]) -> Result<()> {
    let space_config = match (&options.space_config, options.space.as_str()) {
        (Some(json), _) => json_to_table(json, "--space-config")?,
        (None, "nb201") => {
            let mut table = toml::Table::new();
            table.insert("channels".into(), options.channels.into());
            table.insert("cells_per_stage".into(), options.cells.into());
            table
        }
        (None, _) => toml::Table::new(),
    };
    let mut config = config_for(options, &options.space, space_config);
    device::set_threads(options.threads);
    let device = device::select(&config.run.device)?;
    let catalog = open_catalog(&config.plugins.path, plugin_path);
    let mut description = format!(
        "{} {} batch={} {}x{} threads={} steps={} warmup={}",
        options.space,
        match options.space.as_str() {
            "nb201" if options.space_config.is_none() =>
                format!("C={} N={}", options.channels, options.cells),
            _ => options.space_config.clone().unwrap_or_else(|| "{}".into()),
        },
        options.batch,
        options.resolution,
        options.resolution,
        options.threads,
        options.steps,
        options.warmup
    );
    let mut plain_config = None;
    if let Some(arch_text) = &options.arch {
        // A throwaway instance parses the arch and describes its subnet.
        let space = Space::create(
            &catalog,
            &config.space,
            Some((3, options.resolution, options.classes)),
        )?;
        let arch = space.parse_arch(arch_text)?;
        description.push_str(&format!(" arch={}", space.arch_text(&arch)?));
        fixed_sampler(&mut config, arch.choices());
        if options.compare_plain {
            let subnet = space.subnet_config(&arch)?.with_context(|| {
                format!(
                    "--compare-plain: space `{}` cannot build a plain model of a subnet (it has no subnet_config)",
                    options.space
                )
            })?;
            let mut plain = config_for(
                options,
                &options.space,
                json_to_table(&subnet, "the subnet config")?,
            );
            fixed_sampler(&mut plain, &[]);
            plain_config = Some(plain);
        }
    }
    let run_dir = std::env::temp_dir().join(format!("nas-bench-{}", std::process::id()));
    let mut supernet = Trainer::new(config, run_dir.clone(), catalog.clone(), device, false)?;
    supernet.bench_steps(options.warmup)?;
    let mut reports = Vec::new();
    match plain_config {
        None => {
            let timings = supernet.bench_steps(options.steps)?;
            reports.push(report(
                description,
                "supernet",
                &summarise(&timings),
                options.steps,
            ));
        }
        Some(plain_config) => {
            let mut plain =
                Trainer::new(plain_config, run_dir.join("plain"), catalog, device, false)?;
            plain.bench_steps(options.warmup)?;
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            let mut done = 0;
            // Alternating blocks expose both to the same machine conditions.
            while done < options.steps {
                let block = BLOCK.min(options.steps - done);
                ours.extend(supernet.bench_steps(block)?);
                theirs.extend(plain.bench_steps(block)?);
                done += block;
            }
            reports.push(report(
                description.clone(),
                "supernet",
                &summarise(&ours),
                options.steps,
            ));
            reports.push(report(
                description,
                "plain subnet",
                &summarise(&theirs),
                options.steps,
            ));
        }
    }
    if options.json {
        for report in &reports {
            println!("{}", serde_json::to_string(report)?);
        }
    } else {
        for report in &reports {
            print_report(report);
        }
        if let [supernet, plain] = reports.as_slice() {
            println!(
                "slicing overhead: supernet step / plain step = {:.3}x",
                supernet.mean_step_ms / plain.mean_step_ms
            );
        }
    }
    Ok(())
}
