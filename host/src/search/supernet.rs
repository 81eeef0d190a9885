//! `nas search`: search a trained supernet on its held-out split, write the candidates, the
//! Pareto front and the best arch per budget.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use nas_sdk::{Arch, Complexity, Metric};
use serde::Serialize;

use super::algorithms::{
    self, Candidate, Constraints, Evaluator, EvolutionConfig, Objective, SearchMetric,
};
use crate::{
    data::Split,
    eval::{evaluate, BnPolicy, BnSnapshot, Calibration},
    plugins::{Origin, Space},
    profile::LatencyTable,
    report,
    run::TrainedRun,
};

/// Held-out images a search decodes once and keeps in memory (streamed folders); beyond this
/// they are decoded again for every candidate.
const SEARCH_CACHE_BYTES: usize = 4 << 30;

/// How candidates are proposed.
#[derive(Clone, Debug, PartialEq)]
pub enum Algorithm {
    /// SPOS's evolutionary search.
    Evolution(EvolutionConfig),
    /// Uniform random candidates under the constraints.
    Random {
        /// Candidates evaluated.
        evaluations: usize,
    },
}

impl Algorithm {
    /// `evolution` or `random`, as in `search.json`.
    pub fn name(&self) -> &'static str {
        match self {
            Algorithm::Evolution(_) => "evolution",
            Algorithm::Random { .. } => "random",
        }
    }

    /// Candidates one search of this algorithm evaluates (for the progress bar).
    fn per_search(&self) -> usize {
        match self {
            Algorithm::Evolution(config) => config.population * (config.iterations + 1),
            Algorithm::Random { evaluations } => *evaluations,
        }
    }
}

/// What to search for.
#[derive(Clone, Debug)]
pub struct SearchRequest {
    /// How candidates are proposed.
    pub algorithm: Algorithm,
    /// Bounds every candidate must meet.
    pub constraints: Constraints,
    /// Several maximum budgets in `metric` units (ms for latency): one search each, sharing
    /// evaluations (empty: one search under `constraints`).
    pub budgets: Vec<f64>,
    /// Metric of `budgets` and of the Pareto plot.
    pub metric: SearchMetric,
    /// The latency table that prices candidates (needed by latency bounds and the latency
    /// metric), checked against the run's space before the search.
    pub latency: Option<LatencyRequest>,
    /// BN policy per candidate.
    pub bn: BnPolicy,
    /// Evaluate on the first N held-out images only (0 = all).
    pub holdout_examples: usize,
    /// Seed of the search's draws.
    pub seed: u64,
    /// Name of the output folder under `<run>/search/`.
    pub name: String,
}

/// A latency table for a search.
#[derive(Clone, Debug)]
pub struct LatencyRequest {
    /// The file it was read from (named in errors and recorded).
    pub path: PathBuf,
    /// The table.
    pub table: LatencyTable,
    /// The device the search is for (`cpu`, `cuda`, `cuda:N`); refused when the table was
    /// measured on another kind of device. `None`: the table's.
    pub device: Option<String>,
}

/// Which table priced a search's candidates, in `search.json`.
#[derive(Serialize)]
struct LatencyRecord<'a> {
    file: &'a std::path::Path,
    device: &'a str,
    device_model: &'a str,
    threads: usize,
    batch: i64,
    space_config_digest: &'a str,
}

/// Scores archs with the supernet's shared weights on the held-out split.
struct SupernetObjective<'a> {
    space: &'a Space,
    latency: Option<&'a LatencyTable>,
    holdout: Split,
    policy: BnPolicy,
    batch_size: usize,
    calibration: Calibration<'a>,
    trained: BnSnapshot,
}

impl Objective for SupernetObjective<'_> {
    fn complexity(&mut self, arch: &Arch) -> Result<Complexity> {
        self.space.complexity(arch)
    }

    fn latency_ms(&mut self, arch: &Arch) -> Result<Option<f64>> {
        Ok(self.latency.map(|table| table.predict_ms(arch)))
    }

    fn score(&mut self, arch: &Arch) -> Result<f64> {
        let result = evaluate(
            self.space,
            arch,
            &self.holdout,
            self.batch_size,
            self.policy,
            Some(&mut self.calibration),
        )?;
        self.trained.restore();
        Ok(result.accuracy)
    }
}

#[derive(Serialize)]
struct BestRecord {
    budget: Option<serde_json::Value>,
    metric: SearchMetric,
    arch: String,
    choices: Vec<u32>,
    macs: u64,
    params: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<f64>,
    holdout_accuracy: f64,
}

/// A budget as JSON: whole MACs or parameters, or ms.
fn budget_json(metric: SearchMetric, budget: f64) -> serde_json::Value {
    match metric {
        SearchMetric::Latency => serde_json::json!(budget),
        _ => serde_json::json!(budget.round() as u64),
    }
}

#[derive(Serialize)]
struct SearchManifest<'a> {
    algorithm: &'a str,
    constraints: Constraints,
    budgets: Vec<serde_json::Value>,
    metric: SearchMetric,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_table: Option<LatencyRecord<'a>>,
    evolution: Option<EvolutionConfig>,
    evaluations: usize,
    bn: BnPolicy,
    split: &'a str,
    holdout_examples: usize,
    seed: u64,
    checkpoint: PathBuf,
    space: &'a Origin,
    best: &'a [BestRecord],
}

/// Parses a metric name: `macs` (or `flops`) or `params`.
pub fn parse_metric(text: &str) -> Result<Metric> {
    match text {
        "macs" | "flops" => Ok(Metric::Macs),
        "params" => Ok(Metric::Params),
        other => bail!("--metric `{other}`: use macs or params"),
    }
}

/// Parses a search metric name: `macs` (or `flops`), `params` or `latency` (by a latency table).
pub fn parse_search_metric(text: &str) -> Result<SearchMetric> {
    match text {
        "latency" => Ok(SearchMetric::Latency),
        other => parse_metric(other)
            .map(Into::into)
            .map_err(|_| anyhow::anyhow!("--metric `{other}`: use macs, params or latency")),
    }
}

/// The outcome of a search: output folder and best candidates per budget.
pub struct SearchOutcome {
    /// `<run>/search/<name>`.
    pub dir: PathBuf,
    /// Best candidate per budget (one entry without budgets).
    pub best: Vec<(Option<f64>, Candidate, String)>,
    /// Candidates evaluated.
    pub evaluated: usize,
}

/// Searches `run`'s supernet as `request` says and writes `<run>/search/<name>/`.
pub fn run_search(run: &TrainedRun, request: &SearchRequest) -> Result<SearchOutcome> {
    let TrainedRun {
        dir: run_dir,
        config,
        data,
        space,
        checkpoint,
        ..
    } = run;
    if data.holdout.is_empty() {
        bail!(
            "{}: the run has no held-out split to search on (set data.holdout in its config before training; the test split is never used for search)",
            run_dir.display()
        );
    }
    let metric = request.metric;
    let constraints = request.constraints;
    let latency = match &request.latency {
        Some(latency) => {
            let config: serde_json::Value =
                serde_json::from_str(space.config_json()).unwrap_or_default();
            latency.table.check_space(
                &latency.path,
                &space.origin().name,
                &config,
                space.decisions(),
            )?;
            if let Some(device) = &latency.device {
                latency.table.check_device_kind(&latency.path, device)?;
            }
            Some(&latency.table)
        }
        None if metric == SearchMetric::Latency || constraints.bounds_latency() => bail!(
            "latency bounds and --metric latency need --latency-table FILE (measure one for this run with `nas profile --run {}`)",
            run_dir.display()
        ),
        None => None,
    };
    let holdout_examples = if request.holdout_examples == 0 {
        data.holdout.len()
    } else {
        request.holdout_examples.min(data.holdout.len())
    };
    // Searching evaluates hundreds of subnets on the same images: decode streamed ones once.
    let holdout = data
        .holdout
        .head(holdout_examples)
        .materialized(SEARCH_CACHE_BYTES)?;
    let trained = BnSnapshot::take(space)?;
    let mut objective = SupernetObjective {
        space,
        latency,
        holdout,
        policy: request.bn,
        batch_size: config.eval.batch_size,
        calibration: Calibration::for_run(config, &data.train)?,
        trained,
    };
    let budgets: Vec<Option<f64>> = if request.budgets.is_empty() {
        vec![None]
    } else {
        request.budgets.iter().map(|&b| Some(b)).collect()
    };
    let mut evaluator = Evaluator::new(&mut objective);
    let mut best = Vec::new();
    for budget in &budgets {
        let limits = match budget {
            Some(b) => constraints.with_budget(metric, *b),
            None => constraints,
        };
        let bar = ProgressBar::new(request.algorithm.per_search() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} search {pos}/{len} {wide_bar} {msg} [{elapsed_precise} < {eta_precise}]",
            )
            .expect("valid template"),
        );
        if let Some(b) = budget {
            bar.set_message(format!("budget {b}"));
        }
        let mut progress = |done: usize, _total: usize| bar.set_position(done as u64);
        let found = match &request.algorithm {
            Algorithm::Evolution(evolution) => algorithms::evolution(
                &mut evaluator,
                space.decisions(),
                &limits,
                evolution,
                request.seed,
                &mut progress,
            )?,
            Algorithm::Random { evaluations } => algorithms::random(
                &mut evaluator,
                space.decisions(),
                &limits,
                *evaluations,
                request.seed,
                &mut progress,
            )?,
        };
        bar.finish_and_clear();
        let text = space.arch_text(&found.arch)?;
        best.push((*budget, found, text));
    }
    let evaluated = evaluator.evaluated.clone();
    drop(evaluator);

    let dir = run_dir.join("search").join(&request.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut csv = String::from("iteration,arch,choices,macs,params,holdout_accuracy");
    csv.push_str(if latency.is_some() {
        ",latency_ms\n"
    } else {
        "\n"
    });
    for c in &evaluated {
        csv.push_str(&format!(
            "{},\"{}\",\"{:?}\",{},{},{:.4}",
            c.iteration,
            space.arch_text(&c.arch)?,
            c.arch.choices(),
            c.complexity.macs,
            c.complexity.params,
            c.score
        ));
        match c.latency_ms {
            Some(ms) => csv.push_str(&format!(",{ms:.4}\n")),
            None => csv.push('\n'),
        }
    }
    crate::run::io::write_atomic(&dir.join("candidates.csv"), csv.as_bytes())?;
    let records: Vec<BestRecord> = best
        .iter()
        .map(|(budget, c, text)| BestRecord {
            budget: budget.map(|b| budget_json(metric, b)),
            metric,
            arch: text.clone(),
            choices: c.arch.choices().to_vec(),
            macs: c.complexity.macs,
            params: c.complexity.params,
            latency_ms: c.latency_ms,
            holdout_accuracy: c.score,
        })
        .collect();
    crate::run::io::write_json_atomic(&dir.join("best.json"), &records)?;
    crate::run::io::write_json_atomic(
        &dir.join("search.json"),
        &SearchManifest {
            algorithm: request.algorithm.name(),
            constraints,
            budgets: budgets
                .iter()
                .flatten()
                .map(|&b| budget_json(metric, b))
                .collect(),
            metric,
            latency_table: request.latency.as_ref().map(|l| LatencyRecord {
                file: &l.path,
                device: &l.table.device,
                device_model: &l.table.device_model,
                threads: l.table.threads,
                batch: l.table.batch,
                space_config_digest: &l.table.space_config_digest,
            }),
            evolution: match &request.algorithm {
                Algorithm::Evolution(config) => Some(config.clone()),
                Algorithm::Random { .. } => None,
            },
            evaluations: evaluated.len(),
            bn: request.bn,
            split: "holdout",
            holdout_examples,
            seed: request.seed,
            checkpoint: checkpoint.clone(),
            space: space.origin(),
            best: &records,
        },
    )?;
    let front = algorithms::pareto_front(&evaluated, metric);
    let scale = match metric {
        SearchMetric::Latency => 1.0,
        _ => 1e6,
    };
    let point = |c: &Candidate| metric.of(c).map(|v| (v / scale, c.score));
    let unit = match metric {
        SearchMetric::Macs => "MMACs",
        SearchMetric::Params => "M parameters",
        SearchMetric::Latency => "latency (ms, by the latency table)",
    };
    report::search::plot_pareto(
        &evaluated.iter().filter_map(point).collect::<Vec<_>>(),
        &front.iter().filter_map(point).collect::<Vec<_>>(),
        unit,
        &dir.join("pareto.svg"),
    )?;
    Ok(SearchOutcome {
        dir,
        best,
        evaluated: evaluated.len(),
    })
}
