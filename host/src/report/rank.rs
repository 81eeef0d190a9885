//! The ranking's plot: supernet accuracy against ground truth, one point per arch.

use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;

use super::chart::{bounds, draw_svg};

/// `(supernet accuracy %, ground-truth accuracy %)` per arch, with the chart's caption (the
/// correlations) and the supernet axis' label (which names the BN policy).
pub fn plot_rank_scatter(
    points: &[(f64, f64)],
    caption: &str,
    supernet_label: &str,
    out: &Path,
) -> Result<()> {
    let padded = |values: Vec<f64>| {
        let (lo, hi) = bounds(values);
        let pad = ((hi - lo) * 0.05).max(0.1);
        (lo - pad)..(hi + pad)
    };
    let x_range = padded(points.iter().map(|p| p.0).collect());
    let y_range = padded(points.iter().map(|p| p.1).collect());
    draw_svg(out, (640, 560), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(x_range, y_range)?;
        chart
            .configure_mesh()
            .x_desc(supernet_label)
            .y_desc("ground-truth accuracy %")
            .draw()?;
        chart.draw_series(
            points
                .iter()
                .map(|&p| Circle::new(p, 4, BLUE.mix(0.7).filled())),
        )?;
        Ok(())
    })
}
