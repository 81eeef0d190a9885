//! `nas rank`: how well a supernet orders subnets, against ground truth (Kendall tau-b,
//! Spearman rho, top-k overlap), with a scatter plot.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::{
    groundtruth::{mean_by_arch, read_retrain, Nb201Table},
    stats,
};
use crate::{
    eval::{eval_archs, BnPolicy},
    report,
    run::TrainedRun,
};

/// Where ground truth comes from.
pub enum GroundTruth {
    /// The NAS-Bench-201 table and one of its datasets.
    Nb201 {
        /// The table.
        table: Nb201Table,
        /// `cifar10`, `cifar100` or `imagenet16`.
        dataset: String,
        /// The spec as given.
        spec: String,
    },
    /// A `nas retrain` file (mean over seeds per arch).
    Retrain {
        /// The file.
        path: PathBuf,
    },
}

impl GroundTruth {
    /// Parses `nb201:PATH[:DATASET]` or a retrain file path.
    pub fn parse(spec: &str) -> Result<Self> {
        if let Some(rest) = spec.strip_prefix("nb201:") {
            let (path, dataset) = match rest.rsplit_once(':') {
                Some((path, dataset))
                    if ["cifar10", "cifar100", "imagenet16"].contains(&dataset) =>
                {
                    (path, dataset)
                }
                _ => (rest, "cifar10"),
            };
            return Ok(GroundTruth::Nb201 {
                table: Nb201Table::load(Path::new(path))?,
                dataset: dataset.to_string(),
                spec: spec.to_string(),
            });
        }
        let path = PathBuf::from(spec);
        if !path.is_file() {
            bail!("--ground-truth `{spec}`: no such file; give a `nas retrain` file or nb201:PATH/TO/table.csv[:cifar10|cifar100|imagenet16]");
        }
        Ok(GroundTruth::Retrain { path })
    }
}

/// One arch of a ranking.
#[derive(Serialize, Clone, Debug)]
pub struct RankedArch {
    /// Arch text.
    pub arch: String,
    /// Accuracy with the supernet's shared weights (%).
    pub supernet: f64,
    /// Ground-truth accuracy (%).
    pub truth: f64,
}

/// A ranking result.
#[derive(Serialize, Clone, Debug)]
pub struct RankReport {
    /// Archs ranked.
    pub n: usize,
    /// Kendall tau-b.
    pub kendall_tau: f64,
    /// Spearman rho.
    pub spearman_rho: f64,
    /// k of the top-k overlap.
    pub top_k: usize,
    /// Share of the ground truth's top k that the supernet also puts in its top k.
    pub top_k_overlap: f64,
    /// BN policy of the supernet evaluations.
    pub bn: BnPolicy,
    /// Split the supernet was evaluated on.
    pub split: String,
    /// The ground truth used.
    pub ground_truth: String,
    /// The run folder.
    pub run: PathBuf,
    /// Per arch.
    pub archs: Vec<RankedArch>,
}

/// Evaluates `archs` (or, with a retrain file, all its archs when none are given) with the
/// supernet of `run_dir` and correlates with the ground truth.
pub fn rank(
    run_dir: &Path,
    truth: &GroundTruth,
    archs: &[String],
    policy: BnPolicy,
    split: &str,
    top_k: usize,
    plugin_path: &[PathBuf],
) -> Result<RankReport> {
    let (arch_list, truth_name): (Vec<String>, String) = match truth {
        GroundTruth::Nb201 { spec, .. } => {
            if archs.is_empty() {
                bail!("nas rank with the NAS-Bench-201 table needs --arch or --archs-file");
            }
            (archs.to_vec(), spec.clone())
        }
        GroundTruth::Retrain { path } => {
            let list = if archs.is_empty() {
                mean_by_arch(&read_retrain(path)?)
                    .keys()
                    .map(|c| serde_json::to_string(c).expect("choices serialise"))
                    .collect()
            } else {
                archs.to_vec()
            };
            (list, path.display().to_string())
        }
    };
    let records = eval_archs(
        &TrainedRun::open(run_dir, plugin_path)?,
        &arch_list,
        policy,
        split,
    )?;
    let retrained = match truth {
        GroundTruth::Retrain { path } => Some(mean_by_arch(&read_retrain(path)?)),
        GroundTruth::Nb201 { .. } => None,
    };
    let mut ranked = Vec::new();
    for record in &records {
        let value = match truth {
            GroundTruth::Nb201 { table, dataset, .. } => table.accuracy(&record.arch, dataset)?,
            GroundTruth::Retrain { .. } => retrained
                .as_ref()
                .and_then(|m| m.get(&record.choices))
                .map(|(_, mean, _)| *mean),
        };
        let truth = value
            .with_context(|| format!("arch {} has no ground truth in {truth_name}", record.arch))?;
        ranked.push(RankedArch {
            arch: record.arch.clone(),
            supernet: record.result.accuracy,
            truth,
        });
    }
    let x: Vec<f64> = ranked.iter().map(|r| r.supernet).collect();
    let y: Vec<f64> = ranked.iter().map(|r| r.truth).collect();
    let top_k = top_k.clamp(1, ranked.len().max(1));
    Ok(RankReport {
        n: ranked.len(),
        kendall_tau: stats::kendall_tau_b(&x, &y)?,
        spearman_rho: stats::spearman_rho(&x, &y)?,
        top_k,
        top_k_overlap: stats::top_k_overlap(&y, &x, top_k),
        bn: policy,
        split: split.to_string(),
        ground_truth: truth_name,
        run: run_dir.to_path_buf(),
        archs: ranked,
    })
}

/// Writes the report and its scatter plot under `<run>/rank/`; returns the JSON path.
pub fn write_report(report: &RankReport) -> Result<PathBuf> {
    use sha2::{Digest, Sha256};
    let key = format!(
        "{}|{}|{}|{}",
        report.ground_truth,
        report.bn,
        report.split,
        report
            .archs
            .iter()
            .map(|a| a.arch.as_str())
            .collect::<Vec<_>>()
            .join(";")
    );
    let digest = Sha256::digest(key.as_bytes());
    let name: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    let dir = report.run.join("rank");
    let json = dir.join(format!("rank-{name}.json"));
    crate::run::io::write_json_atomic(&json, report)?;
    let points: Vec<(f64, f64)> = report.archs.iter().map(|a| (a.supernet, a.truth)).collect();
    report::rank::plot_rank_scatter(
        &points,
        &format!(
            "Kendall tau {:.3}, Spearman rho {:.3} (n = {})",
            report.kendall_tau, report.spearman_rho, report.n
        ),
        &format!("supernet accuracy % ({})", report.bn),
        &dir.join(format!("rank-{name}.svg")),
    )?;
    Ok(json)
}
