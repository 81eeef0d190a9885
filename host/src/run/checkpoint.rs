//! Checkpoints: weights, BN buffers and optimizer state in safetensors, the rest in JSON.
//!
//! Layout: `<run>/checkpoints/step-NNNNNNNN/{weights.safetensors,state.json}`, and
//! `<run>/checkpoints/latest.json` naming the newest complete one. A checkpoint folder is written
//! under a temporary name and renamed when complete; `latest.json` is replaced atomically after
//! that, so a crash at any moment leaves the previous checkpoint loadable. Nothing read from a
//! checkpoint is executed: tensors are data, and the JSON is parsed into plain structs.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::io::{read_json, write_json_atomic, write_safetensors_atomic};

/// Which part of a parameter's optimizer state a checkpoint tensor holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateSlot {
    /// SGD's momentum buffer, or AdamW's first moment.
    Momentum,
    /// AdamW's second moment.
    SecondMoment,
    /// AdamW's update count of the parameter (a 0-dim int64 tensor).
    Steps,
}

impl StateSlot {
    /// The prefix of the slot's tensor names in checkpoints.
    pub fn prefix(self) -> &'static str {
        match self {
            StateSlot::Momentum => "momentum",
            StateSlot::SecondMoment => "second_moment",
            StateSlot::Steps => "adam_steps",
        }
    }

    /// All slots.
    pub const ALL: [StateSlot; 3] = [
        StateSlot::Momentum,
        StateSlot::SecondMoment,
        StateSlot::Steps,
    ];
}

/// Everything in a checkpoint that is not a tensor.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CheckpointState {
    /// Steps completed (the next step to run).
    pub step: u64,
    /// Training batches consumed so far.
    pub batches_consumed: u64,
    /// The sampler's saved state (JSON text).
    pub sampler_state: String,
    /// Momentum groups that exist.
    pub momentum_groups: Vec<u32>,
    /// Optimizer updates applied so far (one per step).
    #[serde(default)]
    pub optimizer_updates: u64,
    /// Hash of the trajectory-relevant config.
    pub config_hash: String,
    /// nas-sdk version of the host that wrote it.
    pub sdk_version: String,
    /// The generator's saved state (JSON text), when the run has a generator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_state: Option<String>,
    /// Processes of the data-parallel run that wrote it (absent: 1); a resume needs as many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world_size: Option<u64>,
}

/// The tensors of a checkpoint.
pub struct CheckpointTensors {
    /// Supernet parameters by name.
    pub params: Vec<(String, Tensor)>,
    /// Supernet buffers by name.
    pub buffers: Vec<(String, Tensor)>,
    /// Optimizer state: `(slot, group, parameter index, tensor)`.
    pub optimizer: Vec<(StateSlot, u32, usize, Tensor)>,
    /// Generator parameters by name (stored as `generator.param.<name>`).
    pub generator_params: Vec<(String, Tensor)>,
    /// The generator optimizer's state (stored under `generator.`).
    pub generator_optimizer: Vec<(StateSlot, u32, usize, Tensor)>,
}

/// What a stored tensor name holds.
enum Entry {
    Param(String),
    Buffer(String),
    Optimizer(StateSlot, u32, usize),
}

fn parse_entry(name: &str) -> Option<Entry> {
    if let Some(rest) = name.strip_prefix("param.") {
        return Some(Entry::Param(rest.to_string()));
    }
    if let Some(rest) = name.strip_prefix("buffer.") {
        return Some(Entry::Buffer(rest.to_string()));
    }
    let (slot, rest) = StateSlot::ALL.iter().find_map(|slot| {
        name.strip_prefix(slot.prefix())
            .and_then(|r| r.strip_prefix('.'))
            .map(|r| (*slot, r))
    })?;
    let (group, index) = rest.split_once('.')?;
    Some(Entry::Optimizer(
        slot,
        group.parse().ok()?,
        index.parse().ok()?,
    ))
}

#[derive(Serialize, Deserialize)]
struct Latest {
    dir: String,
    step: u64,
}

fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// The folder of the checkpoint taken after `step` steps.
pub fn step_dir(run_dir: &Path, step: u64) -> PathBuf {
    checkpoints_dir(run_dir).join(format!("step-{step:08}"))
}

/// Writes a checkpoint and points `latest.json` at it; keeps the newest `keep` checkpoints.
pub fn save(
    run_dir: &Path,
    state: &CheckpointState,
    tensors: &CheckpointTensors,
    keep: usize,
) -> Result<PathBuf> {
    let root = checkpoints_dir(run_dir);
    let final_dir = step_dir(run_dir, state.step);
    let name = final_dir
        .file_name()
        .expect("a step folder")
        .to_string_lossy()
        .into_owned();
    let temp_dir = root.join(format!(".{name}.tmp-{}", std::process::id()));
    if temp_dir.exists() {
        std::fs::remove_dir_all(&temp_dir)?;
    }
    std::fs::create_dir_all(&temp_dir)
        .with_context(|| format!("creating {}", temp_dir.display()))?;

    let mut named: Vec<(String, Tensor)> = Vec::new();
    for (n, t) in &tensors.params {
        named.push((format!("param.{n}"), t.shallow_clone()));
    }
    for (n, t) in &tensors.buffers {
        named.push((format!("buffer.{n}"), t.shallow_clone()));
    }
    for (slot, group, index, t) in &tensors.optimizer {
        named.push((
            format!("{}.{group}.{index}", slot.prefix()),
            t.shallow_clone(),
        ));
    }
    for (n, t) in &tensors.generator_params {
        named.push((format!("generator.param.{n}"), t.shallow_clone()));
    }
    for (slot, group, index, t) in &tensors.generator_optimizer {
        named.push((
            format!("generator.{}.{group}.{index}", slot.prefix()),
            t.shallow_clone(),
        ));
    }
    write_safetensors_atomic(&temp_dir.join("weights.safetensors"), &named)?;
    write_json_atomic(&temp_dir.join("state.json"), state)?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir)
            .with_context(|| format!("replacing {}", final_dir.display()))?;
    }
    std::fs::rename(&temp_dir, &final_dir)
        .with_context(|| format!("renaming {} to {}", temp_dir.display(), final_dir.display()))?;
    write_json_atomic(
        &root.join("latest.json"),
        &Latest {
            dir: name,
            step: state.step,
        },
    )?;
    prune(&root, keep.max(1))?;
    Ok(final_dir)
}

fn prune(root: &Path, keep: usize) -> Result<()> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .map(|n| n.to_string_lossy().starts_with("step-"))
                    .unwrap_or(false)
        })
        .collect();
    dirs.sort();
    if dirs.len() > keep {
        for dir in &dirs[..dirs.len() - keep] {
            std::fs::remove_dir_all(dir)?;
        }
    }
    Ok(())
}

/// The newest complete checkpoint folder of a run, if any.
pub fn latest(run_dir: &Path) -> Result<Option<PathBuf>> {
    let root = checkpoints_dir(run_dir);
    let pointer = root.join("latest.json");
    if !pointer.is_file() {
        return Ok(None);
    }
    let latest: Latest = read_json(&pointer)?;
    if latest.dir.contains('/') || latest.dir.contains("..") {
        bail!(
            "{} names an invalid folder `{}`",
            pointer.display(),
            latest.dir
        );
    }
    let dir = root.join(&latest.dir);
    if !dir.is_dir() {
        bail!(
            "{} points at {}, which does not exist",
            pointer.display(),
            dir.display()
        );
    }
    Ok(Some(dir))
}

/// Reads a checkpoint folder.
pub fn load(dir: &Path) -> Result<(CheckpointState, CheckpointTensors)> {
    let state: CheckpointState = read_json(&dir.join("state.json"))?;
    let weights = dir.join("weights.safetensors");
    let named = Tensor::read_safetensors(&weights)
        .with_context(|| format!("reading {}", weights.display()))?;
    let mut tensors = CheckpointTensors {
        params: Vec::new(),
        buffers: Vec::new(),
        optimizer: Vec::new(),
        generator_params: Vec::new(),
        generator_optimizer: Vec::new(),
    };
    for (name, tensor) in named {
        let (generator, local) = match name.strip_prefix("generator.") {
            Some(rest) => (true, rest),
            None => (false, name.as_str()),
        };
        match (generator, parse_entry(local)) {
            (false, Some(Entry::Param(n))) => tensors.params.push((n, tensor)),
            (false, Some(Entry::Buffer(n))) => tensors.buffers.push((n, tensor)),
            (false, Some(Entry::Optimizer(slot, group, index))) => {
                tensors.optimizer.push((slot, group, index, tensor))
            }
            (true, Some(Entry::Param(n))) => tensors.generator_params.push((n, tensor)),
            (true, Some(Entry::Optimizer(slot, group, index))) => tensors
                .generator_optimizer
                .push((slot, group, index, tensor)),
            _ => bail!("{}: unexpected tensor `{name}`", weights.display()),
        }
    }
    Ok((state, tensors))
}

/// Copies `saved` into `live` by name, checking that names and shapes match exactly.
pub fn copy_into(
    live: &[(String, Tensor)],
    saved: &[(String, Tensor)],
    what: &str,
    source: &Path,
) -> Result<()> {
    let by_name: std::collections::HashMap<&str, &Tensor> =
        saved.iter().map(|(n, t)| (n.as_str(), t)).collect();
    if by_name.len() != live.len() {
        bail!(
            "{}: checkpoint has {} {what}, the supernet has {}; was it written with another space config?",
            source.display(),
            by_name.len(),
            live.len()
        );
    }
    tch::no_grad(|| -> Result<()> {
        for (name, tensor) in live {
            let saved = by_name.get(name.as_str()).with_context(|| {
                format!(
                    "{}: {what} `{name}` is missing from the checkpoint",
                    source.display()
                )
            })?;
            if saved.size() != tensor.size() {
                bail!(
                    "{}: {what} `{name}` has shape {:?} in the checkpoint, {:?} in the supernet",
                    source.display(),
                    saved.size(),
                    tensor.size()
                );
            }
            tensor.shallow_clone().copy_(saved);
        }
        Ok(())
    })
}
