//! Ground-truth accuracies to rank a supernet against: the NAS-Bench-201 table, or the files
//! `nas retrain` writes.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// One row of the NAS-Bench-201 / NATS-Bench-tss table.
#[derive(Clone, Debug, PartialEq)]
pub struct Nb201Row {
    /// Architecture index (the row order of the table).
    pub index: usize,
    /// The benchmark's arch string.
    pub arch: String,
    /// 200-epoch CIFAR-10 test accuracy (%).
    pub cifar10: f64,
    /// 200-epoch CIFAR-100 test accuracy (%).
    pub cifar100: f64,
    /// 200-epoch ImageNet16-120 test accuracy (%).
    pub imagenet16: f64,
}

/// The NAS-Bench-201 accuracy table
/// (`CIFAR10TestAccuracy200Epochs,CIFAR100...,ImageNet...,ArchitectureString,UniqueString`).
pub struct Nb201Table {
    /// Rows in index order.
    pub rows: Vec<Nb201Row>,
    by_arch: BTreeMap<String, usize>,
}

impl Nb201Table {
    /// Reads the CSV at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the NAS-Bench-201 table {}", path.display()))?;
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        if !header.starts_with("CIFAR10TestAccuracy200Epochs") {
            bail!(
                "{}: expected the header `CIFAR10TestAccuracy200Epochs,CIFAR100TestAccuracy200Epochs,ImageNetTestAccuracy200Epochs,ArchitectureString,UniqueString`",
                path.display()
            );
        }
        let mut rows = Vec::new();
        let mut by_arch = BTreeMap::new();
        for (i, line) in lines.enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() < 4 {
                bail!(
                    "{} line {}: expected at least 4 fields",
                    path.display(),
                    i + 2
                );
            }
            let number = |k: usize| -> Result<f64> {
                fields[k].trim().parse().with_context(|| {
                    format!(
                        "{} line {}: field {} is not a number",
                        path.display(),
                        i + 2,
                        k + 1
                    )
                })
            };
            let row = Nb201Row {
                index: rows.len(),
                arch: fields[3].trim().to_string(),
                cifar10: number(0)?,
                cifar100: number(1)?,
                imagenet16: number(2)?,
            };
            by_arch.insert(row.arch.clone(), row.index);
            rows.push(row);
        }
        Ok(Nb201Table { rows, by_arch })
    }

    /// The row of an arch string.
    pub fn get(&self, arch: &str) -> Option<&Nb201Row> {
        self.by_arch.get(arch).map(|&i| &self.rows[i])
    }

    /// The accuracy of `arch` on `dataset` (`cifar10`, `cifar100`, `imagenet16`).
    pub fn accuracy(&self, arch: &str, dataset: &str) -> Result<Option<f64>> {
        let Some(row) = self.get(arch) else {
            return Ok(None);
        };
        Ok(Some(match dataset {
            "cifar10" => row.cifar10,
            "cifar100" => row.cifar100,
            "imagenet16" => row.imagenet16,
            other => bail!(
                "unknown NAS-Bench-201 dataset `{other}`: use cifar10, cifar100 or imagenet16"
            ),
        }))
    }
}

/// One line of a `nas retrain` ground-truth file (JSON lines).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RetrainRecord {
    /// Arch text.
    pub arch: String,
    /// Choice indices.
    pub choices: Vec<u32>,
    /// Training seed.
    pub seed: u64,
    /// Test accuracy (%).
    pub accuracy: f64,
    /// BN policy of the evaluation.
    pub bn: String,
    /// Training steps.
    pub steps: u64,
    /// Wall time of the training run (s).
    pub seconds: f64,
    /// The run folder.
    pub run_dir: PathBuf,
}

/// Reads a ground-truth file.
pub fn read_retrain(path: &Path) -> Result<Vec<RetrainRecord>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{} line {}: not a retrain record", path.display(), i + 1))
        })
        .collect()
}

/// Adds or replaces the record of `(arch, seed)`, rewriting the file atomically.
pub fn write_retrain(path: &Path, record: RetrainRecord) -> Result<()> {
    let mut records = read_retrain(path)?;
    records.retain(|r| !(r.choices == record.choices && r.seed == record.seed));
    records.push(record);
    let mut text = String::new();
    for r in &records {
        text.push_str(&serde_json::to_string(r)?);
        text.push('\n');
    }
    crate::run::io::write_atomic(path, text.as_bytes())
}

/// Mean accuracy per arch (over seeds) of a retrain file, keyed by choices.
pub fn mean_by_arch(records: &[RetrainRecord]) -> BTreeMap<Vec<u32>, (String, f64, usize)> {
    let mut sums: BTreeMap<Vec<u32>, (String, f64, usize)> = BTreeMap::new();
    for r in records {
        let entry = sums
            .entry(r.choices.clone())
            .or_insert((r.arch.clone(), 0.0, 0));
        entry.1 += r.accuracy;
        entry.2 += 1;
    }
    for value in sums.values_mut() {
        value.1 /= value.2 as f64;
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table shipped in the shared reference data (test-time only).
    fn shared_table() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data/nas-bench-201/nats_bench_tss_200ep_test_acc.csv")
    }

    #[test]
    fn nb201_table_has_the_known_facts() {
        let path = shared_table();
        assert!(
            path.exists(),
            "{} is missing (../shared beside the checkout)",
            path.display()
        );
        let table = Nb201Table::load(&path).unwrap();
        assert_eq!(table.rows.len(), 15_625);
        let best = |f: fn(&Nb201Row) -> f64| {
            let max = table.rows.iter().map(f).fold(f64::MIN, f64::max);
            let argmax: Vec<usize> = table
                .rows
                .iter()
                .filter(|r| f(r) == max)
                .map(|r| r.index)
                .collect();
            (max, argmax)
        };
        let (c10, c10_at) = best(|r| r.cifar10);
        assert!((c10 - 94.373).abs() < 1e-3, "{c10}");
        assert_eq!(c10_at, vec![6111, 13714]);
        let (c100, c100_at) = best(|r| r.cifar100);
        assert!((c100 - 73.513).abs() < 1e-3, "{c100}");
        assert_eq!(c100_at, vec![9930]);
        let (imagenet, imagenet_at) = best(|r| r.imagenet16);
        assert!((imagenet - 47.311).abs() < 1e-3, "{imagenet}");
        assert_eq!(imagenet_at, vec![857]);
        let row = table
            .get("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|")
            .unwrap();
        assert_eq!(row.index, 0);
    }

    #[test]
    fn retrain_records_replace_by_arch_and_seed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gt.jsonl");
        let record = |seed, accuracy| RetrainRecord {
            arch: "a".into(),
            choices: vec![1, 2],
            seed,
            accuracy,
            bn: "running".into(),
            steps: 10,
            seconds: 1.0,
            run_dir: "x".into(),
        };
        write_retrain(&path, record(0, 50.0)).unwrap();
        write_retrain(&path, record(1, 70.0)).unwrap();
        write_retrain(&path, record(0, 60.0)).unwrap();
        let records = read_retrain(&path).unwrap();
        assert_eq!(records.len(), 2);
        let means = mean_by_arch(&records);
        assert_eq!(means[&vec![1, 2]].1, 65.0);
    }
}
