//! `metrics.jsonl`: one JSON object per step (plots of it: `crate::report`).

use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, BufWriter, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One trained path of a step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PathRecord {
    /// The arch in the space's text form.
    pub arch: String,
    /// Its choice indices.
    pub choices: Vec<u32>,
    /// Unscaled loss.
    pub loss: f64,
    /// MACs of the arch.
    pub macs: u64,
    /// Params of the arch.
    pub params: u64,
    /// The target complexity of a generated path (in the generator's metric).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
    /// The generator's extra loss term of a generated path (unscaled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_loss: Option<f64>,
}

/// One step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StepRecord {
    /// Global step (0-based).
    pub step: u64,
    /// Epoch.
    pub epoch: u64,
    /// Learning rate used.
    pub lr: f64,
    /// Mean unscaled loss over paths.
    pub loss: f64,
    /// Momentum group used.
    pub momentum_group: u32,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Training images per second over this step.
    pub images_per_s: f64,
    /// The paths.
    pub paths: Vec<PathRecord>,
    /// Held-out probes run after this step's update (ShiftNAS Eq. 8).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<ProbeRecord>,
    /// What the sampler asked to log with this step (its `report`), if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<serde_json::Value>,
    /// Training images of this step's batches that could not be read and were left out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_images: u64,
}

fn is_zero(count: &u64) -> bool {
    *count == 0
}

/// One held-out probe of a step.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct ProbeRecord {
    /// Target complexity probed.
    pub target: f64,
    /// Held-out loss after the update.
    pub loss_after: f64,
    /// Held-out loss before the update.
    pub loss_before: f64,
    /// Its derivative with respect to the target, after the update.
    pub grad_after: f64,
    /// Its derivative with respect to the target, before the update.
    pub grad_before: f64,
}

/// Appends step records to `metrics.jsonl`.
pub struct MetricsWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl MetricsWriter {
    /// Opens `path` for appending, first dropping records of steps `>= from_step` (a resumed run
    /// rewrites what the interrupted run logged after its last checkpoint).
    pub fn open(path: &Path, from_step: u64) -> Result<Self> {
        if path.exists() {
            let kept: Vec<String> = read_lines(path)?
                .into_iter()
                .filter(|line| {
                    serde_json::from_str::<StepRecord>(line)
                        .map(|r| r.step < from_step)
                        .unwrap_or(false)
                })
                .collect();
            let mut text = kept.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            super::io::write_atomic(path, text.as_bytes())?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(MetricsWriter {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    /// Appends a record.
    pub fn write(&mut self, record: &StepRecord) -> Result<()> {
        serde_json::to_writer(&mut self.out, record)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    /// Flushes to disk.
    pub fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

fn read_lines(path: &Path) -> Result<Vec<String>> {
    let file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter(|l| !l.trim().is_empty())
        .collect())
}

/// Reads all step records of a run.
pub fn read(path: &Path) -> Result<Vec<StepRecord>> {
    read_lines(path)?
        .iter()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{} line {}: not a step record", path.display(), i + 1))
        })
        .collect()
}
