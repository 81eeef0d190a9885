//! How subnets of a supernet get their batch-norm statistics for evaluation.
//!
//! Running BN statistics collected while many subnets share a BN layer fit none of them, so every
//! evaluation names its policy, and every result records it:
//! - `batch-stats`: each evaluation batch is normalised with its own statistics (NAS-Bench-201);
//! - `recalibrate K`: reset the running statistics, forward K training batches in train mode
//!   without gradients (cumulative average, as AttentiveNAS), then evaluate with them;
//! - `running`: the running statistics as trained, for stand-alone subnets (`nas retrain`).

use anyhow::{bail, Result};
use serde::Serialize;

use super::RunConfig;

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
    pub fn for_run(config: &RunConfig, name: Option<&str>, batches: Option<usize>) -> Result<Self> {
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
