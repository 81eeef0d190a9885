//! `nas train`: train a supernet (or resume one), alone or as one rank of a data-parallel run.

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Context, Result};

use crate::{
    cli::TrainArgs,
    config::RunConfig,
    device,
    plugins::open_catalog,
    run::{checkpoint, run_dir},
    train::{distributed::Distributed, Progress, StopPolicy, Trainer},
};

/// `nas train`.
pub fn train(args: &TrainArgs, plugin_path: &[PathBuf]) -> Result<()> {
    let overrides = &args.config.set;
    let (config, run_dir) = match args.resume.as_deref() {
        Some(dir) => {
            let path = dir.join("config.toml");
            let config = RunConfig::load(Some(&path), overrides)
                .with_context(|| format!("--resume {}: reading the run's config", dir.display()))?;
            (config, dir.to_path_buf())
        }
        None => {
            let config = RunConfig::load(args.config.config.as_deref(), overrides)?;
            let dir = run_dir(&config);
            if checkpoint::latest(&dir)?.is_some() {
                bail!(
                    "run folder {} already holds a trained run; continue it with `nas train --resume {}` or pick another `run.name`",
                    dir.display(),
                    dir.display()
                );
            }
            (config, dir)
        }
    };
    device::set_threads(config.run.threads);
    let dist = Distributed::from_env(Duration::from_secs_f64(config.run.collective_timeout))?;
    let device = match (&dist, device::select(&config.run.device)?) {
        // One GPU per local rank.
        (Some(dist), tch::Device::Cuda(_)) => tch::Device::Cuda(dist.local_rank()),
        (_, device) => device,
    };
    let rank = dist.as_ref().map_or(0, |d| d.rank());
    let catalog = open_catalog(&config.plugins.path, plugin_path);
    let mut trainer = Trainer::new_with(
        config.clone(),
        run_dir,
        catalog,
        device,
        args.resume.is_some(),
        dist,
    )?;
    let interrupt = interrupt_flag()?;
    let summary = trainer.run(
        StopPolicy {
            after_steps: args.stop_after_steps,
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
    println!(
        "step time: {:.1}% waiting for data, {:.1}% host overhead",
        100.0 * summary.data_share,
        100.0 * summary.host_share
    );
    if summary.skipped_images > 0 {
        println!(
            "{} unreadable training images were skipped (see the warnings above; counted per step as `skipped_images` in metrics.jsonl)",
            summary.skipped_images
        );
    }
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
