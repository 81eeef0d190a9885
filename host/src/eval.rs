//! Accuracy of one subnet under a batch-norm policy.
//!
//! Running BN statistics collected while many subnets share a BN layer fit none of them, so every
//! evaluation names its policy, and every result records it:
//! - `batch-stats`: each evaluation batch is normalised with its own statistics (NAS-Bench-201);
//! - `recalibrate K`: reset the running statistics, forward K training batches in train mode
//!   without gradients (cumulative average, as AttentiveNAS), then evaluate with them;
//! - `running`: the running statistics as trained, for stand-alone subnets (`nas retrain`).

use anyhow::{bail, Result};
use nas_sdk::{Arch, ForwardOptions, SpaceClient};
use serde::Serialize;
use tch::{Kind, Tensor};

use crate::data::{BatchSource, Split};
use crate::plugins::Origin;

/// The batches BN recalibration draws from the training split: their own seeded stream, not the
/// training order, and the same for `nas eval`, `nas search` and `nas export`, so all three
/// calibrate an arch identically.
pub fn calibration_batches(train: &Split, batch_size: usize, run_seed: u64) -> Result<BatchSource> {
    BatchSource::new(train.len(), batch_size, run_seed ^ 0x5eed_ca1b)
}

/// How BN statistics are obtained for an evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "policy", rename_all = "kebab-case")]
pub enum BnPolicy {
    /// Per-batch statistics.
    BatchStats,
    /// Recalibrated running statistics from `batches` training batches.
    Recalibrate {
        /// Training batches forwarded.
        batches: usize,
    },
    /// The running statistics as trained (right for a stand-alone subnet, not for a supernet).
    Running,
}

/// The policy's short name (`batch-stats`, `running`, `recalibrate-K`), as in file names and tables.
impl std::fmt::Display for BnPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BnPolicy::BatchStats => f.write_str("batch-stats"),
            BnPolicy::Running => f.write_str("running"),
            BnPolicy::Recalibrate { batches } => write!(f, "recalibrate-{batches}"),
        }
    }
}

impl BnPolicy {
    /// The policy named on the command line, else the run's `[eval]` defaults.
    pub fn for_run(
        config: &crate::config::RunConfig,
        name: Option<&str>,
        batches: Option<usize>,
    ) -> Result<Self> {
        Self::parse(
            name.unwrap_or(&config.eval.bn),
            batches.unwrap_or(config.eval.calib_batches),
        )
    }

    /// Parses `batch-stats`, `recalibrate` (with `batches` calibration batches) or `running`.
    pub fn parse(name: &str, batches: usize) -> Result<Self> {
        match name {
            "batch-stats" => Ok(BnPolicy::BatchStats),
            "running" => Ok(BnPolicy::Running),
            "recalibrate" if batches > 0 => Ok(BnPolicy::Recalibrate { batches }),
            "recalibrate" => bail!("BN policy `recalibrate` needs at least 1 calibration batch"),
            other => {
                bail!("unknown BN policy `{other}`: use `batch-stats`, `recalibrate` or `running`")
            }
        }
    }
}

/// An evaluation result.
#[derive(Clone, Debug, Serialize)]
pub struct EvalResult {
    /// Top-1 accuracy in percent.
    pub accuracy: f64,
    /// Mean cross-entropy.
    pub loss: f64,
    /// Examples evaluated.
    pub examples: usize,
    /// The BN policy used.
    pub bn: BnPolicy,
}

/// Resets the space's BN running statistics (mean 0, variance 1).
fn reset_running_stats(space: &SpaceClient, origin: &Origin) -> Result<()> {
    let buffers = space.buffers().map_err(|e| origin.error("buffers", e))?;
    tch::no_grad(|| {
        for (name, buffer) in buffers {
            let mut buffer = buffer;
            if name.ends_with("running_var") {
                let _ = buffer.fill_(1.0);
            } else {
                let _ = buffer.zero_();
            }
        }
    });
    Ok(())
}

/// Evaluates `arch` on `split` in batches of `batch_size`; `calibration` provides training batches
/// for `recalibrate`.
pub fn evaluate(
    space: &SpaceClient,
    origin: &Origin,
    arch: &Arch,
    split: &Split,
    batch_size: usize,
    policy: BnPolicy,
    calibration: Option<(&Split, &mut BatchSource)>,
) -> Result<EvalResult> {
    if split.is_empty() {
        bail!("the evaluation split is empty");
    }
    let logits = logits(space, origin, arch, split, batch_size, policy, calibration)?;
    let n = split.len();
    let labels = split.labels.to_device(logits.device());
    // Summed per example, so the mean is exact whatever the batching was.
    let loss_sum = -logits
        .log_softmax(-1, Kind::Float)
        .gather(1, &labels.unsqueeze(1), false)
        .sum(Kind::Double)
        .double_value(&[]);
    let correct = logits
        .argmax(-1, false)
        .eq_tensor(&labels)
        .sum(Kind::Int64)
        .int64_value(&[]);
    Ok(EvalResult {
        accuracy: 100.0 * correct as f64 / n as f64,
        loss: loss_sum / n as f64,
        examples: n,
        bn: policy,
    })
}

/// Gets the space's BN layers ready to evaluate `arch` under `policy` (recalibrating the running
/// statistics if it asks) and returns the forward options to evaluate with.
pub fn prepare_bn(
    space: &SpaceClient,
    origin: &Origin,
    arch: &Arch,
    policy: BnPolicy,
    calibration: Option<(&Split, &mut BatchSource)>,
) -> Result<ForwardOptions> {
    Ok(match policy {
        BnPolicy::BatchStats => ForwardOptions::BATCH_STATS,
        BnPolicy::Running => ForwardOptions::EVAL,
        BnPolicy::Recalibrate { batches } => {
            let Some((train, source)) = calibration else {
                bail!("BN recalibration needs the training split");
            };
            // Spaces without running statistics (ViTs) have nothing to recalibrate.
            if space
                .buffers()
                .map_err(|e| origin.error("buffers", e))?
                .is_empty()
            {
                return Ok(ForwardOptions::EVAL);
            }
            reset_running_stats(space, origin)?;
            tch::no_grad(|| -> Result<()> {
                for k in 0..batches {
                    let (images, _) = source.batch(train, k as u64);
                    let calibrate = ForwardOptions {
                        train: false,
                        bn: nas_sdk::BnMode::TrainUpdate,
                        // Exact cumulative average of the K batches.
                        bn_momentum: 1.0 / (k as f64 + 1.0),
                    };
                    let _ = space
                        .forward(&images, arch, None, &calibrate)
                        .map_err(|e| origin.error("forward", e))?;
                }
                Ok(())
            })?;
            ForwardOptions::EVAL
        }
    })
}

/// Logits of `arch` for every example of `split` under `policy` (recalibrating first if asked),
/// in batches of `batch_size`.
pub fn logits(
    space: &SpaceClient,
    origin: &Origin,
    arch: &Arch,
    split: &Split,
    batch_size: usize,
    policy: BnPolicy,
    calibration: Option<(&Split, &mut BatchSource)>,
) -> Result<Tensor> {
    let options = prepare_bn(space, origin, arch, policy, calibration)?;
    let mut parts = Vec::new();
    tch::no_grad(|| -> Result<()> {
        let mut start = 0;
        while start < split.len() {
            let count = batch_size.min(split.len() - start);
            let (images, _) = split.slice(start, count);
            parts.push(
                space
                    .forward(&images, arch, None, &options)
                    .map_err(|e| origin.error("forward", e))?,
            );
            start += count;
        }
        Ok(())
    })?;
    Ok(Tensor::cat(&parts, 0))
}
