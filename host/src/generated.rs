//! `nas search --generator`: the trained generator's arch for each target complexity
//! (`argmax AG(C)`, ShiftNAS: no search, weights inherited), with its exact complexity, its
//! relative error to the target, and its accuracy on the held-out and test splits.

use std::{path::PathBuf, rc::Rc};

use anyhow::{bail, Context, Result};
use nas_sdk::{HostContext, Metric, RunInfo};
use serde::Serialize;
use tch::Tensor;

use crate::{
    checkpoint,
    eval::{evaluate, BnPolicy},
    generator::RunGenerator,
    searching::SearchOptions,
    session::{catalog, Services, TrainedRun},
};

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
    pub generator: crate::plugins::Origin,
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

/// Runs `nas search --generator`.
pub fn run(options: &SearchOptions, plugin_path: &[PathBuf]) -> Result<GeneratedOutcome> {
    let TrainedRun {
        config,
        data,
        space,
        checkpoint: checkpoint_dir,
    } = TrainedRun::open(&options.run, plugin_path)?;
    if config.generator.name.is_empty() {
        bail!(
            "{}: the run was trained without a generator (its [generator] name is empty); train with one, e.g. `--set generator.name=shiftnas --set sampler.name=shiftnas`",
            options.run.display()
        );
    }
    let device = crate::device::select(&config.run.device)?;
    let plugins = catalog(&config.plugins.path, plugin_path);
    let space = Rc::new(space);
    let steps_per_epoch = crate::data::steps_per_epoch(data.train.len(), config.train.batch_size);
    let services = Services {
        run_info: RunInfo {
            seed: config.run.seed,
            total_steps: if config.train.steps > 0 {
                config.train.steps
            } else {
                config.train.epochs * steps_per_epoch
            },
            steps_per_epoch,
            rank: 0,
            world_size: 1,
        },
        space: space.clone(),
        catalog: plugins.clone(),
    };
    let mut generator = RunGenerator::create(
        &plugins,
        &config.generator,
        HostContext::from_services(services),
        device,
    )?;
    let (state, tensors) = checkpoint::load(&checkpoint_dir)?;
    checkpoint::copy_into(
        &generator.params,
        &tensors.generator_params,
        "generator parameter",
        &checkpoint_dir,
    )?;
    if let Some(saved) = &state.generator_state {
        generator
            .client
            .load_state(saved)
            .map_err(|e| generator.origin.error("load_state", e))?;
    }

    let metric = generator.metric;
    let (smallest, largest) = space
        .client
        .extremes(metric)
        .map_err(|e| space.origin.error("extremes", e))?;
    let low = metric.of(&space
        .complexity(&smallest)
        .map_err(|e| space.origin.error("complexity", e))?);
    let high = metric.of(&space
        .complexity(&largest)
        .map_err(|e| space.origin.error("complexity", e))?);
    let mut targets: Vec<f64> = options
        .target
        .iter()
        .map(|t| parse_target(t))
        .collect::<Result<_>>()?;
    let bins = options.targets_across;
    targets.extend(
        (0..bins).map(|k| low as f64 + (high - low) as f64 * (k as f64 + 0.5) / bins as f64),
    );
    if targets.is_empty() {
        bail!("--generator needs targets: --target 150M,300M or --targets-across 5");
    }

    let policy = BnPolicy::parse(&options.bn, options.calib_batches)?;
    let buffers = space.buffers()?;
    let saved: Vec<Tensor> = buffers.iter().map(|(_, t)| t.copy()).collect();
    let restore = || {
        tch::no_grad(|| {
            for ((_, live), kept) in buffers.iter().zip(&saved) {
                live.shallow_clone().copy_(kept);
            }
        })
    };
    let mut subnets = Vec::new();
    for &target in &targets {
        let arch = generator.argmax_arch(target)?;
        arch.validate(&space.decisions).map_err(|msg| {
            anyhow::anyhow!(
                "generator `{}` produced an invalid arch for target {target}: {msg}",
                generator.origin.name
            )
        })?;
        let complexity = space
            .complexity(&arch)
            .map_err(|e| space.origin.error("complexity", e))?;
        let accuracy = |split: &crate::data::Split| -> Result<f64> {
            let mut calibration = crate::eval::calibration_batches(
                &data.train,
                config.train.batch_size,
                options.seed,
            )?;
            let result = evaluate(
                &space.client,
                &space.origin,
                &arch,
                split,
                config.eval.batch_size,
                policy,
                Some((&data.train, &mut calibration)),
            )?;
            restore();
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
    let dir = options.run.join("search").join(&options.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let outcome = GeneratedOutcome {
        dir: dir.clone(),
        generator: generator.origin.clone(),
        metric,
        range: (low, high),
        bn: policy,
        checkpoint: checkpoint_dir,
        mean_relative_error,
        subnets,
    };
    crate::io::write_json_atomic(&dir.join("generated.json"), &outcome)?;
    Ok(outcome)
}

/// Prints the generated subnets.
pub fn print(outcome: &GeneratedOutcome) {
    let unit = match outcome.metric {
        Metric::Macs => "MMACs",
        Metric::Params => "Mparams",
    };
    println!(
        "generator `{}`: argmax arch per target ({unit}; BN {}); space range {:.3}-{:.3}",
        outcome.generator.name,
        outcome.bn,
        outcome.range.0 as f64 / 1e6,
        outcome.range.1 as f64 / 1e6
    );
    println!(
        "{:>10}  {:>10}  {:>7}  {:>8}  {:>7}  arch",
        "target", "exact", "error%", "holdout%", "test%"
    );
    for s in &outcome.subnets {
        let exact = match outcome.metric {
            Metric::Macs => s.macs,
            Metric::Params => s.params,
        };
        println!(
            "{:>10.3}  {:>10.3}  {:>7.2}  {:>8}  {:>7.2}  {}",
            s.target / 1e6,
            exact as f64 / 1e6,
            100.0 * s.relative_error,
            s.holdout_accuracy
                .map(|a| format!("{a:.2}"))
                .unwrap_or_else(|| "-".into()),
            s.test_accuracy,
            s.arch
        );
    }
    println!(
        "mean relative error {:.2}%; results: {}",
        100.0 * outcome.mean_relative_error,
        outcome.dir.join("generated.json").display()
    );
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
