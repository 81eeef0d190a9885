//! `nas search`: search a trained supernet on its held-out split, write the candidates, the
//! Pareto front and the best arch per budget.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use nas_sdk::{Arch, Complexity, Metric};
use plotters::prelude::*;
use serde::Serialize;
use tch::Tensor;

use crate::{
    data::{BatchSource, Dataset, Split},
    eval::{evaluate, BnPolicy},
    search::{self, Candidate, Constraints, Evaluator, EvolutionConfig, Objective},
    session::{Space, TrainedRun},
};

/// Options of `nas search`.
#[derive(Args, Clone, Debug)]
pub struct SearchOptions {
    /// Run folder written by `nas train` (its config must carve a held-out split: data.holdout).
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// `evolution` (SPOS) or `random`.
    #[arg(long, default_value = "evolution")]
    pub algorithm: String,
    /// Minimum MACs of a candidate.
    #[arg(long)]
    pub min_macs: Option<f64>,
    /// Maximum MACs of a candidate.
    #[arg(long)]
    pub max_macs: Option<f64>,
    /// Minimum parameters of a candidate.
    #[arg(long)]
    pub min_params: Option<f64>,
    /// Maximum parameters of a candidate.
    #[arg(long)]
    pub max_params: Option<f64>,
    /// Several maximum budgets (comma-separated, in `--metric` units): one search each, sharing
    /// evaluations, and the Pareto front over all candidates.
    #[arg(long, value_delimiter = ',')]
    pub budgets: Vec<f64>,
    /// Metric of `--budgets` and of the Pareto plot: macs or params.
    #[arg(long, default_value = "macs")]
    pub metric: String,
    /// Evolution: population size.
    #[arg(long, default_value_t = 50)]
    pub population: usize,
    /// Evolution: iterations after the initial population.
    #[arg(long, default_value_t = 20)]
    pub iterations: usize,
    /// Evolution: parents kept.
    #[arg(long, default_value_t = 10)]
    pub top_k: usize,
    /// Evolution: children by mutation per iteration.
    #[arg(long, default_value_t = 25)]
    pub mutations: usize,
    /// Evolution: per-gene mutation probability.
    #[arg(long, default_value_t = 0.1)]
    pub mutation_prob: f64,
    /// Evolution: children by crossover per iteration.
    #[arg(long, default_value_t = 25)]
    pub crossovers: usize,
    /// Random search: candidates evaluated.
    #[arg(long, default_value_t = 1000)]
    pub evaluations: usize,
    /// BN policy per candidate: recalibrate (default) or batch-stats.
    #[arg(long, default_value = "recalibrate")]
    pub bn: String,
    /// Training batches for BN recalibration per candidate.
    #[arg(long, default_value_t = 20)]
    pub calib_batches: usize,
    /// Evaluate on the first N held-out images only (0 = all).
    #[arg(long, default_value_t = 0)]
    pub holdout_examples: usize,
    /// Seed of the search.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Name of the output folder under <run>/search/.
    #[arg(long, default_value = "search")]
    pub name: String,
    /// No search: the run's trained generator gives the arch of each target directly
    /// (`argmax AG(C)`, ShiftNAS), with its exact complexity and accuracy.
    #[arg(long)]
    pub generator: bool,
    /// Targets for `--generator`, in the generator's metric (comma-separated; K, M and G
    /// suffixes, e.g. 150M).
    #[arg(long, value_delimiter = ',')]
    pub target: Vec<String>,
    /// `--generator`: also this many targets at the centres of equal bins over the space's
    /// complexity range.
    #[arg(long, default_value_t = 0)]
    pub targets_across: usize,
}

/// Scores archs with the supernet's shared weights on the held-out split.
struct SupernetObjective<'a> {
    space: &'a Space,
    data: &'a Dataset,
    holdout: Split,
    policy: BnPolicy,
    batch_size: usize,
    calibration: BatchSource,
    buffers: Vec<(String, Tensor)>,
    saved: Vec<Tensor>,
}

impl Objective for SupernetObjective<'_> {
    fn complexity(&mut self, arch: &Arch) -> Result<Complexity> {
        self.space
            .complexity(arch)
            .map_err(|e| self.space.origin.error("complexity", e))
    }

    fn score(&mut self, arch: &Arch) -> Result<f64> {
        let result = evaluate(
            &self.space.client,
            &self.space.origin,
            arch,
            &self.holdout,
            self.batch_size,
            self.policy,
            Some((&self.data.train, &mut self.calibration)),
        )?;
        // Recalibration rewrote the BN statistics: restore the trained ones for the next one.
        tch::no_grad(|| {
            for ((_, live), saved) in self.buffers.iter().zip(&self.saved) {
                live.shallow_clone().copy_(saved);
            }
        });
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
    space: &'a crate::plugins::Origin,
    best: &'a [BestRecord],
}

pub(crate) fn parse_metric(text: &str) -> Result<Metric> {
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

/// Runs `nas search`.
pub fn run_search(options: &SearchOptions, plugin_path: &[PathBuf]) -> Result<SearchOutcome> {
    let TrainedRun {
        config,
        data,
        space,
        checkpoint,
    } = TrainedRun::open(&options.run, plugin_path)?;
    if data.holdout.is_empty() {
        bail!(
            "{}: the run has no held-out split to search on (set data.holdout in its config before training; the test split is never used for search)",
            options.run.display()
        );
    }
    let policy = BnPolicy::parse(&options.bn, options.calib_batches)?;
    let metric = parse_metric(&options.metric)?;
    let whole = |v: Option<f64>| v.map(|x| x.round() as u64);
    let constraints = Constraints {
        min_macs: whole(options.min_macs),
        max_macs: whole(options.max_macs),
        min_params: whole(options.min_params),
        max_params: whole(options.max_params),
    };
    let holdout_examples = if options.holdout_examples == 0 {
        data.holdout.len()
    } else {
        options.holdout_examples.min(data.holdout.len())
    };
    let (images, labels) = data.holdout.slice(0, holdout_examples);
    let buffers = space.buffers()?;
    let saved = buffers.iter().map(|(_, t)| t.copy()).collect();
    let calibration =
        crate::eval::calibration_batches(&data.train, config.train.batch_size, options.seed)?;
    let mut objective = SupernetObjective {
        space: &space,
        data: &data,
        holdout: Split { images, labels },
        policy,
        batch_size: config.eval.batch_size,
        calibration,
        buffers,
        saved,
    };
    let evolution_config = EvolutionConfig {
        population: options.population,
        iterations: options.iterations,
        top_k: options.top_k,
        mutations: options.mutations,
        mutation_prob: options.mutation_prob,
        crossovers: options.crossovers,
    };
    let budgets: Vec<Option<u64>> = if options.budgets.is_empty() {
        vec![None]
    } else {
        options
            .budgets
            .iter()
            .map(|b| Some(b.round() as u64))
            .collect()
    };
    let mut evaluator = Evaluator::new(&mut objective);
    let mut best = Vec::new();
    for budget in &budgets {
        let limits = match budget {
            Some(b) => constraints.with_budget(metric, *b),
            None => constraints,
        };
        let per_search = match options.algorithm.as_str() {
            "evolution" => options.population * (options.iterations + 1),
            "random" => options.evaluations,
            other => bail!("--algorithm `{other}`: use evolution or random"),
        };
        let bar = ProgressBar::new(per_search as u64);
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
        let found = match options.algorithm.as_str() {
            "evolution" => search::evolution(
                &mut evaluator,
                &space.decisions,
                &limits,
                &evolution_config,
                options.seed,
                &mut progress,
            )?,
            _ => search::random(
                &mut evaluator,
                &space.decisions,
                &limits,
                options.evaluations,
                options.seed,
                &mut progress,
            )?,
        };
        bar.finish_and_clear();
        let text = space.arch_text(&found.arch)?;
        best.push((*budget, found, text));
    }
    let evaluated = evaluator.evaluated.clone();
    drop(evaluator);

    let dir = options.run.join("search").join(&options.name);
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
    crate::io::write_atomic(&dir.join("candidates.csv"), csv.as_bytes())?;
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
    crate::io::write_json_atomic(&dir.join("best.json"), &records)?;
    crate::io::write_json_atomic(
        &dir.join("search.json"),
        &SearchManifest {
            algorithm: &options.algorithm,
            constraints,
            budgets: budgets.iter().flatten().copied().collect(),
            metric,
            evolution: (options.algorithm == "evolution").then(|| evolution_config.clone()),
            evaluations: evaluated.len(),
            bn: policy,
            split: "holdout",
            holdout_examples,
            seed: options.seed,
            checkpoint,
            space: &space.origin,
            best: &records,
        },
    )?;
    let front = search::pareto_front(&evaluated, metric);
    plot_pareto(&evaluated, &front, metric, &dir.join("pareto.svg"))?;
    Ok(SearchOutcome {
        dir,
        best,
        evaluated: evaluated.len(),
    })
}

/// `nas search` with its printed summary.
pub fn search_command(options: &SearchOptions, plugin_path: &[PathBuf]) -> Result<()> {
    if options.generator {
        let outcome = crate::generated::run(options, plugin_path)?;
        crate::generated::print(&outcome);
        return Ok(());
    }
    if !options.target.is_empty() || options.targets_across > 0 {
        bail!("--target and --targets-across need --generator (they ask the run's generator for archs)");
    }
    let outcome = run_search(options, plugin_path)?;
    print_best(&outcome, &options.bn, options.calib_batches);
    Ok(())
}

/// Prints the best arch per budget.
pub fn print_best(outcome: &SearchOutcome, bn: &str, calib_batches: usize) {
    println!(
        "{} candidates evaluated on the held-out split (BN: {bn}{})",
        outcome.evaluated,
        if bn == "recalibrate" {
            format!(" {calib_batches}")
        } else {
            String::new()
        }
    );
    println!(
        "{:>12}  {:>10}  {:>9}  {:>8}  arch",
        "budget", "MMACs", "Mparams", "holdout%"
    );
    for (budget, c, text) in &outcome.best {
        println!(
            "{:>12}  {:>10.3}  {:>9.4}  {:>8.2}  {}",
            budget.map(|b| b.to_string()).unwrap_or_else(|| "-".into()),
            c.complexity.macs as f64 / 1e6,
            c.complexity.params as f64 / 1e6,
            c.score,
            text
        );
    }
    println!(
        "results: {} (candidates.csv, best.json, pareto.svg)",
        outcome.dir.display()
    );
}

fn plot_pareto(all: &[Candidate], front: &[Candidate], metric: Metric, out: &Path) -> Result<()> {
    if all.is_empty() {
        return Ok(());
    }
    let x = |c: &Candidate| metric.of(&c.complexity) as f64 / 1e6;
    let (x_lo, x_hi) = all
        .iter()
        .map(x)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    let (y_lo, y_hi) = all
        .iter()
        .map(|c| c.score)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    let pad = |lo: f64, hi: f64| ((hi - lo) * 0.05).max(0.05);
    let temp = crate::io::temp_path(out).with_extension("svg");
    {
        let root = SVGBackend::new(&temp, (720, 520)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "searched candidates and their Pareto front",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(
                (x_lo - pad(x_lo, x_hi))..(x_hi + pad(x_lo, x_hi)),
                (y_lo - pad(y_lo, y_hi))..(y_hi + pad(y_lo, y_hi)),
            )?;
        let unit = match metric {
            Metric::Macs => "MMACs",
            Metric::Params => "M parameters",
        };
        chart
            .configure_mesh()
            .x_desc(unit)
            .y_desc("held-out accuracy %")
            .draw()?;
        chart.draw_series(
            all.iter()
                .map(|c| Circle::new((x(c), c.score), 3, BLUE.mix(0.4).filled())),
        )?;
        chart.draw_series(LineSeries::new(
            front.iter().map(|c| (x(c), c.score)),
            RED.stroke_width(2),
        ))?;
        chart.draw_series(
            front
                .iter()
                .map(|c| Circle::new((x(c), c.score), 4, RED.filled())),
        )?;
        root.present()?;
    }
    std::fs::rename(&temp, out).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
