//! Latency on the target device (`nas profile`): subnets of a space are measured end to end as
//! plain TorchScript modules ([`measure`]), an additive table (a fixed part plus one term per
//! decision and option, the shape of the space's cost table) is fitted to them by least squares
//! ([`fit`]), checked against held-out subnets, and written as `latency.json` ([`table`]), which
//! search and export read back, refusing it for another space, config or device.
//!
//! Why end to end rather than block by block: the SDK runs a space as a whole, and the sum of
//! isolated block timings misses what lies between blocks (allocation, dispatch, layout
//! changes); fitting whole-subnet latencies puts those costs where they land in a real run.

pub mod fit;
pub mod measure;
pub mod table;

use std::{path::Path, time::Instant};

use anyhow::{bail, Context, Result};
use nas_sdk::{Arch, ComponentKind};
use tch::Device;

pub use fit::{balanced_archs, fit_additive, held_out_archs, AdditiveModel, ErrorSummary};
pub use measure::{
    device_model, measure, time_module, trace, ModuleStopwatch, Protocol, Stopwatch, Timing,
};
pub use table::{config_digest, LatencyTable, Validation, MAX_MEAN_ERROR, MIN_TAU};

use crate::{
    plugins::{SharedCatalog, Space},
    run::io,
};

/// Archs measured for the fit when not asked for: four times the number of terms, at least 40
/// (timing noise on a busy machine is a few percent per arch; the surplus averages it out).
pub fn default_fit_archs(options: &[u32]) -> usize {
    let terms: usize = 1 + options
        .iter()
        .map(|&m| m.saturating_sub(1) as usize)
        .sum::<usize>();
    (4 * terms).max(40)
}

/// Measured archs with the fitted model: the part of profiling that does not depend on how archs
/// are timed.
#[derive(Clone, Debug)]
pub struct Profiled {
    /// The fitted model.
    pub model: AdditiveModel,
    /// `(arch, measured ms, predicted ms)` of the archs the model was fitted to.
    pub fit: Vec<(Arch, f64, f64)>,
    /// The same for the held-out archs.
    pub validation: Vec<(Arch, f64, f64)>,
    /// Timing summaries of the fit archs, then the held-out ones.
    pub timings: Vec<Timing>,
}

impl Profiled {
    /// Errors of the model on the archs it was fitted to.
    pub fn fit_error(&self) -> ErrorSummary {
        ErrorSummary::of(&pairs(&self.fit))
    }

    /// Errors of the model on the held-out archs.
    pub fn validation_error(&self) -> ErrorSummary {
        ErrorSummary::of(&pairs(&self.validation))
    }

    /// `(predicted, measured)` of the held-out archs.
    pub fn validation_pairs(&self) -> Vec<(f64, f64)> {
        pairs(&self.validation)
    }
}

fn pairs(rows: &[(Arch, f64, f64)]) -> Vec<(f64, f64)> {
    rows.iter().map(|(_, m, p)| (*p, *m)).collect()
}

/// Measures `fit_archs` balanced archs (every option equally often) and `validation_archs`
/// held-out uniform archs of a space with `options` per decision on `stopwatch`, fits the
/// additive model to the first set and predicts the second. Both sets are timed together,
/// interleaved, so they see the same machine.
pub fn profile_with(
    stopwatch: &mut dyn Stopwatch,
    options: &[u32],
    fit_archs: usize,
    validation_archs: usize,
    protocol: &Protocol,
    seed: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Profiled> {
    let largest = options.iter().copied().max().unwrap_or(1) as usize;
    if fit_archs < largest {
        bail!("--fit-archs {fit_archs}: at least {largest} are needed so that every option of every decision is measured");
    }
    let fit_set = balanced_archs(options, fit_archs, seed);
    let validation_set = held_out_archs(options, validation_archs, &fit_set, seed);
    let all: Vec<Arch> = fit_set.iter().chain(&validation_set).cloned().collect();
    let timings = measure(stopwatch, &all, protocol, seed, progress)?;
    let measured: Vec<f64> = timings.iter().map(|t| t.median).collect();
    let (fit_ms, validation_ms) = measured.split_at(fit_set.len());
    let samples: Vec<(Arch, f64)> = fit_set
        .iter()
        .cloned()
        .zip(fit_ms.iter().copied())
        .collect();
    let model = fit_additive(options, &samples)?;
    let rows = |archs: &[Arch], ms: &[f64]| -> Vec<(Arch, f64, f64)> {
        archs
            .iter()
            .zip(ms)
            .map(|(a, &m)| (a.clone(), m, model.predict(a.choices())))
            .collect()
    };
    Ok(Profiled {
        timings,
        fit: rows(&fit_set, fit_ms),
        validation: rows(&validation_set, validation_ms),
        model,
    })
}

/// A rank correlation of `(predicted, measured)` pairs (`None` where undefined), supplied by the
/// caller (`nas profile` passes Kendall's tau-b from `rank::stats`).
pub type RankCorrelation = dyn Fn(&[(f64, f64)]) -> Option<f64>;

/// What to measure.
#[derive(Clone, Debug)]
pub struct ProfileRequest {
    /// Device the modules run on.
    pub device: Device,
    /// libtorch intra-op threads (set by the caller; recorded).
    pub threads: usize,
    /// Batch size.
    pub batch: i64,
    /// Archs the table is fitted to (0: [`default_fit_archs`]).
    pub fit_archs: usize,
    /// Held-out archs it is validated on.
    pub validation_archs: usize,
    /// Timing protocol.
    pub protocol: Protocol,
    /// Seed of the drawn archs and round orders.
    pub seed: u64,
}

/// The input shape of a space's images at `batch`: `input_channels` and `resolution` from its
/// config, else from the plugin's default config.
pub fn input_shape(catalog: &SharedCatalog, space: &Space, batch: i64) -> Result<Vec<i64>> {
    let config: serde_json::Value = serde_json::from_str(space.config_json()).unwrap_or_default();
    let (_, info) = catalog
        .borrow_mut()
        .resolve(ComponentKind::Space, &space.origin().name)?;
    let defaults: serde_json::Value =
        serde_json::from_str(&info.default_config).unwrap_or_default();
    let field = |name: &str| -> Result<i64> {
        config
            .get(name)
            .or_else(|| defaults.get(name))
            .and_then(serde_json::Value::as_i64)
            .with_context(|| {
                format!(
                    "space `{}` has no integer config field `{name}`: nas profile cannot tell the input size of its images",
                    space.origin().name
                )
            })
    };
    Ok(vec![
        batch,
        field("input_channels")?,
        field("resolution")?,
        field("resolution")?,
    ])
}

/// The space component name and config a run was trained with (from its `run.json`).
pub fn space_of_run(run_dir: &Path) -> Result<(String, serde_json::Value)> {
    let path = run_dir.join("run.json");
    let manifest: serde_json::Value = io::read_json(&path)
        .with_context(|| format!("{} is not a run folder of `nas train`", run_dir.display()))?;
    let name = manifest["space"]["name"]
        .as_str()
        .with_context(|| format!("{}: no space.name", path.display()))?
        .to_string();
    Ok((name, manifest["space_config"].clone()))
}

/// Profiles `space` (created, not built) as `request` says: times its subnets as plain
/// TorchScript modules, fits the table and returns it with the measurements; `kendall_tau` turns
/// `(predicted, measured)` pairs into Kendall's tau (the caller's statistics). The table is not
/// written.
pub fn profile(
    catalog: &SharedCatalog,
    space: &mut Space,
    request: &ProfileRequest,
    kendall_tau: &RankCorrelation,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(LatencyTable, Profiled)> {
    let started = Instant::now();
    let options: Vec<u32> = space
        .decisions()
        .iter()
        .map(|d| d.options.len() as u32)
        .collect();
    let probe = Arch::new(vec![0; options.len()]);
    if space.subnet_config(&probe)?.is_none() {
        // The supernet's forward of each arch is traced.
        space.build(request.device)?;
    }
    let shape = input_shape(catalog, space, request.batch)?;
    let fit_archs = match request.fit_archs {
        0 => default_fit_archs(&options),
        n => n,
    };
    let profiled = {
        let mut stopwatch = ModuleStopwatch::new(catalog, space, request.device, &shape);
        profile_with(
            &mut stopwatch,
            &options,
            fit_archs,
            request.validation_archs,
            &request.protocol,
            request.seed,
            progress,
        )?
    };
    let tau = kendall_tau(&profiled.validation_pairs());
    let error = profiled.validation_error();
    let additive_ok = error.archs > 0
        && error.mean_relative_error <= MAX_MEAN_ERROR
        && tau.is_some_and(|t| t >= MIN_TAU);
    let config: serde_json::Value = serde_json::from_str(space.config_json()).unwrap_or_default();
    let sample = |set: &str, rows: &[(Arch, f64, f64)], timings: &[Timing]| -> Vec<table::Sample> {
        rows.iter()
            .zip(timings)
            .map(|((a, m, p), t)| table::Sample {
                set: set.into(),
                choices: a.choices().to_vec(),
                measured_ms: *m,
                min_ms: t.min,
                relative_iqr: t.relative_iqr,
                predicted_ms: *p,
            })
            .collect()
    };
    let (fit_timings, validation_timings) = profiled.timings.split_at(profiled.fit.len());
    let table = LatencyTable {
        format: table::FORMAT.into(),
        space: space.origin().name.clone(),
        space_version: space.origin().version.clone(),
        space_config_digest: config_digest(&config),
        space_config: config,
        device: crate::device::name(request.device),
        device_model: device_model(request.device),
        threads: request.threads,
        batch: request.batch,
        input_shape: shape,
        libtorch_version: nas_sdk::LIBTORCH_VERSION.into(),
        nas_version: env!("CARGO_PKG_VERSION").into(),
        base_ms: profiled.model.base,
        decisions: space
            .decisions()
            .iter()
            .zip(&profiled.model.per_option)
            .map(|(d, ms)| table::DecisionLatency {
                name: d.name.to_string(),
                options: d.options.iter().map(|o| o.to_string()).collect(),
                ms: ms.clone(),
            })
            .collect(),
        measurement: table::Measurement {
            method: "end-to-end latency of plain subnets (TorchScript modules traced as nas export does, no gradients, CUDA synchronised), median of timed runs after warm-up, interleaved rounds; additive table fitted by least squares of the relative error to balanced archs".into(),
            protocol: request.protocol,
            fit_archs: profiled.fit.len(),
            validation_archs: profiled.validation.len(),
            seed: request.seed,
            seconds: started.elapsed().as_secs_f64(),
        },
        fit_error: profiled.fit_error(),
        validation: Validation {
            error,
            kendall_tau: tau,
            additive_ok,
        },
        samples: sample("fit", &profiled.fit, fit_timings)
            .into_iter()
            .chain(sample("validation", &profiled.validation, validation_timings))
            .collect(),
    };
    Ok((table, profiled))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mock timer whose latency is exactly additive, with deterministic multiplicative jitter
    /// on some runs (which the median must see through).
    struct Additive {
        truth: AdditiveModel,
        prepared: Vec<f64>,
        runs: u64,
    }

    impl Stopwatch for Additive {
        fn prepare(&mut self, arch: &Arch) -> Result<()> {
            self.prepared.push(self.truth.predict(arch.choices()));
            Ok(())
        }
        fn time_once(&mut self, index: usize) -> Result<f64> {
            self.runs += 1;
            // Every third run is 40% slow: a busy machine.
            let factor = if self.runs.is_multiple_of(3) {
                1.4
            } else {
                1.0
            };
            Ok(self.prepared[index] * factor)
        }
    }

    #[test]
    fn an_exactly_additive_timer_is_recovered_through_the_whole_protocol() {
        // Five decisions with NB201's option count and two binary ones.
        let options = [5u32, 5, 5, 5, 5, 2, 2];
        let truth = AdditiveModel {
            base: 0.8,
            per_option: options
                .iter()
                .enumerate()
                .map(|(i, &m)| (0..m).map(|j| 0.05 * (j * (i as u32 + 1)) as f64).collect())
                .collect(),
        };
        let mut stopwatch = Additive {
            truth: truth.clone(),
            prepared: Vec::new(),
            runs: 0,
        };
        let protocol = Protocol {
            warmup: 1,
            repeats: 5,
            rounds: 2,
        };
        let profiled = profile_with(
            &mut stopwatch,
            &options,
            default_fit_archs(&options),
            20,
            &protocol,
            7,
            &mut |_, _| {},
        )
        .unwrap();
        assert!(
            (profiled.model.base - truth.base).abs() < 1e-9,
            "{:?}",
            profiled.model
        );
        for (i, (got, want)) in profiled
            .model
            .per_option
            .iter()
            .zip(&truth.per_option)
            .enumerate()
        {
            for (j, (g, w)) in got.iter().zip(want).enumerate() {
                assert!(
                    (g - w).abs() < 1e-9,
                    "decision {i} option {j}: fitted {g}, true {w}"
                );
            }
        }
        let error = profiled.validation_error();
        assert_eq!(error.archs, 20);
        assert!(error.max_relative_error < 1e-9, "{error:?}");
        assert!(profiled
            .validation
            .iter()
            .all(|(a, _, _)| !profiled.fit.iter().any(|(f, _, _)| f == a)));
    }

    #[test]
    fn too_few_fit_archs_are_refused() {
        let mut stopwatch = Additive {
            truth: AdditiveModel {
                base: 1.0,
                per_option: vec![vec![0.0; 5]],
            },
            prepared: Vec::new(),
            runs: 0,
        };
        let err = profile_with(
            &mut stopwatch,
            &[5],
            3,
            1,
            &Protocol::default(),
            0,
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("at least 5"), "{err}");
    }
}
