//! A fitted additive cost table for spaces whose exact complexity has interactions.

use tch::Tensor;

/// An additive cost model of a space whose exact complexity has interactions (width x expand x
/// kernel x resolution): `base` plus one cost per option of every decision, fitted by least
/// squares of the *relative* error over `samples` archs drawn uniformly (from
/// [`crate::rng::stream`] with `seed`). Option 0 of every decision costs 0 (the base absorbs it).
/// Returns the table and its error on the drawn archs.
///
/// ```
/// use nas_sdk::{elastic::additive_cost_table, Arch, Complexity, Metric};
/// // Exactly additive: cost = 10 + 3 * choice0 + 5 * choice1.
/// let exact = |arch: &Arch| Ok(Complexity {
///     macs: 10 + 3 * arch.choices()[0] as u64 + 5 * arch.choices()[1] as u64,
///     params: 0,
/// });
/// let (table, error) = additive_cost_table(&[2, 3], exact, Metric::Macs, 64, 0).unwrap();
/// assert!((table.base - 10.0).abs() < 1e-6);
/// assert!((table.per_option[1][2] - 10.0).abs() < 1e-6);
/// assert!(error.max_relative < 1e-9);
/// ```
pub fn additive_cost_table(
    options: &[u32],
    mut complexity: impl FnMut(&crate::Arch) -> crate::PluginResult<crate::Complexity>,
    metric: crate::Metric,
    samples: usize,
    seed: u64,
) -> crate::PluginResult<(crate::CostTable, CostModelError)> {
    use rand::Rng;
    let mut rng = crate::rng::stream(seed, 0, "additive-cost-table");
    let archs: Vec<crate::Arch> = (0..samples.max(1))
        .map(|_| crate::Arch::new(options.iter().map(|&m| rng.gen_range(0..m)).collect()))
        .collect();
    let exact: Vec<f64> = archs
        .iter()
        .map(|arch| Ok(metric.of(&complexity(arch)?) as f64))
        .collect::<crate::PluginResult<_>>()?;
    // Column 0 is the base; then one column per non-reference option.
    let mut column = Vec::with_capacity(options.len());
    let mut columns = 1usize;
    for &m in options {
        column.push(columns);
        columns += m.saturating_sub(1) as usize;
    }
    let rows = archs.len();
    let mut design = vec![0.0f64; rows * columns];
    let mut target = vec![0.0f64; rows];
    for (r, (arch, &cost)) in archs.iter().zip(&exact).enumerate() {
        // Each row is divided by the exact cost, so the fit minimises relative errors.
        let weight = 1.0 / cost.max(1.0);
        design[r * columns] = weight;
        for (i, &j) in arch.choices().iter().enumerate() {
            if j > 0 {
                design[r * columns + column[i] + j as usize - 1] = weight;
            }
        }
        target[r] = cost * weight;
    }
    let a = Tensor::from_slice(&design).view([rows as i64, columns as i64]);
    let b = Tensor::from_slice(&target).view([rows as i64, 1]);
    // gelsd copes with options no drawn arch used (rank deficiency).
    let (solution, _, _, _) = a.linalg_lstsq(&b, None, "gelsd");
    let solution = Vec::<f64>::try_from(solution.flatten(0, -1))
        .map_err(|err| crate::PluginError::runtime(format!("cost table fit: {err}")))?;
    let per_option: Vec<Vec<f64>> = options
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
    let table = crate::CostTable {
        metric,
        base: solution[0],
        per_option: per_option.into_iter().map(Into::into).collect(),
    };
    let mut error = CostModelError::default();
    for (arch, &cost) in archs.iter().zip(&exact) {
        let relative = ((table.estimate(arch) - cost) / cost.max(1.0)).abs();
        error.mean_relative += relative / rows as f64;
        error.max_relative = error.max_relative.max(relative);
    }
    Ok((table, error))
}

/// Relative error of an additive cost model against the exact counter.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CostModelError {
    /// Mean of `|model - exact| / exact`.
    pub mean_relative: f64,
    /// Largest `|model - exact| / exact`.
    pub max_relative: f64,
}
