//! What each `nas` subcommand does, from parsed arguments to outputs.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::{
    config::RunConfig,
    data::{BatchSource, Dataset},
    device,
    eval::{evaluate, BnPolicy, EvalResult},
    plugins::Origin,
    session::{self, load_run_config, Space},
    trainer::{self, StopPolicy, Trainer},
};

fn set_threads(threads: usize) {
    if threads > 0 {
        tch::set_num_threads(threads as i32);
    }
}

/// `nas train`.
pub fn train(
    config_path: Option<&Path>,
    overrides: &[String],
    resume: Option<&Path>,
    stop_after_steps: Option<u64>,
    plugin_path: &[PathBuf],
) -> Result<()> {
    let (config, run_dir) = match resume {
        Some(dir) => {
            let path = dir.join("config.toml");
            let config = RunConfig::load(Some(&path), overrides)
                .with_context(|| format!("--resume {}: reading the run's config", dir.display()))?;
            (config, dir.to_path_buf())
        }
        None => {
            let config = RunConfig::load(config_path, overrides)?;
            let dir = trainer::run_dir(&config);
            if crate::checkpoint::latest(&dir)?.is_some() {
                bail!(
                    "run folder {} already holds a trained run; continue it with `nas train --resume {}` or pick another `run.name`",
                    dir.display(),
                    dir.display()
                );
            }
            (config, dir)
        }
    };
    set_threads(config.run.threads);
    let device = device::select(&config.run.device)?;
    let catalog = session::catalog(&config.plugins.path, plugin_path);
    let mut trainer = Trainer::new(config.clone(), run_dir, catalog, device, resume.is_some())?;
    let summary = trainer.run(
        StopPolicy {
            after_steps: stop_after_steps,
        },
        config.train.progress,
    )?;
    println!(
        "trained {} steps ({}/{} done) in {:.1}s, {:.0} img/s, final loss {:.4}",
        summary.steps_run,
        summary.step,
        summary.total_steps,
        summary.seconds,
        summary.mean_images_per_s,
        summary.final_loss
    );
    println!("run folder: {}", summary.run_dir.display());
    println!("checkpoint: {}", summary.checkpoint.display());
    Ok(())
}

/// One subnet's evaluation, as written to `<run>/eval/`.
#[derive(Serialize)]
pub struct EvalRecord {
    /// Arch text.
    pub arch: String,
    /// Choice indices.
    pub choices: Vec<u32>,
    /// MACs.
    pub macs: u64,
    /// Params.
    pub params: u64,
    /// The result (accuracy, loss, BN policy).
    pub result: EvalResult,
    /// Split evaluated.
    pub split: String,
    /// Checkpoint evaluated.
    pub checkpoint: PathBuf,
    /// Space plugin.
    pub space: Origin,
    /// Data provenance.
    pub data: crate::data::DataInfo,
}

/// Evaluates `archs` of the run in `run_dir`.
pub fn eval_archs(
    run_dir: &Path,
    archs: &[String],
    bn: BnPolicy,
    split_name: &str,
    plugin_path: &[PathBuf],
) -> Result<Vec<EvalRecord>> {
    let config = load_run_config(run_dir)?;
    set_threads(config.run.threads);
    let device = device::select(&config.run.device)?;
    let data = Dataset::load(&config.data, config.run.seed, device)?;
    let catalog = session::catalog(&config.plugins.path, plugin_path);
    let mut space = Space::create(
        &catalog,
        &config.space,
        Some((data.channels, data.resolution, data.classes)),
    )?;
    space.build(device)?;
    let checkpoint = trainer::load_weights(&space, run_dir)?;
    let split = match split_name {
        "test" => &data.test,
        "holdout" => &data.holdout,
        other => bail!("--split `{other}`: use test or holdout"),
    };
    if split.is_empty() {
        bail!(
            "the {split_name} split is empty (set data.holdout in the run's config to carve one)"
        );
    }
    let mut calibration = BatchSource::new(
        data.train.len(),
        config.train.batch_size,
        // Calibration batches come from their own stream, not the training order.
        config.run.seed ^ 0x5eed_ca1b,
    )?;
    let mut records = Vec::new();
    for text in archs {
        let arch = space.parse_arch(text)?;
        let complexity = space
            .complexity(&arch)
            .map_err(|e| space.origin.error("complexity", e))?;
        let result = evaluate(
            &space.client,
            &space.origin,
            &arch,
            split,
            config.eval.batch_size,
            bn,
            Some((&data.train, &mut calibration)),
        )?;
        // Recalibration changes the buffers; reload them so each arch starts from the checkpoint.
        trainer::load_weights(&space, run_dir)?;
        records.push(EvalRecord {
            arch: space.arch_text(&arch)?,
            choices: arch.choices().to_vec(),
            macs: complexity.macs,
            params: complexity.params,
            result,
            split: split_name.to_string(),
            checkpoint: checkpoint.clone(),
            space: space.origin.clone(),
            data: data.info.clone(),
        });
    }
    Ok(records)
}

fn policy_name(policy: BnPolicy) -> String {
    match policy {
        BnPolicy::BatchStats => "batch-stats".into(),
        BnPolicy::Recalibrate { batches } => format!("recalibrate-{batches}"),
    }
}

fn print_eval_table(records: &[EvalRecord]) {
    println!(
        "{:>8}  {:>9}  {:>9}  {:<18}  arch",
        "acc %", "MMACs", "Mparams", "BN policy"
    );
    for r in records {
        println!(
            "{:>8.2}  {:>9.3}  {:>9.4}  {:<18}  {}",
            r.result.accuracy,
            r.macs as f64 / 1e6,
            r.params as f64 / 1e6,
            policy_name(r.result.bn),
            r.arch
        );
    }
}

fn write_eval_records(run_dir: &Path, records: &[EvalRecord]) -> Result<PathBuf> {
    use sha2::{Digest, Sha256};
    let key: String = records
        .iter()
        .map(|r| format!("{}|{}|{}", r.arch, policy_name(r.result.bn), r.split))
        .collect::<Vec<_>>()
        .join(";");
    let digest = Sha256::digest(key.as_bytes());
    let name: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    let path = run_dir.join("eval").join(format!("eval-{name}.json"));
    crate::io::write_json_atomic(&path, &records)?;
    Ok(path)
}

/// `nas eval`.
pub fn eval(
    run_dir: &Path,
    archs: &[String],
    bn: Option<&str>,
    calib_batches: Option<usize>,
    split: &str,
    plugin_path: &[PathBuf],
) -> Result<()> {
    let config = load_run_config(run_dir)?;
    let policy = BnPolicy::parse(
        bn.unwrap_or(&config.eval.bn),
        calib_batches.unwrap_or(config.eval.calib_batches),
    )?;
    let records = eval_archs(run_dir, archs, policy, split, plugin_path)?;
    print_eval_table(&records);
    let path = write_eval_records(run_dir, &records)?;
    println!("results: {}", path.display());
    Ok(())
}

/// `nas complexity`.
pub fn complexity(
    config_path: Option<&Path>,
    overrides: &[String],
    space_name: Option<&str>,
    archs: &[String],
    json: bool,
    plugin_path: &[PathBuf],
) -> Result<()> {
    let mut config = RunConfig::load(config_path, overrides)?;
    if let Some(name) = space_name {
        if name != config.space.name {
            config.space.name = name.to_string();
            config.space.config = toml::Table::new();
        }
    }
    let catalog = session::catalog(&config.plugins.path, plugin_path);
    let space = Space::create(&catalog, &config.space, None)?;
    #[derive(Serialize)]
    struct Row {
        arch: String,
        choices: Vec<u32>,
        macs: u64,
        params: u64,
    }
    let mut rows = Vec::new();
    for text in archs {
        let arch = space.parse_arch(text)?;
        let c = space
            .complexity(&arch)
            .map_err(|e| space.origin.error("complexity", e))?;
        rows.push(Row {
            arch: space.arch_text(&arch)?,
            choices: arch.choices().to_vec(),
            macs: c.macs,
            params: c.params,
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("{:>12}  {:>10}  arch", "MMACs", "Mparams");
        for r in &rows {
            println!(
                "{:>12.5}  {:>10.6}  {}",
                r.macs as f64 / 1e6,
                r.params as f64 / 1e6,
                r.arch
            );
        }
    }
    Ok(())
}

/// `nas plugins list`.
pub fn plugins_list(plugin_path: &[PathBuf]) -> Result<()> {
    let catalog = session::catalog(&[], plugin_path);
    let catalog = catalog.borrow();
    println!(
        "search path: {}",
        catalog
            .dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if catalog.libraries.is_empty() {
        println!("no plugins found");
    }
    for library in &catalog.libraries {
        println!(
            "\n{} ({} {}, nas-sdk {}, libtorch {})",
            library.path.display(),
            library.metadata.library,
            library.metadata.library_version,
            library.metadata.sdk_version,
            library.metadata.libtorch_version
        );
        for c in &library.components {
            println!(
                "  {:<9} {:<12} {:<8} {}",
                c.kind.as_str(),
                c.name,
                c.version,
                c.description
            );
        }
    }
    for err in &catalog.rejected {
        println!("\nrejected: {err}");
    }
    Ok(())
}

/// `nas plugins show NAME`.
pub fn plugins_show(name: &str, plugin_path: &[PathBuf]) -> Result<()> {
    let catalog = session::catalog(&[], plugin_path);
    let mut catalog = catalog.borrow_mut();
    let mut found = false;
    for kind in [
        nas_sdk::ComponentKind::Space,
        nas_sdk::ComponentKind::Sampler,
        nas_sdk::ComponentKind::Generator,
    ] {
        if let Ok((library, info)) = catalog.resolve(kind, name) {
            found = true;
            let config: serde_json::Value =
                serde_json::from_str(&info.default_config).unwrap_or_default();
            println!("{} `{}` {}", info.kind, info.name, info.version);
            println!("  {}", info.description);
            println!(
                "  library: {} ({} {}, nas-sdk {}, libtorch {})",
                library.path.display(),
                library.metadata.library,
                library.metadata.library_version,
                library.metadata.sdk_version,
                library.metadata.libtorch_version
            );
            println!(
                "  default config:\n{}",
                indent(&serde_json::to_string_pretty(&config)?, 4)
            );
        }
    }
    if !found {
        // Reproduce the resolver's detailed message (search path, rejected libraries).
        catalog.resolve(nas_sdk::ComponentKind::Space, name)?;
    }
    Ok(())
}

fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `nas config`.
pub fn print_config(config_path: Option<&Path>, overrides: &[String]) -> Result<()> {
    let config = RunConfig::load(config_path, overrides)?;
    print!("{}", config.to_toml());
    Ok(())
}

/// The demo's config: NB201 (C=16, N=1) on Fashion-MNIST, uniform sampling, one epoch.
pub fn demo_config(out_dir: &Path, name: &str) -> RunConfig {
    let mut config = RunConfig::with_default_components();
    config.run.name = name.to_string();
    config.run.out_dir = out_dir.to_path_buf();
    config.run.threads = 2;
    config.space.config.insert("channels".into(), 16.into());
    config
        .space
        .config
        .insert("cells_per_stage".into(), 1.into());
    config.train.epochs = 1;
    config.train.batch_size = 64;
    config
}

/// Archs the demo evaluates: the extremes and a few landmarks of NAS-Bench-201.
pub const DEMO_ARCHS: [&str; 5] = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_1x1~2|",
    "|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|",
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
];

/// `nas demo`.
pub fn demo(
    out_dir: &Path,
    name: &str,
    overrides: &[String],
    plugin_path: &[PathBuf],
) -> Result<()> {
    let config = RunConfig::load_over(demo_config(out_dir, name), None, overrides)?;
    let run_dir = trainer::run_dir(&config);
    if run_dir.exists() {
        bail!(
            "{} exists; remove it or pass --name to start a fresh demo run",
            run_dir.display()
        );
    }
    println!("[1/2] training an NB201 supernet (C=16, N=1) on Fashion-MNIST with uniform sampling");
    set_threads(config.run.threads);
    let device = device::select(&config.run.device)?;
    let catalog = session::catalog(&config.plugins.path, plugin_path);
    let mut trainer = Trainer::new(config.clone(), run_dir.clone(), catalog, device, false)?;
    let summary = trainer.run(StopPolicy::default(), config.train.progress)?;
    println!(
        "      {} steps in {:.1}s ({:.0} img/s), final loss {:.4}",
        summary.step, summary.seconds, summary.mean_images_per_s, summary.final_loss
    );
    drop(trainer);
    println!(
        "[2/2] evaluating {} subnets on the test split (BN: batch statistics)",
        DEMO_ARCHS.len()
    );
    let archs: Vec<String> = DEMO_ARCHS.iter().map(|s| s.to_string()).collect();
    let records = eval_archs(&run_dir, &archs, BnPolicy::BatchStats, "test", plugin_path)?;
    print_eval_table(&records);
    let path = write_eval_records(&run_dir, &records)?;
    println!(
        "\nrun folder: {} (config.toml, metrics.jsonl, plots/loss.svg, checkpoints/, {})",
        run_dir.display(),
        path.strip_prefix(&run_dir).unwrap_or(&path).display()
    );
    Ok(())
}

pub use crate::bench::{bench, BenchOptions};
