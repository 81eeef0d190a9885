//! The additive latency model: which archs to measure, and its least-squares fit.

use anyhow::{bail, Context, Result};
use nas_sdk::{rng, Arch};
use rand::seq::SliceRandom;
use tch::Tensor;

/// An additive latency model: `base` plus one term per decision and chosen option. Option 0 of
/// every decision costs 0 (the base absorbs it), as in [`nas_sdk::CostTable`].
#[derive(Clone, Debug, PartialEq)]
pub struct AdditiveModel {
    /// Latency of everything no decision changes, with option 0 everywhere, in ms.
    pub base: f64,
    /// `per_option[i][j]`: latency added by option `j` of decision `i`, in ms.
    pub per_option: Vec<Vec<f64>>,
}

impl AdditiveModel {
    /// The model's latency of `choices`, in ms. Choices beyond the table (checked by the callers
    /// that load tables from files) count 0.
    pub fn predict(&self, choices: &[u32]) -> f64 {
        self.base
            + choices
                .iter()
                .zip(&self.per_option)
                .map(|(&j, costs)| costs.get(j as usize).copied().unwrap_or(0.0))
                .sum::<f64>()
    }
}

/// `count` archs in which every option of every decision appears about equally often
/// (`count / options[i]` times each): decision `i` runs through shuffled permutations of its
/// options, independently of the others. Every option is measured at least once when `count` is
/// at least the largest option count, so no term of the fit is left undetermined.
pub fn balanced_archs(options: &[u32], count: usize, seed: u64) -> Vec<Arch> {
    let mut rng = rng::stream(seed, 0, "latency-fit-archs");
    let columns: Vec<Vec<u32>> = options
        .iter()
        .map(|&m| {
            let mut column = Vec::with_capacity(count + m as usize);
            while column.len() < count {
                let mut cycle: Vec<u32> = (0..m.max(1)).collect();
                cycle.shuffle(&mut rng);
                column.extend(cycle);
            }
            column.truncate(count);
            column
        })
        .collect();
    (0..count)
        .map(|k| Arch::new(columns.iter().map(|column| column[k]).collect()))
        .collect()
}

/// Up to `count` uniformly drawn archs that are not in `exclude` and not repeated: the held-out
/// set of the validation. Fewer come back only when the space has too few archs left.
pub fn held_out_archs(options: &[u32], count: usize, exclude: &[Arch], seed: u64) -> Vec<Arch> {
    use rand::Rng;
    let mut rng = rng::stream(seed, 0, "latency-validation-archs");
    let mut archs: Vec<Arch> = Vec::with_capacity(count);
    let mut tries = 0;
    while archs.len() < count && tries < count * 200 {
        tries += 1;
        let arch = Arch::new(
            options
                .iter()
                .map(|&m| rng.gen_range(0..m.max(1)))
                .collect(),
        );
        if !exclude.contains(&arch) && !archs.contains(&arch) {
            archs.push(arch);
        }
    }
    archs
}

/// Fits the additive model to measured `(arch, latency ms)` pairs by least squares of the
/// *relative* error (each row divided by its measured latency), so small subnets weigh as much
/// as large ones. Options never measured keep cost 0 (minimum-norm solution).
pub fn fit_additive(options: &[u32], samples: &[(Arch, f64)]) -> Result<AdditiveModel> {
    if samples.is_empty() {
        bail!("the latency fit needs at least one measured arch");
    }
    let mut column = Vec::with_capacity(options.len());
    let mut columns = 1usize;
    for &m in options {
        column.push(columns);
        columns += m.saturating_sub(1) as usize;
    }
    let rows = samples.len();
    let mut design = vec![0.0f64; rows * columns];
    let mut target = vec![0.0f64; rows];
    for (r, (arch, latency)) in samples.iter().enumerate() {
        if arch.choices().len() != options.len() {
            bail!(
                "the latency fit got an arch with {} choices for a space of {} decisions",
                arch.choices().len(),
                options.len()
            );
        }
        if !(latency.is_finite() && *latency > 0.0) {
            bail!(
                "measured latency {latency} ms of arch {:?} is not a positive number",
                arch.choices()
            );
        }
        let weight = 1.0 / latency;
        design[r * columns] = weight;
        for (i, &j) in arch.choices().iter().enumerate() {
            if j >= options[i] {
                bail!(
                    "the latency fit got choice {j} for decision {i}, which has {} options",
                    options[i]
                );
            }
            if j > 0 {
                design[r * columns + column[i] + j as usize - 1] = weight;
            }
        }
        target[r] = 1.0;
    }
    let a = Tensor::from_slice(&design).view([rows as i64, columns as i64]);
    let b = Tensor::from_slice(&target).view([rows as i64, 1]);
    // gelsd copes with rank deficiency (e.g. fewer archs than terms).
    let (solution, _, _, _) = a.linalg_lstsq(&b, None, "gelsd");
    let solution =
        Vec::<f64>::try_from(solution.flatten(0, -1)).context("reading the latency fit")?;
    let per_option = options
        .iter()
        .enumerate()
        .map(|(i, &m)| {
            (0..m as usize)
                .map(|j| {
                    if j == 0 {
                        0.0
                    } else {
                        solution[column[i] + j - 1]
                    }
                })
                .collect()
        })
        .collect();
    Ok(AdditiveModel {
        base: solution[0],
        per_option,
    })
}

/// Relative errors of predictions against measurements.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ErrorSummary {
    /// Archs compared.
    pub archs: usize,
    /// Mean of `|predicted - measured| / measured`.
    pub mean_relative_error: f64,
    /// Largest `|predicted - measured| / measured`.
    pub max_relative_error: f64,
}

impl ErrorSummary {
    /// The errors of `(predicted, measured)` pairs.
    pub fn of(pairs: &[(f64, f64)]) -> Self {
        let mut summary = ErrorSummary {
            archs: pairs.len(),
            ..Default::default()
        };
        for &(predicted, measured) in pairs {
            let relative = ((predicted - measured) / measured).abs();
            summary.mean_relative_error += relative / pairs.len() as f64;
            summary.max_relative_error = summary.max_relative_error.max(relative);
        }
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_archs_use_every_option_about_equally() {
        let options = [5, 3, 2];
        let archs = balanced_archs(&options, 30, 1);
        for (i, &m) in options.iter().enumerate() {
            for j in 0..m {
                let uses = archs.iter().filter(|a| a.choices()[i] == j).count();
                assert_eq!(uses, 30 / m as usize, "decision {i} option {j}");
            }
        }
    }

    #[test]
    fn held_out_archs_avoid_the_fit_set() {
        let options = [3, 3];
        let fit = balanced_archs(&options, 4, 0);
        let held = held_out_archs(&options, 10, &fit, 0);
        // 9 archs in the space, at most 4 in the fit set.
        assert!(held.len() >= 5);
        assert!(held.iter().all(|a| !fit.contains(a)));
    }

    #[test]
    fn an_exactly_additive_latency_is_recovered() {
        let truth = AdditiveModel {
            base: 1.5,
            per_option: vec![
                vec![0.0, 0.25, 2.0],
                vec![0.0, 0.5],
                vec![0.0, 1.0, 0.1, 3.0],
            ],
        };
        let options = [3, 2, 4];
        let samples: Vec<(Arch, f64)> = balanced_archs(&options, 24, 3)
            .into_iter()
            .map(|a| {
                let t = truth.predict(a.choices());
                (a, t)
            })
            .collect();
        let fit = fit_additive(&options, &samples).unwrap();
        assert!((fit.base - truth.base).abs() < 1e-9, "{fit:?}");
        for (got, want) in fit
            .per_option
            .iter()
            .flatten()
            .zip(truth.per_option.iter().flatten())
        {
            assert!((got - want).abs() < 1e-9, "{fit:?}");
        }
    }
}
