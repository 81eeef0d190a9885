//! The search's plot: every evaluated candidate and the Pareto front.

use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;

use super::chart::{bounds, draw_svg};

/// Candidates as `(complexity, held-out accuracy %)` points, the Pareto front in order of
/// complexity, and the complexity axis' label (e.g. `MMACs`).
pub fn plot_pareto(
    candidates: &[(f64, f64)],
    front: &[(f64, f64)],
    unit: &str,
    out: &Path,
) -> Result<()> {
    if candidates.is_empty() {
        return Ok(());
    }
    let (x_lo, x_hi) = bounds(candidates.iter().map(|p| p.0));
    let (y_lo, y_hi) = bounds(candidates.iter().map(|p| p.1));
    let pad = |lo: f64, hi: f64| ((hi - lo) * 0.05).max(0.05);
    draw_svg(out, (720, 520), |root| {
        let mut chart = ChartBuilder::on(root)
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
        chart
            .configure_mesh()
            .x_desc(unit)
            .y_desc("held-out accuracy %")
            .draw()?;
        chart.draw_series(
            candidates
                .iter()
                .map(|&p| Circle::new(p, 3, BLUE.mix(0.4).filled())),
        )?;
        chart.draw_series(LineSeries::new(front.iter().copied(), RED.stroke_width(2)))?;
        chart.draw_series(front.iter().map(|&p| Circle::new(p, 4, RED.filled())))?;
        Ok(())
    })
}
