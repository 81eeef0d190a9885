//! Getting a supernet's BN statistics ready for one subnet under a [`BnPolicy`], and putting the
//! trained statistics back afterwards.

use anyhow::{bail, Result};
use nas_sdk::{Arch, BnMode, ForwardOptions};
use tch::Tensor;

use crate::{
    config::{BnPolicy, RunConfig},
    data::{BatchSource, Split},
    plugins::Space,
};

/// The training batches BN recalibration forwards. One seed rule for every command that
/// recalibrates (`nas eval`, `nas search`, `nas search --generator`, `nas export`): the run's
/// seed and batch size, on a stream of its own (not the training order), so all of them
/// calibrate an arch identically whatever else their options say.
pub struct Calibration<'a> {
    train: &'a Split,
    batches: BatchSource,
    /// Streamed batches decoded once: every subnet calibrates on the same K batches.
    cache: Vec<(Tensor, Tensor)>,
}

/// Decoded calibration batches kept for a streamed training split.
const CACHE_BYTES: usize = 1 << 30;

impl<'a> Calibration<'a> {
    /// The calibration batches of the run configured by `config`, drawn from `train`.
    pub fn for_run(config: &RunConfig, train: &'a Split) -> Result<Self> {
        Ok(Calibration {
            train,
            batches: BatchSource::new(
                train.len(),
                config.train.batch_size,
                config.run.seed ^ 0x5eed_ca1b,
            )?,
            cache: Vec::new(),
        })
    }

    /// Calibration batch `k` (images, labels).
    pub fn batch(&mut self, k: u64) -> Result<(Tensor, Tensor)> {
        if !self.train.is_streamed() {
            return self.batches.batch(self.train, k);
        }
        if let Some((images, labels)) = self.cache.get(k as usize) {
            return Ok((images.shallow_clone(), labels.shallow_clone()));
        }
        let batch = self.batches.batch(self.train, k)?;
        let cached_bytes: usize = self.cache.iter().map(|(i, _)| i.numel() * 4).sum();
        if k as usize == self.cache.len() && cached_bytes + batch.0.numel() * 4 <= CACHE_BYTES {
            self.cache
                .push((batch.0.shallow_clone(), batch.1.shallow_clone()));
        }
        Ok(batch)
    }
}

/// A copy of a space's buffers (BN running statistics) to put back after a recalibration, so
/// the next subnet starts from the trained statistics.
pub struct BnSnapshot {
    buffers: Vec<(String, Tensor)>,
    saved: Vec<Tensor>,
}

impl BnSnapshot {
    /// Copies the space's buffers as they are now.
    pub fn take(space: &Space) -> Result<Self> {
        let buffers = space.buffers()?;
        let saved = buffers.iter().map(|(_, t)| t.copy()).collect();
        Ok(BnSnapshot { buffers, saved })
    }

    /// Writes the copied values back into the live buffers.
    pub fn restore(&self) {
        tch::no_grad(|| {
            for ((_, live), saved) in self.buffers.iter().zip(&self.saved) {
                live.shallow_clone().copy_(saved);
            }
        });
    }
}

/// Resets the space's BN running statistics (mean 0, variance 1).
fn reset_running_stats(space: &Space) -> Result<()> {
    let buffers = space.buffers()?;
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

/// Gets the space's BN layers ready to evaluate `arch` under `policy` (recalibrating the running
/// statistics if it asks) and returns the forward options to evaluate with.
pub fn prepare_bn(
    space: &Space,
    arch: &Arch,
    policy: BnPolicy,
    calibration: Option<&mut Calibration<'_>>,
) -> Result<ForwardOptions> {
    Ok(match policy {
        BnPolicy::BatchStats => ForwardOptions::BATCH_STATS,
        BnPolicy::Running => ForwardOptions::EVAL,
        BnPolicy::Recalibrate { batches } => {
            let Some(calibration) = calibration else {
                bail!("BN recalibration needs the training split");
            };
            // Spaces without running statistics (ViTs) have nothing to recalibrate.
            if space.buffers()?.is_empty() {
                return Ok(ForwardOptions::EVAL);
            }
            reset_running_stats(space)?;
            tch::no_grad(|| -> Result<()> {
                for k in 0..batches {
                    let (images, _) = calibration.batch(k as u64)?;
                    let calibrate = ForwardOptions {
                        train: false,
                        bn: BnMode::TrainUpdate,
                        // Exact cumulative average of the K batches.
                        bn_momentum: 1.0 / (k as f64 + 1.0),
                    };
                    let _ = space.forward(&images, arch, None, &calibrate)?;
                }
                Ok(())
            })?;
            ForwardOptions::EVAL
        }
    })
}
