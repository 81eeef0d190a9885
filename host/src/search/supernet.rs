//! `nas search`: search a trained supernet on its held-out split, write the candidates, the
//! Pareto front and the best arch per budget.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use nas_sdk::{Arch, Complexity, Metric};
use serde::Serialize;

use super::algorithms::{self, Candidate, Constraints, Evaluator, EvolutionConfig, Objective};
use crate::{
    data::Split,
    eval::{evaluate, BnPolicy, BnSnapshot, Calibration},
    plugins::{Origin, Space},
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
    /// Several maximum budgets in `metric` units: one search each, sharing evaluations (empty:
    /// one search under `constraints`).
    pub budgets: Vec<u64>,
    /// Metric of `budgets` and of the Pareto plot.
    pub metric: Metric,
    /// BN policy per candidate.
    pub bn: BnPolicy,
    /// Evaluate on the first N held-out images only (0 = all).
    pub holdout_examples: usize,
    /// Seed of the search's draws.
    pub seed: u64,
    /// Name of the output folder under `<run>/search/`.
    pub name: String,
}

/// Scores archs with the supernet's shared weights on the held-out split.
struct SupernetObjective<'a> {
    space: &'a Space,
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
    budget: Option<u64>,
    metric: Metric,
    arch: String,
    choices: Vec<u32>,
    macs: u64,
    params: u64,
    holdout_accuracy: f64,
}

#[derive(Serialize)]
struct SearchManifest<'a> {
    algorithm: &'a str,
    constraints: Constraints,
    budgets: Vec<u64>,
    metric: Metric,
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

/// The outcome of a search: output folder and best candidates per budget.
pub struct SearchOutcome {
    /// `<run>/search/<name>`.
    pub dir: PathBuf,
    /// Best candidate per budget (one entry without budgets).
    pub best: Vec<(Option<u64>, Candidate, String)>,
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
        holdout,
        policy: request.bn,
        batch_size: config.eval.batch_size,
        calibration: Calibration::for_run(config, &data.train)?,
        trained,
    };
    let budgets: Vec<Option<u64>> = if request.budgets.is_empty() {
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
    let mut csv = String::from("iteration,arch,choices,macs,params,holdout_accuracy\n");
    for c in &evaluated {
        csv.push_str(&format!(
            "{},\"{}\",\"{:?}\",{},{},{:.4}\n",
            c.iteration,
            space.arch_text(&c.arch)?,
            c.arch.choices(),
            c.complexity.macs,
            c.complexity.params,
            c.score
        ));
    }
    crate::run::io::write_atomic(&dir.join("candidates.csv"), csv.as_bytes())?;
    let records: Vec<BestRecord> = best
        .iter()
        .map(|(budget, c, text)| BestRecord {
            budget: *budget,
            metric,
            arch: text.clone(),
            choices: c.arch.choices().to_vec(),
            macs: c.complexity.macs,
            params: c.complexity.params,
            holdout_accuracy: c.score,
        })
        .collect();
    crate::run::io::write_json_atomic(&dir.join("best.json"), &records)?;
    crate::run::io::write_json_atomic(
        &dir.join("search.json"),
        &SearchManifest {
            algorithm: request.algorithm.name(),
            constraints,
            budgets: budgets.iter().flatten().copied().collect(),
            metric,
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
    let point = |c: &Candidate| (metric.of(&c.complexity) as f64 / 1e6, c.score);
    let unit = match metric {
        Metric::Macs => "MMACs",
        Metric::Params => "M parameters",
    };
    report::search::plot_pareto(
        &evaluated.iter().map(point).collect::<Vec<_>>(),
        &front.iter().map(point).collect::<Vec<_>>(),
        unit,
        &dir.join("pareto.svg"),
    )?;
    Ok(SearchOutcome {
        dir,
        best,
        evaluated: evaluated.len(),
    })
}
