//! Rank correlations between a supernet's ranking and ground truth, with ties handled as scipy
//! does (`scipy.stats.kendalltau` variant b, `scipy.stats.spearmanr` on average ranks).

use anyhow::{bail, Result};

fn check(x: &[f64], y: &[f64]) -> Result<()> {
    if x.len() != y.len() {
        bail!("rank correlation of {} and {} values", x.len(), y.len());
    }
    if x.len() < 2 {
        bail!("rank correlation needs at least 2 pairs, got {}", x.len());
    }
    if x.iter().chain(y).any(|v| !v.is_finite()) {
        bail!("rank correlation of non-finite values");
    }
    Ok(())
}

/// Kendall's tau-b: `(concordant - discordant) / sqrt((n0 - ties_x) (n0 - ties_y))`.
///
/// ```
/// let tau = nas_host::rank::stats::kendall_tau_b(&[1.0, 2.0, 3.0], &[1.0, 3.0, 2.0]).unwrap();
/// assert!((tau - 1.0 / 3.0).abs() < 1e-12);
/// ```
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> Result<f64> {
    check(x, y)?;
    let n = x.len();
    let (mut concordant, mut discordant, mut tied_x, mut tied_y) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..n {
        for j in (i + 1)..n {
            let dx = x[i] - x[j];
            let dy = y[i] - y[j];
            match (dx == 0.0, dy == 0.0) {
                (true, true) => {
                    tied_x += 1;
                    tied_y += 1;
                }
                (true, false) => tied_x += 1,
                (false, true) => tied_y += 1,
                (false, false) => {
                    if (dx > 0.0) == (dy > 0.0) {
                        concordant += 1
                    } else {
                        discordant += 1
                    }
                }
            }
        }
    }
    let pairs = (n * (n - 1) / 2) as i64;
    let denominator = (((pairs - tied_x) * (pairs - tied_y)) as f64).sqrt();
    if denominator == 0.0 {
        bail!("Kendall's tau is undefined when one side is constant");
    }
    Ok((concordant - discordant) as f64 / denominator)
}

/// Ranks from 1, ties sharing their average rank.
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        let rank = (start + end + 1) as f64 / 2.0;
        for &index in &order[start..end] {
            ranks[index] = rank;
        }
        start = end;
    }
    ranks
}

/// Spearman's rho: Pearson correlation of average ranks.
///
/// ```
/// let rho = nas_host::rank::stats::spearman_rho(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap();
/// assert!((rho + 1.0).abs() < 1e-12);
/// ```
pub fn spearman_rho(x: &[f64], y: &[f64]) -> Result<f64> {
    check(x, y)?;
    pearson(&average_ranks(x), &average_ranks(y))
}

fn pearson(x: &[f64], y: &[f64]) -> Result<f64> {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        bail!("correlation is undefined when one side is constant");
    }
    Ok(sxy / (sxx * syy).sqrt())
}

/// Share of the top `k` by `x` that are also in the top `k` by `y` (ties broken by index).
pub fn top_k_overlap(x: &[f64], y: &[f64], k: usize) -> f64 {
    let top = |v: &[f64]| {
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
        order.truncate(k);
        order
    };
    let (a, b) = (top(x), top(y));
    if a.is_empty() {
        return 0.0;
    }
    a.iter().filter(|i| b.contains(i)).count() as f64 / a.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values from scipy 1.x (`kendalltau(x, y).statistic`, `spearmanr(x, y).statistic`).
    const CASES: &[(&[f64], &[f64], f64, f64)] = &[
        (
            &[1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 4.0, 5.0, 6.0, 7.0],
            &[2.0, 1.0, 3.0, 3.0, 5.0, 4.0, 6.0, 6.0, 8.0, 7.0],
            0.8335696394016967,
            0.93812095999547,
        ),
        (
            &[0.5, 0.1, 0.1, 0.9, 0.3, 0.3, 0.7],
            &[10.0, 30.0, 30.0, 20.0, 50.0, 40.0, 40.0],
            -0.10526315789473682,
            -0.212962962962963,
        ),
        (
            &[1.0, 2.0, 3.0, 4.0, 5.0],
            &[5.0, 4.0, 3.0, 2.0, 1.0],
            -1.0,
            -1.0,
        ),
        (
            &[3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0],
            &[2.0, 7.0, 1.0, 8.0, 2.0, 8.0, 1.0, 8.0, 2.0, 8.0, 4.0],
            0.14757295747452434,
            0.1384567651467695,
        ),
    ];

    #[test]
    fn match_scipy_with_ties() {
        for (x, y, tau, rho) in CASES {
            let got_tau = kendall_tau_b(x, y).unwrap();
            let got_rho = spearman_rho(x, y).unwrap();
            assert!((got_tau - tau).abs() < 1e-12, "tau {got_tau} vs {tau}");
            assert!((got_rho - rho).abs() < 1e-12, "rho {got_rho} vs {rho}");
        }
    }

    #[test]
    fn degenerate_inputs_are_errors() {
        assert!(kendall_tau_b(&[1.0, 1.0], &[1.0, 2.0]).is_err());
        assert!(spearman_rho(&[1.0], &[1.0]).is_err());
        assert!(kendall_tau_b(&[1.0, 2.0], &[1.0]).is_err());
    }

    #[test]
    fn ranks_and_overlap() {
        assert_eq!(
            average_ranks(&[10.0, 20.0, 10.0, 30.0]),
            vec![1.5, 3.0, 1.5, 4.0]
        );
        assert_eq!(
            top_k_overlap(&[1.0, 2.0, 3.0, 4.0], &[4.0, 3.0, 2.0, 1.0], 2),
            0.0
        );
        assert_eq!(
            top_k_overlap(&[1.0, 2.0, 3.0, 4.0], &[1.0, 2.0, 4.0, 3.0], 2),
            1.0
        );
    }
}
