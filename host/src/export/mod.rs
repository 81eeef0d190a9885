//! `nas export`: a standalone subnet of a trained supernet.
//!
//! Writes, into one folder:
//! - `weights.safetensors`: the subnet's parameters and BN statistics with their plain (sliced)
//!   shapes and the space's conventional names;
//! - `subnet.pt`: a TorchScript module (traced; `torch.jit.load` runs it without this project),
//!   input = images normalised as the run's dataset (`arch.json` records how), output = logits;
//! - `check.safetensors`: a few held-out images (`input`) and the supernet's logits for them
//!   (`logits`), so anyone can verify the module;
//! - `arch.json`: the manifest (arch, complexity, BN policy, input spec, verification figures).
//!
//! BN statistics: a supernet's running statistics fit no single subnet, so they are recalibrated
//! for the exported arch (AttentiveNAS's practice) unless the policy is `running`. Per-batch
//! statistics (`batch-stats`) cannot be frozen into a module, so that policy exports recalibrated
//! statistics instead and says so.
//!
//! Tracing: spaces that describe the subnet as a config of their own
//! ([`nas_sdk::SearchSpace::subnet_config`]) are rebuilt at exactly the subnet's sizes, loaded
//! with the exported tensors and traced, so the module holds only the subnet's weights; other
//! spaces are traced through the supernet's forward of the arch (the module then holds every
//! tensor that forward touches).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nas_sdk::Arch;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::{
    eval::{prepare_bn, BnPolicy, Calibration},
    plugins::{Origin, Space},
    profile::{self, LatencyTable, Protocol},
    run::{arch_slug, io, TrainedRun},
};

/// Examples in `check.safetensors`.
const CHECK_EXAMPLES: i64 = 4;
/// Examples the module is traced with (fewer than the check batch, so the check shows the module
/// accepts other batch sizes).
const TRACE_EXAMPLES: i64 = 2;
/// Largest logit difference between the module and the supernet that `nas export` accepts.
pub const MAX_MODULE_DIFF: f64 = 1e-4;

/// What `nas export` writes next to the weights.
#[derive(Serialize)]
struct ExportManifest<'a> {
    space: &'a Origin,
    space_config: serde_json::Value,
    arch: String,
    choices: Vec<u32>,
    macs: u64,
    params: u64,
    checkpoint: PathBuf,
    bn: BnPolicy,
    input: InputSpec,
    torchscript: TorchScriptInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency: Option<LatencyInfo>,
    tensors: Vec<(String, Vec<i64>)>,
}

/// The subnet's latency: the table's prediction and the exported module, timed as the table was.
#[derive(Serialize)]
struct LatencyInfo {
    table: PathBuf,
    predicted_ms: f64,
    measured_ms: f64,
    measured_min_ms: f64,
    relative_error: f64,
    device: String,
    device_model: String,
    threads: usize,
    batch: i64,
    protocol: Protocol,
}

/// The module's input.
#[derive(Serialize)]
struct InputSpec {
    shape: [i64; 4],
    dataset: String,
    normalisation: String,
}

/// How the module was made and checked.
#[derive(Serialize)]
struct TorchScriptInfo {
    file: &'static str,
    traced_from: &'static str,
    traced_batch: i64,
    check_batch: i64,
    max_abs_diff_vs_supernet: f64,
}

/// Options of `nas export`.
pub struct ExportOptions<'a> {
    /// Run folder.
    pub run_dir: &'a Path,
    /// Arch text, JSON choices, or `@best.json`.
    pub arch: &'a str,
    /// Output folder (default `<run>/export/<choices>`).
    pub out: Option<&'a Path>,
    /// BN policy name (default: the run's, with `batch-stats` mapped to `recalibrate`).
    pub bn: Option<&'a str>,
    /// Calibration batches (default: the run's).
    pub calib_batches: Option<usize>,
    /// A latency table of the run's space measured on this machine: the manifest then records
    /// the table's and the module's measured latency.
    pub latency_table: Option<&'a Path>,
}

fn parse_arch(space: &Space, text: &str) -> Result<Arch> {
    match text.strip_prefix('@') {
        Some(file) => {
            let best: Vec<serde_json::Value> = io::read_json(Path::new(file))?;
            let choices = best
                .first()
                .and_then(|b| b.get("choices"))
                .with_context(|| format!("{file}: expected a best.json written by `nas search`"))?;
            space.parse_arch(&choices.to_string())
        }
        None => space.parse_arch(text),
    }
}

/// Exports a subnet; returns the folder written.
pub fn export(options: &ExportOptions, plugin_path: &[PathBuf]) -> Result<PathBuf> {
    let TrainedRun {
        config,
        data,
        space,
        checkpoint,
        catalog,
        ..
    } = TrainedRun::open(options.run_dir, plugin_path)?;
    let arch = parse_arch(&space, options.arch)?;
    // Refuse a table for another space or machine before any work.
    let latency_table = match options.latency_table {
        Some(path) => {
            let table = LatencyTable::load(path)?;
            let config: serde_json::Value =
                serde_json::from_str(space.config_json()).unwrap_or_default();
            table.check_space(path, &space.origin().name, &config, space.decisions())?;
            let device = crate::device::select(&table.device).with_context(|| {
                format!(
                    "latency table {} was measured on `{}`, which this machine lacks",
                    path.display(),
                    table.device
                )
            })?;
            table.check_device(path, &table.device, &profile::device_model(device))?;
            Some((path, table, device))
        }
        None => None,
    };
    let policy = match options.bn {
        Some("batch-stats") => bail!(
            "--bn batch-stats cannot be exported: a module has fixed BN statistics; use recalibrate or running"
        ),
        Some(name) => BnPolicy::for_run(&config, Some(name), options.calib_batches)?,
        None => match BnPolicy::for_run(&config, None, options.calib_batches)? {
            BnPolicy::BatchStats => BnPolicy::Recalibrate {
                batches: options
                    .calib_batches
                    .unwrap_or(config.eval.calib_batches)
                    .max(1),
            },
            policy => policy,
        },
    };
    let complexity = space.complexity(&arch)?;
    let mut calibration = Calibration::for_run(&config, &data.train)?;
    let eval_options = prepare_bn(&space, &arch, policy, Some(&mut calibration))?;
    let tensors = space.export_subnet(&arch)?;

    let check_split = if data.holdout.is_empty() {
        &data.test
    } else {
        &data.holdout
    };
    let count = (check_split.len() as i64).min(CHECK_EXAMPLES);
    if count < 1 {
        bail!("the run's held-out and test splits are empty: nothing to check the module with");
    }
    let (check_input, _) = check_split.slice(0, count as usize)?;
    let supernet_logits = tch::no_grad(|| space.forward(&check_input, &arch, None, &eval_options))?
        .to_device(Device::Cpu);
    let check_input = check_input.to_device(Device::Cpu);

    let dir = match options.out {
        Some(dir) => dir.to_path_buf(),
        None => options
            .run_dir
            .join("export")
            .join(arch_slug(arch.choices())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    // The module.
    let (module, traced_from) = match space.subnet_config(&arch)? {
        Some(subnet_config) => {
            let mut subnet = Space::from_json(&catalog, &config.space.name, &subnet_config)?;
            subnet.build(Device::Cpu)?;
            load_named(&subnet, &tensors)?;
            let subnet_arch = Arch::new(vec![0; subnet.decisions().len()]);
            (trace(&subnet, &subnet_arch, &check_input)?, "subnet")
        }
        None => (
            trace(&space, &arch, &check_input.to_device(data.train.device()))?,
            "supernet",
        ),
    };
    let module_path = dir.join("subnet.pt");
    let temp = io::temp_path(&module_path);
    module
        .save(&temp)
        .with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, &module_path)
        .with_context(|| format!("renaming {} to {}", temp.display(), module_path.display()))?;
    // Check the file as written, loaded back.
    let loaded = tch::CModule::load_on_device(&module_path, Device::Cpu)
        .with_context(|| format!("loading back {}", module_path.display()))?;
    let module_logits = tch::no_grad(|| loaded.forward_ts(&[&check_input]))
        .with_context(|| format!("running {}", module_path.display()))?;
    let diff = (&module_logits - &supernet_logits)
        .abs()
        .max()
        .double_value(&[]);
    if diff.is_nan() || diff > MAX_MODULE_DIFF {
        bail!(
            "the traced module's logits differ from the supernet's by {diff:.3e} (limit {MAX_MODULE_DIFF:e}); the space's forward may not be traceable"
        );
    }

    let latency = match latency_table {
        Some((path, table, device)) => {
            crate::device::set_threads(table.threads);
            let on_device =
                tch::CModule::load_on_device(&module_path, device).with_context(|| {
                    format!("loading {} on {}", module_path.display(), table.device)
                })?;
            let timing = profile::time_module(
                on_device,
                device,
                &table.input_shape,
                &table.measurement.protocol,
            )?;
            let predicted = table.predict_ms(&arch);
            Some(LatencyInfo {
                table: path.to_path_buf(),
                predicted_ms: predicted,
                measured_ms: timing.median,
                measured_min_ms: timing.min,
                relative_error: (predicted - timing.median) / timing.median,
                device: table.device.clone(),
                device_model: table.device_model.clone(),
                threads: table.threads,
                batch: table.batch,
                protocol: table.measurement.protocol,
            })
        }
        None => None,
    };
    io::write_safetensors_atomic(&dir.join("weights.safetensors"), &tensors)?;
    io::write_safetensors_atomic(
        &dir.join("check.safetensors"),
        &[
            ("input".to_string(), check_input.to_kind(Kind::Float)),
            ("logits".to_string(), supernet_logits),
        ],
    )?;
    io::write_json_atomic(
        &dir.join("arch.json"),
        &ExportManifest {
            space: space.origin(),
            space_config: serde_json::from_str(space.config_json()).unwrap_or_default(),
            arch: space.arch_text(&arch)?,
            choices: arch.choices().to_vec(),
            macs: complexity.macs,
            params: complexity.params,
            checkpoint,
            bn: policy,
            input: InputSpec {
                shape: [-1, data.channels, data.resolution, data.resolution],
                dataset: data.info.dataset.clone(),
                normalisation: data.info.normalisation(),
            },
            torchscript: TorchScriptInfo {
                file: "subnet.pt",
                traced_from,
                traced_batch: TRACE_EXAMPLES.min(count),
                check_batch: count,
                max_abs_diff_vs_supernet: diff,
            },
            latency,
            tensors: tensors.iter().map(|(n, t)| (n.clone(), t.size())).collect(),
        },
    )?;
    Ok(dir)
}

/// Copies `tensors` into the space's parameters and buffers of the same names and shapes.
fn load_named(space: &Space, tensors: &[(String, Tensor)]) -> Result<()> {
    let mut targets: std::collections::HashMap<String, Tensor> = space
        .parameters()?
        .into_iter()
        .chain(space.buffers()?)
        .collect();
    tch::no_grad(|| -> Result<()> {
        for (name, tensor) in tensors {
            let Some(mut target) = targets.remove(name) else {
                bail!("the subnet space has no tensor `{name}` (the space's export_subnet and subnet_config disagree)");
            };
            if target.size() != tensor.size() {
                bail!(
                    "tensor `{name}`: exported shape {:?}, subnet space shape {:?}",
                    tensor.size(),
                    target.size()
                );
            }
            target.copy_(tensor);
        }
        Ok(())
    })?;
    if let Some(name) = targets.keys().next() {
        bail!(
            "the export lacks the subnet space's tensor `{name}` (and {} more)",
            targets.len() - 1
        );
    }
    Ok(())
}

/// Traces `space`'s eval-mode forward of `arch` on the first examples of `input`.
fn trace(space: &Space, arch: &Arch, input: &Tensor) -> Result<tch::CModule> {
    let example = input.narrow(0, 0, TRACE_EXAMPLES.min(input.size()[0]));
    profile::trace(space, arch, &example).context("tracing the subnet's forward into TorchScript")
}
