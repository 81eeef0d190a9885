//! `nas search --generator`: the trained generator's arch for each target complexity
//! (`argmax AG(C)`, ShiftNAS: no search, weights inherited), with its exact complexity, its
//! relative error to the target, and its accuracy on the held-out and test splits.

use std::{path::PathBuf, rc::Rc};

use anyhow::{bail, Context, Result};
use nas_sdk::{Metric, RunInfo};
use serde::Serialize;

use crate::{
    data::Split,
    eval::{evaluate, BnPolicy, BnSnapshot, Calibration},
    plugins::{Origin, Services},
    run::{checkpoint, TrainedRun},
    train::generator::RunGenerator,
};

/// What `nas search --generator` asks the run's generator for.
#[derive(Clone, Debug)]
pub struct GeneratedRequest {
    /// Targets in the generator's metric.
    pub targets: Vec<f64>,
    /// Also this many targets at the centres of equal bins over the space's complexity range.
    pub targets_across: usize,
    /// BN policy of the accuracies.
    pub bn: BnPolicy,
    /// Name of the output folder under `<run>/search/`.
    pub name: String,
}

/// One target's generated subnet.
#[derive(Serialize, Clone, Debug)]
pub struct GeneratedRecord {
    /// The target complexity (generator metric units).
    pub target: f64,
    /// The arch in the space's text form.
    pub arch: String,
    /// Its choice indices.
    pub choices: Vec<u32>,
    /// Exact MACs.
    pub macs: u64,
    /// Exact parameters.
    pub params: u64,
    /// `|exact - target| / target` in the generator's metric.
    pub relative_error: f64,
    /// Held-out accuracy (%), when the run has a held-out split.
    pub holdout_accuracy: Option<f64>,
    /// Test accuracy (%).
    pub test_accuracy: f64,
}

/// What `nas search --generator` wrote.
#[derive(Serialize, Debug)]
pub struct GeneratedOutcome {
    /// `<run>/search/<name>`.
    #[serde(skip)]
    pub dir: PathBuf,
    /// The generator plugin.
    pub generator: Origin,
    /// The unit of targets.
    pub metric: Metric,
    /// The space's complexity range in that metric.
    pub range: (u64, u64),
    /// BN policy of the accuracies.
    pub bn: BnPolicy,
    /// The checkpoint the weights came from.
    pub checkpoint: PathBuf,
    /// Mean relative error of the exact complexity to the target.
    pub mean_relative_error: f64,
    /// One record per target.
    pub subnets: Vec<GeneratedRecord>,
}

/// Parses `150M`, `1.2G`, `800K` or a plain number.
pub fn parse_target(text: &str) -> Result<f64> {
    let trimmed = text.trim();
    let (number, scale) = match trimmed.chars().last() {
        Some('k' | 'K') => (&trimmed[..trimmed.len() - 1], 1e3),
        Some('m' | 'M') => (&trimmed[..trimmed.len() - 1], 1e6),
        Some('g' | 'G') => (&trimmed[..trimmed.len() - 1], 1e9),
        _ => (trimmed, 1.0),
    };
    let value: f64 = number
        .trim()
        .parse()
        .with_context(|| format!("--target `{text}`: expected a number such as 150M or 2.5e8"))?;
    if !(value.is_finite() && value > 0.0) {
        bail!("--target `{text}` must be a positive number");
    }
    Ok(value * scale)
}

/// Runs `nas search --generator` on `run`, which must have been trained with a generator, and
/// writes `<run>/search/<name>/generated.json`.
pub fn run(run: TrainedRun, request: &GeneratedRequest) -> Result<GeneratedOutcome> {
    let TrainedRun {
        dir: run_dir,
        config,
        data,
        space,
        checkpoint: checkpoint_dir,
        catalog,
    } = run;
    if config.generator.name.is_empty() {
        bail!(
            "{}: the run was trained without a generator (its [generator] name is empty); train with one, e.g. `--set generator.name=shiftnas --set sampler.name=shiftnas`",
            run_dir.display()
        );
    }
    let device = crate::device::select(&config.run.device)?;
    let space = Rc::new(space);
    let steps_per_epoch = crate::data::steps_per_epoch(data.train.len(), config.train.batch_size);
    let services = Services {
        run_info: RunInfo {
            seed: config.run.seed,
            total_steps: config.train.total_steps(steps_per_epoch),
            steps_per_epoch,
            rank: 0,
            world_size: 1,
        },
        space: space.clone(),
        catalog: catalog.clone(),
    };
    let mut generator =
        RunGenerator::create(&catalog, &config.generator, services.context(), device)?;
    let (state, tensors) = checkpoint::load(&checkpoint_dir)?;
    checkpoint::copy_into(
        &generator.params,
        &tensors.generator_params,
        "generator parameter",
        &checkpoint_dir,
    )?;
    if let Some(saved) = &state.generator_state {
        generator.plugin.load_state(saved)?;
    }

    let metric = generator.metric;
    let (smallest, largest) = space.extremes(metric)?;
    let low = metric.of(&space.complexity(&smallest)?);
    let high = metric.of(&space.complexity(&largest)?);
    let mut targets = request.targets.clone();
    let bins = request.targets_across;
    targets.extend(
        (0..bins).map(|k| low as f64 + (high - low) as f64 * (k as f64 + 0.5) / bins as f64),
    );
    if targets.is_empty() {
        bail!("--generator needs targets: --target 150M,300M or --targets-across 5");
    }

    let policy = request.bn;
    let trained = BnSnapshot::take(&space)?;
    let mut subnets = Vec::new();
    for &target in &targets {
        let arch = generator.argmax_arch(target)?;
        arch.validate(space.decisions()).map_err(|msg| {
            anyhow::anyhow!(
                "generator `{}` produced an invalid arch for target {target}: {msg}",
                generator.origin().name
            )
        })?;
        let complexity = space.complexity(&arch)?;
        let accuracy = |split: &Split| -> Result<f64> {
            let mut calibration = Calibration::for_run(&config, &data.train)?;
            let result = evaluate(
                &space,
                &arch,
                split,
                config.eval.batch_size,
                policy,
                Some(&mut calibration),
            )?;
            trained.restore();
            Ok(result.accuracy)
        };
        let holdout_accuracy = if data.holdout.is_empty() {
            None
        } else {
            Some(accuracy(&data.holdout)?)
        };
        let test_accuracy = accuracy(&data.test)?;
        let exact = metric.of(&complexity) as f64;
        subnets.push(GeneratedRecord {
            target,
            arch: space.arch_text(&arch)?,
            choices: arch.choices().to_vec(),
            macs: complexity.macs,
            params: complexity.params,
            relative_error: (exact - target).abs() / target,
            holdout_accuracy,
            test_accuracy,
        });
    }
    let mean_relative_error =
        subnets.iter().map(|s| s.relative_error).sum::<f64>() / subnets.len() as f64;
    let dir = run_dir.join("search").join(&request.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let outcome = GeneratedOutcome {
        dir: dir.clone(),
        generator: generator.origin().clone(),
        metric,
        range: (low, high),
        bn: policy,
        checkpoint: checkpoint_dir,
        mean_relative_error,
        subnets,
    };
    crate::run::io::write_json_atomic(&dir.join("generated.json"), &outcome)?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_suffixes() {
        assert_eq!(parse_target("150M").unwrap(), 150e6);
        assert_eq!(parse_target("1.5g").unwrap(), 1.5e9);
        assert_eq!(parse_target("2.5e8").unwrap(), 2.5e8);
        assert!(parse_target("-3").is_err());
        assert!(format!("{:#}", parse_target("abc").unwrap_err()).contains("abc"));
    }
}
