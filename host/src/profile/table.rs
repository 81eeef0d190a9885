//! `latency.json`: a measured additive latency table, what it was measured for, and the checks
//! that refuse it for another space, space config or device.

use std::path::Path;

use anyhow::{bail, Context, Result};
use nas_sdk::{Arch, Decision};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{fit::ErrorSummary, measure::Protocol, AdditiveModel};
use crate::run::io;

/// The `format` field of a latency table this build reads and writes.
pub const FORMAT: &str = "nas-latency-table/1";

/// A measured latency table (`latency.json`): `base_ms` plus one term per decision and option,
/// for one space with one config, on one device with one thread count and batch size.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LatencyTable {
    /// [`FORMAT`].
    pub format: String,
    /// The space's component name (`nb201`).
    pub space: String,
    /// The space plugin's version when measured.
    pub space_version: String,
    /// The space's config as given to the plugin.
    pub space_config: serde_json::Value,
    /// [`config_digest`] of `space_config`.
    pub space_config_digest: String,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// The device's model (the CPU's model name, the GPU's model).
    pub device_model: String,
    /// libtorch intra-op threads.
    pub threads: usize,
    /// Batch size of the timed runs.
    pub batch: i64,
    /// Input shape of the timed runs (batch, channels, height, width).
    pub input_shape: Vec<i64>,
    /// libtorch version.
    pub libtorch_version: String,
    /// Version of `nas` that measured it.
    pub nas_version: String,
    /// Latency of the fixed part (option 0 of every decision), in ms.
    pub base_ms: f64,
    /// Per decision (in the space's order): option names and the latency each adds, in ms.
    pub decisions: Vec<DecisionLatency>,
    /// How it was measured.
    pub measurement: Measurement,
    /// The fit's error on the archs it was fitted to.
    pub fit_error: ErrorSummary,
    /// The table against held-out archs measured end to end.
    pub validation: Validation,
    /// Every measured arch: choices, measured median and the table's prediction.
    pub samples: Vec<Sample>,
}

/// The latency terms of one decision.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DecisionLatency {
    /// Decision name.
    pub name: String,
    /// Option names.
    pub options: Vec<String>,
    /// `ms[j]`: latency added by option `j` (option 0: 0).
    pub ms: Vec<f64>,
}

/// How a table was measured.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Measurement {
    /// In words.
    pub method: String,
    /// Warm-up, timed runs and rounds per arch.
    pub protocol: Protocol,
    /// Archs the table was fitted to.
    pub fit_archs: usize,
    /// Held-out archs it was validated on.
    pub validation_archs: usize,
    /// Seed of the drawn archs.
    pub seed: u64,
    /// Wall time of the measurement, in seconds.
    pub seconds: f64,
}

/// The table against held-out archs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Validation {
    /// Relative errors of the table's predictions.
    pub error: ErrorSummary,
    /// Kendall's tau-b between predicted and measured latencies (`None` with fewer than 2
    /// archs or constant values).
    pub kendall_tau: Option<f64>,
    /// Whether the additive model is good enough: mean error at most
    /// [`MAX_MEAN_ERROR`] and tau at least [`MIN_TAU`].
    pub additive_ok: bool,
}

/// Largest mean relative validation error of a table called good.
pub const MAX_MEAN_ERROR: f64 = 0.10;
/// Smallest Kendall tau of a table called good.
pub const MIN_TAU: f64 = 0.9;

/// One measured arch.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    /// `fit` or `validation`.
    pub set: String,
    /// Choices.
    pub choices: Vec<u32>,
    /// Median measured latency, in ms.
    pub measured_ms: f64,
    /// Fastest timed run, in ms.
    pub min_ms: f64,
    /// Interquartile range of the timed runs relative to their median.
    pub relative_iqr: f64,
    /// The table's latency, in ms.
    pub predicted_ms: f64,
}

/// Canonical JSON (object keys sorted at every level) of a space config.
pub fn canonical_json(value: &serde_json::Value) -> String {
    fn write(value: &serde_json::Value, out: &mut String) {
        match value {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(key.clone()).to_string());
                    out.push(':');
                    write(&map[key], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// `sha256:<hex>` of a space config's canonical JSON.
pub fn config_digest(config: &serde_json::Value) -> String {
    let digest = Sha256::digest(canonical_json(config).as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Top-level fields of two configs that differ, as `field (a vs b)`.
fn differing_fields(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (a, b) = (
        a.as_object().unwrap_or(&empty),
        b.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&serde_json::Value>| {
                v.map(|v| {
                    let text = canonical_json(v);
                    if text.len() > 40 {
                        format!("{}...", text.chars().take(37).collect::<String>())
                    } else {
                        text
                    }
                })
                .unwrap_or_else(|| "unset".into())
            };
            format!("`{k}` ({} vs {})", show(a.get(k)), show(b.get(k)))
        })
        .collect()
}

impl LatencyTable {
    /// The table's additive model.
    pub fn model(&self) -> AdditiveModel {
        AdditiveModel {
            base: self.base_ms,
            per_option: self.decisions.iter().map(|d| d.ms.clone()).collect(),
        }
    }

    /// The table's latency of `arch`, in ms (the arch must belong to the table's space:
    /// [`LatencyTable::check_space`]).
    pub fn predict_ms(&self, arch: &Arch) -> f64 {
        self.model().predict(arch.choices())
    }

    /// Writes the table to `path` atomically (temp file and rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        io::write_json_atomic(path, self)
    }

    /// Reads a table written by `nas profile`, checking its format and its shape.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading latency table {}", path.display()))?;
        let table: LatencyTable = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a latency table written by `nas profile` (format {FORMAT})",
                path.display()
            )
        })?;
        if table.format != FORMAT {
            bail!(
                "{}: latency table format `{}`, this nas reads `{FORMAT}`; measure it again with `nas profile`",
                path.display(),
                table.format
            );
        }
        for d in &table.decisions {
            if d.ms.len() != d.options.len() || d.ms.iter().any(|v| !v.is_finite()) {
                bail!(
                    "{}: decision `{}` has {} options but {} latency values (or a non-finite one)",
                    path.display(),
                    d.name,
                    d.options.len(),
                    d.ms.len()
                );
            }
        }
        Ok(table)
    }

    /// Refuses the table (read from `path`) for a space other than the one it was measured for:
    /// another component, another config (by digest), or other decisions.
    pub fn check_space(
        &self,
        path: &Path,
        space: &str,
        config: &serde_json::Value,
        decisions: &[Decision],
    ) -> Result<()> {
        let file = path.display();
        if self.space != space {
            bail!(
                "latency table {file} was measured for space `{}`, not `{space}`; measure one for this space with `nas profile --space {space}` (or `--run RUN_DIR`)",
                self.space
            );
        }
        let digest = config_digest(config);
        if self.space_config_digest != digest {
            let fields = differing_fields(&self.space_config, config);
            bail!(
                "latency table {file} was measured for another config of space `{space}` ({} here, {digest} wanted); differing fields, table vs this space: {}; measure one for this config with `nas profile --run RUN_DIR` or `--space-config`",
                self.space_config_digest,
                if fields.is_empty() { "none at the top level".into() } else { fields.join(", ") }
            );
        }
        let same_shape = self.decisions.len() == decisions.len()
            && self
                .decisions
                .iter()
                .zip(decisions)
                .all(|(t, d)| t.name == d.name && t.options.len() == d.options.len());
        if !same_shape {
            bail!(
                "latency table {file}: its decisions ({} of them) are not the space's ({}) although the config is the same; the plugin `{space}` changed since version {}, measure the table again with `nas profile`",
                self.decisions.len(),
                decisions.len(),
                self.space_version
            );
        }
        Ok(())
    }

    /// Refuses the table (read from `path`) for another kind of device than it was measured on
    /// (`cpu` vs `cuda`), e.g. a search for `--latency-device cuda` with a CPU table.
    pub fn check_device_kind(&self, path: &Path, device: &str) -> Result<()> {
        let kind = |d: &str| d.split(':').next().unwrap_or(d).to_string();
        if kind(&self.device) != kind(device) {
            bail!(
                "latency table {} was measured on `{}` ({}), not on `{device}`; measure one there with `nas profile --device {device}`",
                path.display(),
                self.device,
                self.device_model
            );
        }
        Ok(())
    }

    /// Refuses the table (read from `path`) on a device other than the one it was measured on:
    /// `device` (`cpu`, `cuda:N`) and its model (see [`super::device_model`]) must match.
    pub fn check_device(&self, path: &Path, device: &str, model: &str) -> Result<()> {
        self.check_device_kind(path, device)?;
        let kind = |d: &str| d.split(':').next().unwrap_or(d).to_string();
        if self.device_model != model {
            bail!(
                "latency table {} was measured on another {} (`{}`); this one is `{model}`; measure one on this machine with `nas profile`",
                path.display(),
                kind(device),
                self.device_model
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_ignore_key_order_and_see_values() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b": 1, "a": {"y": 2, "x": [1, 2]}}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{"a": {"x": [1, 2], "y": 2}, "b": 1}"#).unwrap();
        let c: serde_json::Value =
            serde_json::from_str(r#"{"a": {"x": [1, 2], "y": 3}, "b": 1}"#).unwrap();
        assert_eq!(config_digest(&a), config_digest(&b));
        assert_ne!(config_digest(&a), config_digest(&c));
        assert_eq!(
            differing_fields(&a, &c),
            vec![r#"`a` ({"x":[1,2],"y":2} vs {"x":[1,2],"y":3})"#.to_string()]
        );
    }
}
