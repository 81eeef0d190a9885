//! `nas demo`: the main job on the built-in default: train -> search under a MACs budget ->
//! evaluate -> export, with a summary.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::{
    cli::DemoArgs,
    config::RunConfig,
    device,
    eval::{eval_archs, write_eval_records, BnPolicy},
    export::{export, ExportOptions},
    plugins::open_catalog,
    run::{run_dir, TrainedRun},
    search::{run_search, Algorithm, Constraints, EvolutionConfig, SearchRequest},
    train::{Progress, StopPolicy, Trainer},
};

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
pub fn demo(args: &DemoArgs, plugin_path: &[PathBuf]) -> Result<()> {
    let config = RunConfig::load_over(demo_config(&args.out_dir, &args.name), None, &args.set)?;
    let run_dir = run_dir(&config);
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
    device::set_threads(config.run.threads);
    let device = device::select(&config.run.device)?;
    let catalog = open_catalog(&config.plugins.path, plugin_path);
    let mut trainer = Trainer::new(config.clone(), run_dir.clone(), catalog, device, false)?;
    let largest = {
        let space = trainer.space();
        let (_, largest) = space.extremes(nas_sdk::Metric::Macs)?;
        space.complexity(&largest)?
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
    let request = SearchRequest {
        algorithm: Algorithm::Evolution(EvolutionConfig {
            population: 12,
            iterations: 3,
            top_k: 4,
            mutations: 6,
            mutation_prob: 0.2,
            crossovers: 6,
        }),
        constraints: Constraints {
            max_macs: Some(budget.round() as u64),
            ..Constraints::default()
        },
        budgets: Vec::new(),
        metric: nas_sdk::Metric::Macs.into(),
        latency: None,
        bn: BnPolicy::Recalibrate { batches: 10 },
        holdout_examples: 2000,
        seed: config.run.seed,
        name: "demo".into(),
    };
    // Search restores the trained BN statistics after every candidate, so the same opened run
    // serves the evaluation of the best subnet.
    let trained = TrainedRun::open(&run_dir, plugin_path)?;
    let outcome = run_search(&trained, &request)?;
    let (_, best, best_text) = outcome.best[0].clone();
    println!("[3/4] test accuracy of the best subnet (BN recalibrated, 10 batches)");
    let records = eval_archs(
        &trained,
        std::slice::from_ref(&best_text),
        BnPolicy::Recalibrate { batches: 10 },
        "test",
    )?;
    drop(trained);
    let eval_path = write_eval_records(&run_dir, &records)?;
    println!("[4/4] exporting it");
    let export_dir = export(
        &ExportOptions {
            run_dir: &run_dir,
            arch: &best_text,
            out: None,
            bn: Some("recalibrate"),
            calib_batches: Some(10),
            latency_table: None,
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
