//! Architecture search over a trained supernet: SPOS's evolutionary search and random search,
//! under complexity and latency constraints, with memoized evaluations and a Pareto front over
//! budgets.

use std::collections::HashMap;

use anyhow::{bail, Result};
use nas_sdk::{rng, Arch, Complexity, Decision, Metric};
use rand::{seq::SliceRandom, Rng};
use serde::Serialize;

/// Bounds on a candidate's complexity and latency (inclusive).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Constraints {
    /// Minimum MACs.
    pub min_macs: Option<u64>,
    /// Maximum MACs.
    pub max_macs: Option<u64>,
    /// Minimum parameters.
    pub min_params: Option<u64>,
    /// Maximum parameters.
    pub max_params: Option<u64>,
    /// Minimum latency by the search's latency table, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_latency_ms: Option<f64>,
    /// Maximum latency by the search's latency table, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<f64>,
}

/// What a candidate costs: its exact complexity, and its latency by a latency table when the
/// search has one.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Cost {
    /// Exact complexity.
    pub complexity: Complexity,
    /// Latency by the table, in ms (`None` without a table).
    pub latency_ms: Option<f64>,
}

impl Constraints {
    /// Whether `cost` satisfies every bound. A latency bound never admits a cost without a
    /// latency.
    pub fn admits(&self, cost: &Cost) -> bool {
        let c = &cost.complexity;
        let latency = |bound: Option<f64>, within: fn(f64, f64) -> bool| {
            bound.is_none_or(|b| cost.latency_ms.is_some_and(|l| within(l, b)))
        };
        self.min_macs.is_none_or(|m| c.macs >= m)
            && self.max_macs.is_none_or(|m| c.macs <= m)
            && self.min_params.is_none_or(|m| c.params >= m)
            && self.max_params.is_none_or(|m| c.params <= m)
            && latency(self.min_latency_ms, |l, b| l >= b)
            && latency(self.max_latency_ms, |l, b| l <= b)
    }

    /// Whether any bound is on latency.
    pub fn bounds_latency(&self) -> bool {
        self.min_latency_ms.is_some() || self.max_latency_ms.is_some()
    }

    /// The same constraints with the `metric` maximum tightened to `budget` (MACs and
    /// parameters are rounded to whole numbers).
    pub fn with_budget(&self, metric: SearchMetric, budget: f64) -> Self {
        let mut c = *self;
        let whole = budget.round() as u64;
        match metric {
            SearchMetric::Macs => c.max_macs = Some(c.max_macs.map_or(whole, |m| m.min(whole))),
            SearchMetric::Params => {
                c.max_params = Some(c.max_params.map_or(whole, |m| m.min(whole)))
            }
            SearchMetric::Latency => {
                c.max_latency_ms = Some(c.max_latency_ms.map_or(budget, |m| m.min(budget)))
            }
        }
        c
    }
}

/// What budgets and the Pareto front are in: a complexity metric, or latency by a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMetric {
    /// Exact MACs.
    Macs,
    /// Exact parameters.
    Params,
    /// Latency by the search's latency table, in ms.
    Latency,
}

impl From<Metric> for SearchMetric {
    fn from(metric: Metric) -> Self {
        match metric {
            Metric::Macs => SearchMetric::Macs,
            Metric::Params => SearchMetric::Params,
        }
    }
}

impl SearchMetric {
    /// The candidate's value in this metric (`None`: latency without a table).
    pub fn of(self, candidate: &Candidate) -> Option<f64> {
        match self {
            SearchMetric::Macs => Some(candidate.complexity.macs as f64),
            SearchMetric::Params => Some(candidate.complexity.params as f64),
            SearchMetric::Latency => candidate.latency_ms,
        }
    }
}

/// What is being searched: complexity (and latency, by a table) is cheap, the score (higher is
/// better) is the expensive evaluation.
pub trait Objective {
    /// Exact complexity of `arch`.
    fn complexity(&mut self, arch: &Arch) -> Result<Complexity>;
    /// Latency of `arch` by a latency table, in ms (`None`: the objective has no table).
    fn latency_ms(&mut self, _arch: &Arch) -> Result<Option<f64>> {
        Ok(None)
    }
    /// The score of `arch` (e.g. held-out accuracy with the supernet's weights).
    fn score(&mut self, arch: &Arch) -> Result<f64>;
}

/// One evaluated candidate.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Candidate {
    /// The arch.
    pub arch: Arch,
    /// Its complexity.
    pub complexity: Complexity,
    /// Its latency by the search's latency table, in ms.
    pub latency_ms: Option<f64>,
    /// Its score.
    pub score: f64,
    /// Iteration it was first evaluated in (0 = initial population).
    pub iteration: usize,
}

impl Candidate {
    /// Its cost, as constraints see it.
    pub fn cost(&self) -> Cost {
        Cost {
            complexity: self.complexity,
            latency_ms: self.latency_ms,
        }
    }
}

/// SPOS's evolutionary search settings (defaults are the official code's).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvolutionConfig {
    /// Population size.
    pub population: usize,
    /// Iterations after the initial population.
    pub iterations: usize,
    /// Parents kept (top k by score).
    pub top_k: usize,
    /// Children by mutation per iteration.
    pub mutations: usize,
    /// Probability that a mutation re-draws a gene.
    pub mutation_prob: f64,
    /// Children by uniform crossover per iteration.
    pub crossovers: usize,
}

impl Default for EvolutionConfig {
    fn default() -> Self {
        EvolutionConfig {
            population: 50,
            iterations: 20,
            top_k: 10,
            mutations: 25,
            mutation_prob: 0.1,
            crossovers: 25,
        }
    }
}

/// Draws attempted per candidate wanted before giving up on finding new legal archs.
const TRIES_PER_CANDIDATE: usize = 200;

/// Memoized evaluations shared by every search of a session (and every budget).
pub struct Evaluator<'a, O: Objective> {
    objective: &'a mut O,
    costs: HashMap<Arch, Cost>,
    scores: HashMap<Arch, f64>,
    /// Candidates in evaluation order.
    pub evaluated: Vec<Candidate>,
}

impl<'a, O: Objective> Evaluator<'a, O> {
    /// Wraps `objective`.
    pub fn new(objective: &'a mut O) -> Self {
        Evaluator {
            objective,
            costs: HashMap::new(),
            scores: HashMap::new(),
            evaluated: Vec::new(),
        }
    }

    /// Complexity and latency, cached.
    pub fn cost(&mut self, arch: &Arch) -> Result<Cost> {
        if let Some(c) = self.costs.get(arch) {
            return Ok(*c);
        }
        let c = Cost {
            complexity: self.objective.complexity(arch)?,
            latency_ms: self.objective.latency_ms(arch)?,
        };
        self.costs.insert(arch.clone(), c);
        Ok(c)
    }

    /// Whether `arch` has been scored.
    pub fn seen(&self, arch: &Arch) -> bool {
        self.scores.contains_key(arch)
    }

    /// Scores `arch` once; later calls return the memoized score.
    pub fn score(&mut self, arch: &Arch, iteration: usize) -> Result<f64> {
        if let Some(score) = self.scores.get(arch) {
            return Ok(*score);
        }
        let cost = self.cost(arch)?;
        let score = self.objective.score(arch)?;
        self.scores.insert(arch.clone(), score);
        self.evaluated.push(Candidate {
            arch: arch.clone(),
            complexity: cost.complexity,
            latency_ms: cost.latency_ms,
            score,
            iteration,
        });
        Ok(score)
    }
}

/// Collects up to `count` new legal archs from `propose` (unseen, not already collected).
fn collect_new<O: Objective>(
    evaluator: &mut Evaluator<'_, O>,
    constraints: &Constraints,
    count: usize,
    mut propose: impl FnMut() -> Arch,
    pending: &mut Vec<Arch>,
) -> Result<()> {
    let target = pending.len() + count;
    let mut tries = 0;
    while pending.len() < target && tries < count * TRIES_PER_CANDIDATE {
        tries += 1;
        let arch = propose();
        if evaluator.seen(&arch) || pending.contains(&arch) {
            continue;
        }
        if constraints.admits(&evaluator.cost(&arch)?) {
            pending.push(arch);
        }
    }
    Ok(())
}

fn best_of(candidates: &[Candidate], constraints: &Constraints) -> Option<Candidate> {
    candidates
        .iter()
        .filter(|c| constraints.admits(&c.cost()))
        .max_by(|a, b| a.score.total_cmp(&b.score))
        .cloned()
}

/// SPOS evolutionary search; calls `progress(done, total)` after each evaluation. Returns the
/// best legal candidate.
pub fn evolution<O: Objective>(
    evaluator: &mut Evaluator<'_, O>,
    decisions: &[Decision],
    constraints: &Constraints,
    config: &EvolutionConfig,
    seed: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Candidate> {
    if config.top_k == 0 || config.population == 0 {
        bail!("evolution: population and top_k must be at least 1");
    }
    let mut rng = rng::stream(seed, 0, "evolution");
    let total = config.population * (config.iterations + 1);
    let mut done = 0;
    // Legal candidates of this search (memoized ones from earlier budgets count too).
    let mut population: Vec<Arch> = Vec::new();
    let mut initial = Vec::new();
    let mut draw = rng::stream(seed, 1, "evolution-random");
    collect_new(
        evaluator,
        constraints,
        config.population,
        || rng::uniform_arch(decisions, &mut draw),
        &mut initial,
    )?;
    if initial.is_empty() {
        bail!("evolution: found no arch satisfying the constraints {constraints:?} in {} random draws; loosen them", config.population * TRIES_PER_CANDIDATE);
    }
    for arch in &initial {
        evaluator.score(arch, 0)?;
        done += 1;
        progress(done, total);
    }
    population.extend(initial);
    for iteration in 1..=config.iterations {
        // Parents: the top k of everything this search has evaluated.
        let mut ranked: Vec<&Candidate> = evaluator
            .evaluated
            .iter()
            .filter(|c| constraints.admits(&c.cost()) && population.contains(&c.arch))
            .collect();
        ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
        let parents: Vec<Arch> = ranked
            .iter()
            .take(config.top_k)
            .map(|c| c.arch.clone())
            .collect();
        let mut children = Vec::new();
        collect_new(
            evaluator,
            constraints,
            config.mutations,
            || {
                let parent = parents.choose(&mut rng).expect("parents exist");
                let choices = parent
                    .choices()
                    .iter()
                    .zip(decisions)
                    .map(|(&c, d)| {
                        if rng.gen_bool(config.mutation_prob) {
                            rng.gen_range(0..d.options.len() as u32)
                        } else {
                            c
                        }
                    })
                    .collect();
                Arch::new(choices)
            },
            &mut children,
        )?;
        collect_new(
            evaluator,
            constraints,
            config.crossovers,
            || {
                let a = parents.choose(&mut rng).expect("parents exist");
                let b = parents.choose(&mut rng).expect("parents exist");
                let choices = a
                    .choices()
                    .iter()
                    .zip(b.choices())
                    .map(|(&x, &y)| if rng.gen_bool(0.5) { x } else { y })
                    .collect();
                Arch::new(choices)
            },
            &mut children,
        )?;
        let refill = config.population.saturating_sub(children.len());
        collect_new(
            evaluator,
            constraints,
            refill,
            || rng::uniform_arch(decisions, &mut draw),
            &mut children,
        )?;
        for arch in &children {
            evaluator.score(arch, iteration)?;
            done += 1;
            progress(done, total);
        }
        population.extend(children);
    }
    let mine: Vec<Candidate> = evaluator
        .evaluated
        .iter()
        .filter(|c| population.contains(&c.arch))
        .cloned()
        .collect();
    best_of(&mine, constraints)
        .ok_or_else(|| anyhow::anyhow!("evolution evaluated no legal candidate"))
}

/// Random search: `evaluations` distinct legal archs drawn uniformly; returns the best.
pub fn random<O: Objective>(
    evaluator: &mut Evaluator<'_, O>,
    decisions: &[Decision],
    constraints: &Constraints,
    evaluations: usize,
    seed: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Candidate> {
    let mut draw = rng::stream(seed, 0, "random-search");
    let mut archs = Vec::new();
    collect_new(
        evaluator,
        constraints,
        evaluations,
        || rng::uniform_arch(decisions, &mut draw),
        &mut archs,
    )?;
    if archs.is_empty() {
        bail!("random search: no arch satisfies the constraints {constraints:?}; loosen them");
    }
    for (i, arch) in archs.iter().enumerate() {
        evaluator.score(arch, 0)?;
        progress(i + 1, archs.len());
    }
    let mine: Vec<Candidate> = evaluator
        .evaluated
        .iter()
        .filter(|c| archs.contains(&c.arch))
        .cloned()
        .collect();
    best_of(&mine, constraints)
        .ok_or_else(|| anyhow::anyhow!("random search evaluated no candidate"))
}

/// The candidates no other candidate beats on both `metric` (lower) and score (higher), by
/// increasing `metric` (candidates without a value in it are left out).
pub fn pareto_front(candidates: &[Candidate], metric: SearchMetric) -> Vec<Candidate> {
    let mut sorted: Vec<(&Candidate, f64)> = candidates
        .iter()
        .filter_map(|c| metric.of(c).map(|v| (c, v)))
        .collect();
    sorted.sort_by(|(a, va), (b, vb)| va.total_cmp(vb).then(b.score.total_cmp(&a.score)));
    let mut front: Vec<Candidate> = Vec::new();
    for (candidate, _) in sorted {
        if front.last().is_none_or(|best| candidate.score > best.score) {
            front.push(candidate.clone());
        }
    }
    front
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 5^6 space whose score is a known function with one optimum under the constraint.
    struct Synthetic {
        calls: Vec<Arch>,
        limit: u64,
    }

    impl Objective for Synthetic {
        fn complexity(&mut self, arch: &Arch) -> Result<Complexity> {
            let macs = arch.choices().iter().map(|&c| c as u64 * 10).sum();
            Ok(Complexity { macs, params: 0 })
        }
        fn score(&mut self, arch: &Arch) -> Result<f64> {
            let c = self.complexity(arch)?;
            assert!(
                c.macs <= self.limit,
                "evaluated an illegal candidate {arch:?}"
            );
            self.calls.push(arch.clone());
            // Prefers large choices on even decisions and choice 1 on odd ones.
            Ok(arch
                .choices()
                .iter()
                .enumerate()
                .map(|(i, &c)| {
                    if i % 2 == 0 {
                        c as f64
                    } else {
                        -((c as f64) - 1.0).abs()
                    }
                })
                .sum())
        }
    }

    fn decisions() -> Vec<Decision> {
        (0..6)
            .map(|i| Decision::choice(&format!("d{i}"), "cell", "op", &["a", "b", "c", "d", "e"]))
            .collect()
    }

    #[test]
    fn evolution_respects_constraints_never_repeats_and_finds_the_optimum() {
        // max MACs 150: the optimum puts 4 on two even decisions and 3... enumerate to be sure.
        let limit = 150;
        let constraints = Constraints {
            max_macs: Some(limit),
            ..Default::default()
        };
        let mut best_score = f64::MIN;
        let mut objective = Synthetic {
            calls: Vec::new(),
            limit,
        };
        for index in 0..5u32.pow(6) {
            let arch = Arch::new((0..6).map(|d| (index / 5u32.pow(d)) % 5).collect());
            if objective.complexity(&arch).unwrap().macs <= limit {
                best_score = best_score.max(objective.score(&arch).unwrap());
            }
        }
        let mut objective = Synthetic {
            calls: Vec::new(),
            limit,
        };
        let mut evaluator = Evaluator::new(&mut objective);
        let config = EvolutionConfig {
            population: 20,
            iterations: 10,
            top_k: 5,
            mutations: 10,
            crossovers: 10,
            ..Default::default()
        };
        let best = evolution(
            &mut evaluator,
            &decisions(),
            &constraints,
            &config,
            7,
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(best.score, best_score, "found {:?}", best.arch);
        let calls = &objective.calls;
        let mut unique = calls.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), calls.len(), "a candidate was evaluated twice");
        assert!(calls.len() <= 20 * 11);
    }

    #[test]
    fn random_search_and_pareto_front() {
        let mut objective = Synthetic {
            calls: Vec::new(),
            limit: 100,
        };
        let mut evaluator = Evaluator::new(&mut objective);
        let constraints = Constraints {
            max_macs: Some(100),
            ..Default::default()
        };
        let best = random(
            &mut evaluator,
            &decisions(),
            &constraints,
            60,
            1,
            &mut |_, _| {},
        )
        .unwrap();
        assert!(best.complexity.macs <= 100);
        let front = pareto_front(&evaluator.evaluated, SearchMetric::Macs);
        for pair in front.windows(2) {
            assert!(pair[0].complexity.macs < pair[1].complexity.macs);
            assert!(pair[0].score < pair[1].score);
        }
        assert_eq!(front.last().unwrap().score, best.score);
    }

    /// [`Synthetic`] with a latency table: 1 ms per unit of choice, 0.5 ms fixed.
    struct Timed(Synthetic);

    impl Objective for Timed {
        fn complexity(&mut self, arch: &Arch) -> Result<Complexity> {
            self.0.complexity(arch)
        }
        fn latency_ms(&mut self, arch: &Arch) -> Result<Option<f64>> {
            Ok(Some(
                0.5 + arch.choices().iter().map(|&c| c as f64).sum::<f64>(),
            ))
        }
        fn score(&mut self, arch: &Arch) -> Result<f64> {
            let latency = self.latency_ms(arch)?.unwrap();
            assert!(
                latency <= 8.5,
                "evaluated {arch:?} at {latency} ms, over the budget"
            );
            self.0.score(arch)
        }
    }

    #[test]
    fn latency_budgets_are_never_exceeded_and_the_front_is_in_ms() {
        let mut objective = Timed(Synthetic {
            calls: Vec::new(),
            limit: u64::MAX,
        });
        let mut evaluator = Evaluator::new(&mut objective);
        let constraints = Constraints::default().with_budget(SearchMetric::Latency, 8.5);
        assert_eq!(constraints.max_latency_ms, Some(8.5));
        let best = evolution(
            &mut evaluator,
            &decisions(),
            &constraints,
            &EvolutionConfig {
                population: 16,
                iterations: 5,
                top_k: 4,
                mutations: 8,
                crossovers: 8,
                ..Default::default()
            },
            3,
            &mut |_, _| {},
        )
        .unwrap();
        assert!(best.latency_ms.unwrap() <= 8.5);
        assert!(evaluator
            .evaluated
            .iter()
            .all(|c| c.latency_ms.unwrap() <= 8.5));
        let front = pareto_front(&evaluator.evaluated, SearchMetric::Latency);
        for pair in front.windows(2) {
            assert!(pair[0].latency_ms < pair[1].latency_ms);
            assert!(pair[0].score < pair[1].score);
        }
        // A latency bound admits nothing without a latency.
        let cost = Cost {
            complexity: Complexity { macs: 0, params: 0 },
            latency_ms: None,
        };
        assert!(!constraints.admits(&cost));
        assert!(Constraints::default().admits(&cost));
    }

    #[test]
    fn impossible_constraints_are_reported() {
        let mut objective = Synthetic {
            calls: Vec::new(),
            limit: 0,
        };
        let mut evaluator = Evaluator::new(&mut objective);
        let constraints = Constraints {
            min_macs: Some(1000),
            ..Default::default()
        };
        let err = evolution(
            &mut evaluator,
            &decisions(),
            &constraints,
            &EvolutionConfig::default(),
            0,
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("loosen"), "{err}");
    }
}
