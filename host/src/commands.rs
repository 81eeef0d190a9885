//! What each `nas` subcommand does, from parsed arguments to outputs.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::{
    config::RunConfig,
    device,
    distributed::Distributed,
    eval::{evaluate, BnPolicy, EvalResult},
    plugins::Origin,
    session::{self, load_run_config, Space, TrainedRun},
    trainer::{self, Progress, StopPolicy, Trainer},
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
    let dist = Distributed::from_env(Duration::from_secs_f64(config.run.collective_timeout))?;
    let device = match (&dist, device::select(&config.run.device)?) {
        // One GPU per local rank.
        (Some(dist), tch::Device::Cuda(_)) => tch::Device::Cuda(dist.local_rank()),
        (_, device) => device,
    };
    let rank = dist.as_ref().map_or(0, |d| d.rank());
    let catalog = session::catalog(&config.plugins.path, plugin_path);
    let mut trainer = Trainer::new_with(
        config.clone(),
        run_dir,
        catalog,
        device,
        resume.is_some(),
        dist,
    )?;
    let interrupt = interrupt_flag()?;
    let summary = trainer.run(
        StopPolicy {
            after_steps: stop_after_steps,
            interrupt: Some(interrupt),
        },
        if config.train.progress {
            Progress::Bar
        } else {
            Progress::Lines
        },
    )?;
    if rank > 0 {
        // Rank 0 reports for the run.
        return Ok(());
    }
    println!(
        "trained {} steps ({}/{} done) in {:.1}s, {:.0} img/s, final loss {:.4}",
        summary.steps_run,
        summary.step,
        summary.total_steps,
        summary.seconds,
        summary.mean_images_per_s,
        summary.final_loss
    );
    if summary.world_size > 1 {
        println!(
            "{} processes; exchanges with the other ranks took {:.1}% of step time",
            summary.world_size,
            100.0 * summary.sync_share
        );
    }
    println!("run folder: {}", summary.run_dir.display());
    println!("checkpoint: {}", summary.checkpoint.display());
    if summary.interrupted {
        bail!(
            "training interrupted at step {} of {}; the checkpoint above holds it: continue with `nas train --resume {}`",
            summary.step,
            summary.total_steps,
            summary.run_dir.display()
        );
    }
    Ok(())
}

/// A flag that Ctrl-C (SIGINT) or SIGTERM sets, so training stops after the current step with a
/// checkpoint; a second signal while the flag is set exits at once.
fn interrupt_flag() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    use signal_hook::{
        consts::{SIGINT, SIGTERM},
        flag,
    };
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so a second signal exits before the flag is set again.
        flag::register_conditional_shutdown(signal, 130, interrupted.clone())
            .context("installing the interrupt handler")?;
        flag::register(signal, interrupted.clone()).context("installing the interrupt handler")?;
    }
    Ok(interrupted)
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
    let TrainedRun {
        config,
        data,
        space,
        checkpoint,
    } = TrainedRun::open(run_dir, plugin_path)?;
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
    let mut calibration =
        crate::eval::calibration_batches(&data.train, config.train.batch_size, config.run.seed)?;
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

/// A short name of a BN policy for tables and file names.
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
            r.result.bn.to_string(),
            r.arch
        );
    }
}

fn write_eval_records(run_dir: &Path, records: &[EvalRecord]) -> Result<PathBuf> {
    use sha2::{Digest, Sha256};
    let key: String = records
        .iter()
        .map(|r| format!("{}|{}|{}", r.arch, r.result.bn, r.split))
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
    save_logits: Option<&Path>,
    plugin_path: &[PathBuf],
) -> Result<()> {
    let policy = BnPolicy::for_run(&load_run_config(run_dir)?, bn, calib_batches)?;
    let records = eval_archs(run_dir, archs, policy, split, plugin_path)?;
    print_eval_table(&records);
    let path = write_eval_records(run_dir, &records)?;
    println!("results: {}", path.display());
    if let Some(out) = save_logits {
        let [arch] = archs else {
            bail!("--save-logits takes exactly one --arch");
        };
        write_logits(run_dir, arch, policy, split, out, plugin_path)?;
        println!("logits: {}", out.display());
    }
    Ok(())
}

/// Writes `{input, labels, logits}` of one arch on one split (the images as the space sees them).
fn write_logits(
    run_dir: &Path,
    arch_text: &str,
    policy: BnPolicy,
    split_name: &str,
    out: &Path,
    plugin_path: &[PathBuf],
) -> Result<()> {
    let TrainedRun {
        config,
        data,
        space,
        ..
    } = TrainedRun::open(run_dir, plugin_path)?;
    let split = match split_name {
        "test" => &data.test,
        "holdout" => &data.holdout,
        other => bail!("--split `{other}`: use test or holdout"),
    };
    let arch = space.parse_arch(arch_text)?;
    let mut calibration =
        crate::eval::calibration_batches(&data.train, config.train.batch_size, config.run.seed)?;
    let logits = crate::eval::logits(
        &space.client,
        &space.origin,
        &arch,
        split,
        config.eval.batch_size,
        policy,
        Some((&data.train, &mut calibration)),
    )?;
    crate::io::write_safetensors_atomic(
        out,
        &[
            ("input".to_string(), split.images.shallow_clone()),
            ("labels".to_string(), split.labels.shallow_clone()),
            ("logits".to_string(), logits),
        ],
    )
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

/// The demo's config: NB201 (C=16, N=1) on Fashion-MNIST, uniform sampling, one epoch, with
/// 5,000 training images held out for the search.
pub fn demo_config(out_dir: &Path, name: &str) -> RunConfig {
    let mut config = RunConfig::with_default_components();
    config.run.name = name.to_string();
    config.run.out_dir = out_dir.to_path_buf();
    config.run.threads = 2;
    config.data.holdout = 5000;
    config.space.config.insert("channels".into(), 16.into());
    config
        .space
        .config
        .insert("cells_per_stage".into(), 1.into());
    config.train.epochs = 1;
    config.train.batch_size = 64;
    config
}

/// The demo's search budget: at most this share of the largest subnet's MACs.
const DEMO_BUDGET_SHARE: f64 = 0.5;

/// `nas demo`: train -> search under a MACs budget -> export the best subnet -> summary.
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
    println!(
        "[1/4] training an NB201 supernet on {} with uniform sampling",
        config.data.dataset
    );
    set_threads(config.run.threads);
    let device = device::select(&config.run.device)?;
    let catalog = session::catalog(&config.plugins.path, plugin_path);
    let mut trainer = Trainer::new(config.clone(), run_dir.clone(), catalog, device, false)?;
    let largest = {
        let space = trainer.space();
        let (_, largest) = space
            .client
            .extremes(nas_sdk::Metric::Macs)
            .map_err(|e| space.origin.error("extremes", e))?;
        space
            .complexity(&largest)
            .map_err(|e| space.origin.error("complexity", e))?
    };
    let progress = if config.train.progress {
        Progress::Bar
    } else {
        Progress::Lines
    };
    let summary = trainer.run(StopPolicy::default(), progress)?;
    drop(trainer);
    let budget = (largest.macs as f64 * DEMO_BUDGET_SHARE).round();
    println!(
        "[2/4] evolutionary search under {:.2} MMACs on the held-out split",
        budget / 1e6
    );
    let options = crate::searching::SearchOptions {
        run: run_dir.clone(),
        algorithm: "evolution".into(),
        min_macs: None,
        max_macs: Some(budget),
        min_params: None,
        max_params: None,
        budgets: Vec::new(),
        metric: "macs".into(),
        population: 12,
        iterations: 3,
        top_k: 4,
        mutations: 6,
        mutation_prob: 0.2,
        crossovers: 6,
        evaluations: 0,
        bn: "recalibrate".into(),
        calib_batches: 10,
        holdout_examples: 2000,
        seed: config.run.seed,
        name: "demo".into(),
        generator: false,
        target: Vec::new(),
        targets_across: 0,
    };
    let outcome = crate::searching::run_search(&options, plugin_path)?;
    let (_, best, best_text) = outcome.best[0].clone();
    println!("[3/4] test accuracy of the best subnet (BN recalibrated, 10 batches)");
    let records = eval_archs(
        &run_dir,
        std::slice::from_ref(&best_text),
        BnPolicy::Recalibrate { batches: 10 },
        "test",
        plugin_path,
    )?;
    let eval_path = write_eval_records(&run_dir, &records)?;
    println!("[4/4] exporting it");
    let export_dir = crate::export::export(
        &crate::export::ExportOptions {
            run_dir: &run_dir,
            arch: &best_text,
            out: None,
            bn: Some("recalibrate"),
            calib_batches: Some(10),
        },
        plugin_path,
    )?;

    println!();
    println!(
        "train        {} steps in {:.0}s ({:.0} img/s), final loss {:.3}",
        summary.step, summary.seconds, summary.mean_images_per_s, summary.final_loss
    );
    println!(
        "search       {} candidates under {:.2} MMACs (largest subnet {:.2} MMACs)",
        outcome.evaluated,
        budget / 1e6,
        largest.macs as f64 / 1e6
    );
    println!("best subnet  {best_text}");
    println!(
        "complexity   {:.3} MMACs, {:.4} M params",
        best.complexity.macs as f64 / 1e6,
        best.complexity.params as f64 / 1e6
    );
    println!(
        "accuracy     held-out {:.2}%, test {:.2}%",
        best.score, records[0].result.accuracy
    );
    println!("export       {}", export_dir.display());
    println!(
        "\nrun folder: {} (metrics.jsonl, plots/, checkpoints/, search/demo/, {}, export/)",
        run_dir.display(),
        eval_path
            .strip_prefix(&run_dir)
            .unwrap_or(&eval_path)
            .display()
    );
    Ok(())
}

/// Archs from `--arch` values and an optional file (one per line, `#` comments).
pub fn collect_archs(archs: &[String], file: Option<&Path>) -> Result<Vec<String>> {
    let mut list = archs.to_vec();
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading the arch list {}", file.display()))?;
        list.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    Ok(list)
}

/// `nas retrain`.
pub fn retrain(
    config_path: Option<&Path>,
    overrides: &[String],
    archs: &[String],
    archs_file: Option<&Path>,
    seeds: &[u64],
    ground_truth: &Path,
    plugin_path: &[PathBuf],
) -> Result<()> {
    let config = RunConfig::load(config_path, overrides)?;
    let archs = collect_archs(archs, archs_file)?;
    let records = crate::ranking::retrain(
        crate::ranking::RetrainJob {
            config,
            archs: &archs,
            seeds,
            ground_truth,
        },
        plugin_path,
    )?;
    println!("{} results in {}", records.len(), ground_truth.display());
    Ok(())
}

/// `nas rank`.
#[allow(clippy::too_many_arguments)]
pub fn rank(
    run_dir: &Path,
    ground_truth: &str,
    archs: &[String],
    archs_file: Option<&Path>,
    bn: Option<&str>,
    calib_batches: Option<usize>,
    split: &str,
    top_k: usize,
    plugin_path: &[PathBuf],
) -> Result<()> {
    let policy = BnPolicy::for_run(&load_run_config(run_dir)?, bn, calib_batches)?;
    let truth = crate::ranking::GroundTruth::parse(ground_truth)?;
    let archs = collect_archs(archs, archs_file)?;
    let report = crate::ranking::rank(run_dir, &truth, &archs, policy, split, top_k, plugin_path)?;
    let path = crate::ranking::write_report(&report)?;
    println!(
        "{} archs: Kendall tau-b {:.4}, Spearman rho {:.4}, top-{} overlap {:.2} (BN {}, {} split)",
        report.n,
        report.kendall_tau,
        report.spearman_rho,
        report.top_k,
        report.top_k_overlap,
        report.bn,
        report.split
    );
    println!("report: {}", path.display());
    Ok(())
}

pub use crate::bench::{bench, BenchOptions};
