//! A run on disk: its folder, checkpoints, `metrics.jsonl`, atomic writes, and a trained run
//! reopened for the stages that read it.

pub mod checkpoint;
pub mod io;
pub mod metrics;
mod trained;

use std::path::PathBuf;

pub use trained::{load_run_config, load_weights, TrainedRun};

use crate::config::RunConfig;

/// The run folder for `config`.
pub fn run_dir(config: &RunConfig) -> PathBuf {
    config.run.out_dir.join(&config.run.name)
}

/// A file-name-safe key of an arch (its choices joined by `-`).
pub fn arch_slug(choices: &[u32]) -> String {
    choices
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join("-")
}
