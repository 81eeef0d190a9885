//! `nas retrain` (stand-alone training of subnets, for ground truth) and `nas rank` (how well a
//! supernet orders subnets against ground truth).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use serde::Serialize;

use crate::{
    commands::eval_archs,
    config::RunConfig,
    device,
    eval::BnPolicy,
    groundtruth::{mean_by_arch, read_retrain, write_retrain, Nb201Table, RetrainRecord},
    session::{self, Space},
    stats,
    trainer::{self, Progress, StopPolicy, Trainer},
};

/// A file-name-safe key of an arch.
pub fn arch_slug(choices: &[u32]) -> String {
    choices
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join("-")
}

/// What `nas retrain` does.
pub struct RetrainJob<'a> {
    /// Base config (data, space, optimizer, length); its sampler is replaced by `fixed`.
    pub config: RunConfig,
    /// Archs in the space's text form or as JSON lists.
    pub archs: &'a [String],
    /// Seeds, one training run each per arch.
    pub seeds: &'a [u64],
    /// The ground-truth file (JSON lines) to add results to.
    pub ground_truth: &'a Path,
}

/// Trains each arch from scratch with each seed (runs named `retrain-<choices>-s<seed>` under
/// `run.out_dir`; finished runs are reused, interrupted ones resumed), evaluates it on the test
/// split with its own BN statistics, and records the accuracy in the ground-truth file.
pub fn retrain(job: RetrainJob<'_>, plugin_path: &[PathBuf]) -> Result<Vec<RetrainRecord>> {
    if job.archs.is_empty() || job.seeds.is_empty() {
        bail!("nas retrain needs at least one --arch and one seed");
    }
    let catalog = session::catalog(&job.config.plugins.path, plugin_path);
    let space = Space::create(&catalog, &job.config.space, None)?;
    let archs = job
        .archs
        .iter()
        .map(|text| space.parse_arch(text))
        .collect::<Result<Vec<_>>>()?;
    drop(space);
    if job.config.run.threads > 0 {
        tch::set_num_threads(job.config.run.threads as i32);
    }
    let device = device::select(&job.config.run.device)?;
    let total = archs.len() * job.seeds.len();
    let mut done = Vec::new();
    for (i, (arch, &seed)) in archs
        .iter()
        .flat_map(|a| job.seeds.iter().map(move |s| (a, s)))
        .enumerate()
    {
        let mut config = job.config.clone();
        config.sampler.name = "fixed".into();
        config.sampler.config = toml::Table::new();
        config.sampler.config.insert(
            "choices".into(),
            toml::Value::Array(arch.choices().iter().map(|&c| (c as i64).into()).collect()),
        );
        config.run.seed = seed;
        config.run.name = format!("retrain-{}-s{seed}", arch_slug(arch.choices()));
        let run_dir = trainer::run_dir(&config);
        let started = std::time::Instant::now();
        let existing = crate::checkpoint::latest(&run_dir)?;
        let mut trainer = Trainer::new(
            config.clone(),
            run_dir.clone(),
            catalog.clone(),
            device,
            existing.is_some(),
        )?;
        let steps = trainer.total_steps();
        trainer.run(StopPolicy::default(), Progress::Silent)?;
        drop(trainer);
        let text = eval_archs(
            &run_dir,
            &[serde_json::to_string(arch.choices())?],
            BnPolicy::Running,
            "test",
            plugin_path,
        )?;
        let result = &text[0];
        let record = RetrainRecord {
            arch: result.arch.clone(),
            choices: arch.choices().to_vec(),
            seed,
            accuracy: result.result.accuracy,
            bn: BnPolicy::Running.to_string(),
            steps,
            seconds: started.elapsed().as_secs_f64(),
            run_dir: run_dir.clone(),
        };
        write_retrain(job.ground_truth, record.clone())?;
        println!(
            "[{}/{total}] {:>6.2}%  seed {seed}  {:.0}s  {}",
            i + 1,
            record.accuracy,
            record.seconds,
            record.arch
        );
        done.push(record);
    }
    Ok(done)
}

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
    let records = eval_archs(run_dir, &arch_list, policy, split, plugin_path)?;
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
    crate::io::write_json_atomic(&json, report)?;
    plot_scatter(report, &dir.join(format!("rank-{name}.svg")))?;
    Ok(json)
}

fn plot_scatter(report: &RankReport, out: &Path) -> Result<()> {
    let bounds = |f: fn(&RankedArch) -> f64| {
        let (lo, hi) = report
            .archs
            .iter()
            .map(f)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                (l.min(v), h.max(v))
            });
        let pad = ((hi - lo) * 0.05).max(0.1);
        (lo - pad)..(hi + pad)
    };
    let temp = crate::io::temp_path(out).with_extension("svg");
    {
        let root = SVGBackend::new(&temp, (640, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "Kendall tau {:.3}, Spearman rho {:.3} (n = {})",
                    report.kendall_tau, report.spearman_rho, report.n
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(bounds(|a| a.supernet), bounds(|a| a.truth))?;
        chart
            .configure_mesh()
            .x_desc(format!("supernet accuracy % ({})", report.bn))
            .y_desc("ground-truth accuracy %")
            .draw()?;
        chart.draw_series(
            report
                .archs
                .iter()
                .map(|a| Circle::new((a.supernet, a.truth), 4, BLUE.mix(0.7).filled())),
        )?;
        root.present()?;
    }
    std::fs::rename(&temp, out).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
