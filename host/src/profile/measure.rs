//! Timing subnets: the protocol (warm-up, repeated timed runs, median, interleaved rounds) over
//! any [`Stopwatch`], and the real stopwatch, which times plain TorchScript modules of subnets.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use nas_sdk::{rng, Arch, ForwardOptions};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::plugins::{SharedCatalog, Space};

/// Something that runs prepared subnets and times one run each call.
pub trait Stopwatch {
    /// Makes `arch` ready to run (e.g. builds and traces its plain module); prepared archs are
    /// numbered from 0 in call order.
    fn prepare(&mut self, arch: &Arch) -> Result<()>;
    /// Runs prepared arch `index` once; returns its latency in ms.
    fn time_once(&mut self, index: usize) -> Result<f64>;
}

/// How each arch is timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protocol {
    /// Untimed runs before each arch's timed runs of a round.
    pub warmup: usize,
    /// Timed runs of each arch per round.
    pub repeats: usize,
    /// Passes over all archs, each in a fresh shuffled order, so that a slow spell of the
    /// machine is spread over many archs instead of biasing a few.
    pub rounds: usize,
}

impl Default for Protocol {
    fn default() -> Self {
        Protocol {
            warmup: 2,
            repeats: 3,
            rounds: 5,
        }
    }
}

/// Median of `values` (mean of the two middle ones for an even count).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        0.5 * (values[n / 2 - 1] + values[n / 2])
    }
}

/// The timed runs of one arch, summarised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    /// Median of all timed runs, in ms.
    pub median: f64,
    /// Fastest timed run, in ms.
    pub min: f64,
    /// Interquartile range relative to the median (how noisy the runs were).
    pub relative_iqr: f64,
}

impl Timing {
    /// Summarises timed runs (at least one).
    pub fn of(runs: &mut [f64]) -> Self {
        let median = median(runs);
        let quantile = |q: f64| runs[((runs.len() - 1) as f64 * q).round() as usize];
        Timing {
            median,
            min: runs[0],
            relative_iqr: (quantile(0.75) - quantile(0.25)) / median,
        }
    }
}

/// Measures every arch of `archs` with `stopwatch` as `protocol` says: prepares them all, then
/// per round visits them in a shuffled order (seeded by `seed`), runs `warmup` untimed and
/// `repeats` timed runs of each; returns per arch a summary of all its timed runs.
/// `progress(done, total)` is called after each visit.
pub fn measure(
    stopwatch: &mut dyn Stopwatch,
    archs: &[Arch],
    protocol: &Protocol,
    seed: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Timing>> {
    if protocol.repeats == 0 || protocol.rounds == 0 {
        bail!("latency measurement needs at least one timed run (--repeats and --rounds >= 1)");
    }
    let total = archs.len() * (protocol.rounds + 1);
    let mut done = 0;
    for arch in archs {
        stopwatch.prepare(arch)?;
        done += 1;
        progress(done, total);
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); archs.len()];
    let mut rng = rng::stream(seed, 0, "latency-rounds");
    for _ in 0..protocol.rounds {
        let mut order: Vec<usize> = (0..archs.len()).collect();
        order.shuffle(&mut rng);
        for index in order {
            for _ in 0..protocol.warmup {
                stopwatch.time_once(index)?;
            }
            for _ in 0..protocol.repeats {
                let ms = stopwatch.time_once(index)?;
                if !(ms.is_finite() && ms > 0.0) {
                    bail!(
                        "timing arch {:?} gave {ms} ms; the clock or the device misbehaves",
                        archs[index].choices()
                    );
                }
                times[index].push(ms);
            }
            done += 1;
            progress(done, total);
        }
    }
    Ok(times.iter_mut().map(|t| Timing::of(t)).collect())
}

/// Times plain modules of subnets: for a space that describes its subnets as a config of its
/// own ([`Space::subnet_config`]) the space is rebuilt at exactly the subnet's sizes; otherwise
/// the supernet's forward of the arch is used. Either way the forward is traced into TorchScript,
/// as `nas export` does, and the traced module is what is timed, on `device`, with no gradients.
/// Weights are freshly initialised: latency does not depend on their values.
pub struct ModuleStopwatch<'a> {
    catalog: &'a SharedCatalog,
    supernet: &'a Space,
    device: Device,
    input: Tensor,
    modules: Vec<tch::CModule>,
}

impl<'a> ModuleStopwatch<'a> {
    /// A stopwatch for subnets of `supernet` (already built on `device`) on a batch of
    /// `input_shape` random images.
    pub fn new(
        catalog: &'a SharedCatalog,
        supernet: &'a Space,
        device: Device,
        input_shape: &[i64],
    ) -> Self {
        let input = Tensor::randn(input_shape, (Kind::Float, device));
        ModuleStopwatch {
            catalog,
            supernet,
            device,
            input,
            modules: Vec::new(),
        }
    }
}

fn synchronize(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

/// One timed run of `module` on `input`, in ms (synchronised before and after on CUDA).
fn time_run(module: &tch::CModule, input: &Tensor, device: Device) -> Result<f64> {
    synchronize(device);
    let start = Instant::now();
    let output = tch::no_grad(|| module.forward_ts(&[input]))?;
    synchronize(device);
    let elapsed = start.elapsed();
    drop(output);
    Ok(elapsed.as_secs_f64() * 1e3)
}

/// Times one TorchScript module (e.g. an exported `subnet.pt`) on a batch of `input_shape`
/// random images on `device`, as [`measure`] times a profiled subnet under `protocol`.
pub fn time_module(
    module: tch::CModule,
    device: Device,
    input_shape: &[i64],
    protocol: &Protocol,
) -> Result<Timing> {
    struct One {
        module: tch::CModule,
        input: Tensor,
        device: Device,
    }
    impl Stopwatch for One {
        fn prepare(&mut self, _arch: &Arch) -> Result<()> {
            Ok(())
        }
        fn time_once(&mut self, _index: usize) -> Result<f64> {
            time_run(&self.module, &self.input, self.device)
        }
    }
    let mut one = One {
        module,
        input: Tensor::randn(input_shape, (Kind::Float, device)),
        device,
    };
    let timing = measure(
        &mut one,
        &[Arch::new(Vec::new())],
        protocol,
        0,
        &mut |_, _| {},
    )?;
    Ok(timing[0])
}

impl Stopwatch for ModuleStopwatch<'_> {
    fn prepare(&mut self, arch: &Arch) -> Result<()> {
        let module = match self.supernet.subnet_config(arch)? {
            Some(config) => {
                let mut subnet =
                    Space::from_json(self.catalog, &self.supernet.origin().name, &config)?;
                subnet.build(self.device)?;
                let plain = Arch::new(vec![0; subnet.decisions().len()]);
                trace(&subnet, &plain, &self.input)?
            }
            None => trace(self.supernet, arch, &self.input)?,
        };
        self.modules.push(module);
        Ok(())
    }

    fn time_once(&mut self, index: usize) -> Result<f64> {
        time_run(&self.modules[index], &self.input, self.device)
            .with_context(|| format!("running the traced module of subnet #{index}"))
    }
}

/// Traces `space`'s eval-mode forward of `arch` on `input` into a TorchScript module (what
/// `nas profile` times and `nas export` writes); the space's parameters become constants.
pub fn trace(space: &Space, arch: &Arch, input: &Tensor) -> Result<tch::CModule> {
    for (_, parameter) in space.parameters()? {
        let _ = parameter.set_requires_grad(false);
    }
    let mut failure = None;
    let module = tch::no_grad(|| {
        tch::CModule::create_by_tracing(
            "subnet",
            "forward",
            &[input.shallow_clone()],
            &mut |inputs| match space.forward(&inputs[0], arch, None, &ForwardOptions::EVAL) {
                Ok(logits) => vec![logits],
                Err(err) => {
                    failure = Some(err);
                    vec![inputs[0].shallow_clone()]
                }
            },
        )
    });
    if let Some(err) = failure {
        return Err(err);
    }
    module.with_context(|| format!("tracing the forward of subnet {:?}", arch.choices()))
}

/// What the device is, for the record and for refusing tables of another machine: the CPU's
/// model name from `/proc/cpuinfo`, or the GPU's model from the NVIDIA driver.
pub fn device_model(device: Device) -> String {
    match device {
        Device::Cuda(index) => {
            let gpus = std::fs::read_dir("/proc/driver/nvidia/gpus")
                .map(|entries| {
                    let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
                    paths.sort();
                    paths
                })
                .unwrap_or_default();
            gpus.get(index)
                .and_then(|dir| std::fs::read_to_string(dir.join("information")).ok())
                .and_then(|text| field(&text, "Model"))
                .unwrap_or_else(|| format!("CUDA device {index}"))
        }
        _ => std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| field(&text, "model name"))
            .unwrap_or_else(|| std::env::consts::ARCH.to_string()),
    }
}

/// The value of the first `name: value` line of `text`.
fn field(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Latency = a fixed cost per arch, with every run number `spike_every` taking 10x longer.
    struct Spiky {
        costs: Vec<f64>,
        prepared: Vec<f64>,
        runs: usize,
        spike_every: usize,
    }

    impl Stopwatch for Spiky {
        fn prepare(&mut self, arch: &Arch) -> Result<()> {
            self.prepared.push(self.costs[arch.choices()[0] as usize]);
            Ok(())
        }
        fn time_once(&mut self, index: usize) -> Result<f64> {
            self.runs += 1;
            let spike = if self.runs.is_multiple_of(self.spike_every) {
                10.0
            } else {
                1.0
            };
            Ok(self.prepared[index] * spike)
        }
    }

    #[test]
    fn the_median_ignores_occasional_slow_runs_and_warmup_is_untimed() {
        let mut stopwatch = Spiky {
            costs: vec![1.0, 2.0, 3.0],
            prepared: Vec::new(),
            runs: 0,
            spike_every: 5,
        };
        let archs: Vec<Arch> = (0..3).map(|c| Arch::new(vec![c])).collect();
        let protocol = Protocol {
            warmup: 2,
            repeats: 5,
            rounds: 2,
        };
        let timings = measure(&mut stopwatch, &archs, &protocol, 0, &mut |_, _| {}).unwrap();
        let medians: Vec<f64> = timings.iter().map(|t| t.median).collect();
        assert_eq!(medians, vec![1.0, 2.0, 3.0]);
        assert!(timings.iter().all(|t| t.relative_iqr == 0.0));
        assert_eq!(stopwatch.runs, 3 * 2 * (2 + 5));
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn cpuinfo_fields_are_read() {
        let text = "processor\t: 0\nmodel name\t: Some CPU @ 2.00GHz\nflags\t: a b\n";
        assert_eq!(
            field(text, "model name").as_deref(),
            Some("Some CPU @ 2.00GHz")
        );
        assert_eq!(field(text, "Model"), None);
    }
}
