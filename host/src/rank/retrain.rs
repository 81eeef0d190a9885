//! `nas retrain`: stand-alone training of subnets, for ground truth.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::groundtruth::{write_retrain, RetrainRecord};
use crate::{
    config::RunConfig,
    device,
    eval::{eval_archs, BnPolicy},
    plugins::{open_catalog, Space},
    run::{arch_slug, checkpoint, run_dir, TrainedRun},
    train::{Progress, StopPolicy, Trainer},
};

/// What `nas retrain` does.
pub struct RetrainJob<'a> {
    /// Base config (data, space, optimizer, length); its sampler is replaced by `fixed`.
    pub config: RunConfig,
    /// Archs in the space's text form or as JSON lists.
    pub archs: &'a [String],
    /// Seeds, one training run each per arch.
    pub seeds: &'a [u64],
    /// The ground-truth file (JSON lines) to add results to.
    pub ground_truth: &'a Path,
}

/// Trains each arch from scratch with each seed (runs named `retrain-<choices>-s<seed>` under
/// `run.out_dir`; finished runs are reused, interrupted ones resumed), evaluates it on the test
/// split with its own BN statistics, and records the accuracy in the ground-truth file.
pub fn retrain(job: RetrainJob<'_>, plugin_path: &[PathBuf]) -> Result<Vec<RetrainRecord>> {
    if job.archs.is_empty() || job.seeds.is_empty() {
        bail!("nas retrain needs at least one --arch and one seed");
    }
    let catalog = open_catalog(&job.config.plugins.path, plugin_path);
    let space = Space::create(&catalog, &job.config.space, None)?;
    let archs = job
        .archs
        .iter()
        .map(|text| space.parse_arch(text))
        .collect::<Result<Vec<_>>>()?;
    drop(space);
    device::set_threads(job.config.run.threads);
    let device = device::select(&job.config.run.device)?;
    let total = archs.len() * job.seeds.len();
    let mut done = Vec::new();
    for (i, (arch, &seed)) in archs
        .iter()
        .flat_map(|a| job.seeds.iter().map(move |s| (a, s)))
        .enumerate()
    {
        let mut config = job.config.clone();
        config.sampler.name = "fixed".into();
        config.sampler.config = toml::Table::new();
        config.sampler.config.insert(
            "choices".into(),
            toml::Value::Array(arch.choices().iter().map(|&c| (c as i64).into()).collect()),
        );
        config.run.seed = seed;
        config.run.name = format!("retrain-{}-s{seed}", arch_slug(arch.choices()));
        let run_dir = run_dir(&config);
        let started = std::time::Instant::now();
        let existing = checkpoint::latest(&run_dir)?;
        let mut trainer = Trainer::new(
            config.clone(),
            run_dir.clone(),
            catalog.clone(),
            device,
            existing.is_some(),
        )?;
        let steps = trainer.total_steps();
        trainer.run(StopPolicy::default(), Progress::Silent)?;
        drop(trainer);
        let text = eval_archs(
            &TrainedRun::open(&run_dir, plugin_path)?,
            &[serde_json::to_string(arch.choices())?],
            BnPolicy::Running,
            "test",
        )?;
        let result = &text[0];
        let record = RetrainRecord {
            arch: result.arch.clone(),
            choices: arch.choices().to_vec(),
            seed,
            accuracy: result.result.accuracy,
            bn: BnPolicy::Running.to_string(),
            steps,
            seconds: started.elapsed().as_secs_f64(),
            run_dir: run_dir.clone(),
        };
        write_retrain(job.ground_truth, record.clone())?;
        println!(
            "[{}/{total}] {:>6.2}%  seed {seed}  {:.0}s  {}",
            i + 1,
            record.accuracy,
            record.seconds,
            record.arch
        );
        done.push(record);
    }
    Ok(done)
}
