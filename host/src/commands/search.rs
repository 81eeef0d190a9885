//! `nas search`: evolutionary or random search of a trained supernet under budgets, or (with
//! `--generator`) the trained generator's subnet per target.

use std::path::PathBuf;

use anyhow::{bail, Result};
use nas_sdk::Metric;

use crate::{
    cli::SearchArgs,
    eval::BnPolicy,
    profile::LatencyTable,
    run::TrainedRun,
    search::{
        generated, parse_search_metric, parse_target, run_search, Algorithm, Constraints,
        EvolutionConfig, GeneratedOutcome, GeneratedRequest, LatencyRequest, SearchMetric,
        SearchOutcome, SearchRequest,
    },
};

/// `nas search`.
pub fn search(args: &SearchArgs, plugin_path: &[PathBuf]) -> Result<()> {
    let bn = BnPolicy::parse(&args.bn, args.calib_batches)?;
    if args.generator {
        let request = GeneratedRequest {
            targets: args
                .target
                .iter()
                .map(|t| parse_target(t))
                .collect::<Result<_>>()?,
            targets_across: args.targets_across,
            bn,
            name: args.name.clone(),
        };
        let outcome = generated::run(TrainedRun::open(&args.run, plugin_path)?, &request)?;
        print_generated(&outcome);
        return Ok(());
    }
    if !args.target.is_empty() || args.targets_across > 0 {
        bail!("--target and --targets-across need --generator (they ask the run's generator for archs)");
    }
    let request = search_request(args, bn)?;
    let outcome = run_search(&TrainedRun::open(&args.run, plugin_path)?, &request)?;
    print_best(&outcome, request.metric, &args.bn, args.calib_batches);
    Ok(())
}

/// The search the arguments ask for.
fn search_request(args: &SearchArgs, bn: BnPolicy) -> Result<SearchRequest> {
    let algorithm = match args.algorithm.as_str() {
        "evolution" => Algorithm::Evolution(EvolutionConfig {
            population: args.population,
            iterations: args.iterations,
            top_k: args.top_k,
            mutations: args.mutations,
            mutation_prob: args.mutation_prob,
            crossovers: args.crossovers,
        }),
        "random" => Algorithm::Random {
            evaluations: args.evaluations,
        },
        other => bail!("--algorithm `{other}`: use evolution or random"),
    };
    let whole = |v: Option<f64>| v.map(|x| x.round() as u64);
    Ok(SearchRequest {
        algorithm,
        constraints: Constraints {
            min_macs: whole(args.min_macs),
            max_macs: whole(args.max_macs),
            min_params: whole(args.min_params),
            max_params: whole(args.max_params),
            min_latency_ms: args.min_latency_ms,
            max_latency_ms: args.max_latency_ms,
        },
        budgets: args.budgets.clone(),
        metric: parse_search_metric(&args.metric)?,
        latency: match &args.latency_table {
            Some(path) => Some(LatencyRequest {
                path: path.clone(),
                table: LatencyTable::load(path)?,
                device: args.latency_device.clone(),
            }),
            None => None,
        },
        bn,
        holdout_examples: args.holdout_examples,
        seed: args.seed,
        name: args.name.clone(),
    })
}

/// Prints the best arch per budget.
fn print_best(outcome: &SearchOutcome, metric: SearchMetric, bn: &str, calib_batches: usize) {
    println!(
        "{} candidates evaluated on the held-out split (BN: {bn}{})",
        outcome.evaluated,
        if bn == "recalibrate" {
            format!(" {calib_batches}")
        } else {
            String::new()
        }
    );
    let timed = outcome.best.iter().any(|(_, c, _)| c.latency_ms.is_some());
    println!(
        "{:>12}  {:>10}  {:>9}{}  {:>8}  arch",
        "budget",
        "MMACs",
        "Mparams",
        if timed {
            format!("  {:>10}", "ms (table)")
        } else {
            String::new()
        },
        "holdout%"
    );
    for (budget, c, text) in &outcome.best {
        let budget = match (budget, metric) {
            (Some(b), SearchMetric::Latency) => format!("{b} ms"),
            (Some(b), _) => format!("{}", b.round() as u64),
            (None, _) => "-".into(),
        };
        println!(
            "{:>12}  {:>10.3}  {:>9.4}{}  {:>8.2}  {}",
            budget,
            c.complexity.macs as f64 / 1e6,
            c.complexity.params as f64 / 1e6,
            c.latency_ms
                .map(|ms| format!("  {ms:>10.3}"))
                .unwrap_or_default(),
            c.score,
            text
        );
    }
    println!(
        "results: {} (candidates.csv, best.json, pareto.svg)",
        outcome.dir.display()
    );
}

/// Prints the generated subnets.
fn print_generated(outcome: &GeneratedOutcome) {
    let unit = match outcome.metric {
        Metric::Macs => "MMACs",
        Metric::Params => "Mparams",
    };
    println!(
        "generator `{}`: argmax arch per target ({unit}; BN {}); space range {:.3}-{:.3}",
        outcome.generator.name,
        outcome.bn,
        outcome.range.0 as f64 / 1e6,
        outcome.range.1 as f64 / 1e6
    );
    println!(
        "{:>10}  {:>10}  {:>7}  {:>8}  {:>7}  arch",
        "target", "exact", "error%", "holdout%", "test%"
    );
    for s in &outcome.subnets {
        let exact = match outcome.metric {
            Metric::Macs => s.macs,
            Metric::Params => s.params,
        };
        println!(
            "{:>10.3}  {:>10.3}  {:>7.2}  {:>8}  {:>7.2}  {}",
            s.target / 1e6,
            exact as f64 / 1e6,
            100.0 * s.relative_error,
            s.holdout_accuracy
                .map(|a| format!("{a:.2}"))
                .unwrap_or_else(|| "-".into()),
            s.test_accuracy,
            s.arch
        );
    }
    println!(
        "mean relative error {:.2}%; results: {}",
        100.0 * outcome.mean_relative_error,
        outcome.dir.join("generated.json").display()
    );
}
