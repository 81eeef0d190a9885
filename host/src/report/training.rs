//! Plots of a training run, drawn from its `metrics.jsonl` records into `plots/`.

use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;

use super::chart::draw_svg;
use crate::run::metrics::StepRecord;

/// Draws the training loss (and its moving average) over steps as an SVG.
pub fn plot_loss(records: &[StepRecord], out: &Path) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let window = (records.len() / 50).max(1);
    let smoothed: Vec<(f64, f64)> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let from = i.saturating_sub(window - 1);
            let slice = &records[from..=i];
            let mean = slice.iter().map(|r| r.loss).sum::<f64>() / slice.len() as f64;
            (r.step as f64, mean)
        })
        .collect();
    let max_loss = records
        .iter()
        .map(|r| r.loss)
        .filter(|l| l.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-6);
    let last_step = records.last().map(|r| r.step).unwrap_or(0) as f64 + 1.0;
    draw_svg(out, (800, 480), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("supernet training loss", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..last_step, 0.0..max_loss * 1.05)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .draw()?;
        chart
            .draw_series(LineSeries::new(
                records.iter().map(|r| (r.step as f64, r.loss)),
                RGBColor(180, 200, 230),
            ))?
            .label("per step")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RGBColor(180, 200, 230)));
        chart
            .draw_series(LineSeries::new(smoothed, BLUE.stroke_width(2)))?
            .label(format!("mean of {window}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE.stroke_width(2)));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// Histograms of the parameter counts of the subnets trained in each quarter of the run (one
/// panel per phase), as an SVG: how a training policy spreads its training over complexity.
pub fn plot_complexity_phases(records: &[StepRecord], out: &Path) -> Result<()> {
    let values: Vec<(u64, f64)> = records
        .iter()
        .flat_map(|r| r.paths.iter().map(move |p| (r.step, p.params as f64 / 1e6)))
        .collect();
    if values.is_empty() {
        return Ok(());
    }
    let first = records.first().map(|r| r.step).unwrap_or(0);
    let last = records.last().map(|r| r.step).unwrap_or(0);
    let phases = 4usize.min(records.len()).max(1);
    let span = (last - first + 1) as f64 / phases as f64;
    let (low, high) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(_, v)| {
            (lo.min(v), hi.max(v))
        });
    let bins = 24usize;
    let width = ((high - low) / bins as f64).max(1e-9);
    let mut counts = vec![vec![0u32; bins]; phases];
    for &(step, value) in &values {
        let phase = (((step - first) as f64 / span) as usize).min(phases - 1);
        let bin = (((value - low) / width) as usize).min(bins - 1);
        counts[phase][bin] += 1;
    }
    let max_count = counts.iter().flatten().copied().max().unwrap_or(1).max(1);
    draw_svg(out, (800, 180 * phases as u32 + 40), |root| {
        let (title, body) = root.split_vertically(40);
        title.draw(&Text::new(
            "parameters (M) of the trained subnets, per quarter of training",
            (12, 12),
            ("sans-serif", 20),
        ))?;
        for (phase, area) in body.split_evenly((phases, 1)).iter().enumerate() {
            let from = first as f64 + phase as f64 * span;
            let to = from + span - 1.0;
            let mut chart = ChartBuilder::on(area)
                .caption(format!("steps {:.0}-{:.0}", from, to), ("sans-serif", 14))
                .margin(6)
                .x_label_area_size(24)
                .y_label_area_size(48)
                .build_cartesian_2d(low..(low + width * bins as f64), 0u32..max_count + 1)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .y_desc("paths")
                .draw()?;
            chart.draw_series(counts[phase].iter().enumerate().map(|(bin, &count)| {
                let x0 = low + bin as f64 * width;
                Rectangle::new([(x0, 0), (x0 + width, count)], BLUE.mix(0.6).filled())
            }))?;
        }
        Ok(())
    })
}

/// The distributions a sampler reported (`"distribution": {"labels", "probabilities"}` in its
/// step reports), as `(step, labels, probabilities)`.
pub fn reported_distributions(records: &[StepRecord]) -> Vec<(u64, Vec<String>, Vec<f64>)> {
    records
        .iter()
        .filter_map(|r| {
            let distribution = r.sampler.as_ref()?.get("distribution")?;
            let labels = distribution
                .get("labels")?
                .as_array()?
                .iter()
                .map(|l| {
                    l.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| l.to_string())
                })
                .collect::<Vec<_>>();
            let probabilities = distribution
                .get("probabilities")?
                .as_array()?
                .iter()
                .map(|p| p.as_f64())
                .collect::<Option<Vec<_>>>()?;
            (labels.len() == probabilities.len() && !labels.is_empty()).then_some((
                r.step,
                labels,
                probabilities,
            ))
        })
        .collect()
}

/// A heat map of the sampler's reported distribution over training (bins x time) as an SVG:
/// how ShiftNAS shifts its sampling over complexity. Nothing is drawn without reports.
pub fn plot_distribution(records: &[StepRecord], out: &Path) -> Result<()> {
    let reports = reported_distributions(records);
    let Some((_, labels, _)) = reports.last() else {
        return Ok(());
    };
    let labels = labels.clone();
    let reports: Vec<_> = reports
        .into_iter()
        .filter(|(_, l, _)| l.len() == labels.len())
        .collect();
    let bins = labels.len();
    let last_step = records.last().map(|r| r.step + 1).unwrap_or(1) as f64;
    let max_p = reports
        .iter()
        .flat_map(|(_, _, p)| p.iter().copied())
        .fold(1e-9f64, f64::max);
    draw_svg(out, (860, 420), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!("sampling distribution over complexity bins (darkest = {max_p:.3})"),
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..last_step, 0.0..bins as f64)?;
        let names = labels.clone();
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("step")
            .y_desc("target bin")
            .y_labels(bins.min(12))
            .y_label_formatter(&move |y| {
                names
                    .get((*y - 0.5).round().max(0.0) as usize)
                    .cloned()
                    .unwrap_or_default()
            })
            .draw()?;
        for (i, (step, _, probabilities)) in reports.iter().enumerate() {
            let until = reports
                .get(i + 1)
                .map(|(s, _, _)| *s as f64)
                .unwrap_or(last_step);
            chart.draw_series(probabilities.iter().enumerate().map(|(bin, &p)| {
                let shade = (p / max_p).clamp(0.0, 1.0);
                let level = (255.0 * (1.0 - shade)) as u8;
                Rectangle::new(
                    [(*step as f64, bin as f64), (until, bin as f64 + 1.0)],
                    RGBColor(level, level, 255).filled(),
                )
            }))?;
        }
        Ok(())
    })
}

/// Target vs exact complexity of the generated paths (in the generator's metric, scaled to
/// millions) as an SVG scatter with the diagonal; nothing is drawn without generated paths.
pub fn plot_generator_targets(
    records: &[StepRecord],
    metric: nas_sdk::Metric,
    out: &Path,
) -> Result<()> {
    let points: Vec<(f64, f64)> = records
        .iter()
        .flat_map(|r| r.paths.iter())
        .filter_map(|p| {
            let achieved = match metric {
                nas_sdk::Metric::Macs => p.macs,
                nas_sdk::Metric::Params => p.params,
            };
            p.target.map(|t| (t / 1e6, achieved as f64 / 1e6))
        })
        .collect();
    if points.is_empty() {
        return Ok(());
    }
    let (low, high) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(t, a)| {
            (lo.min(t).min(a), hi.max(t).max(a))
        });
    let pad = ((high - low) * 0.05).max(1e-6);
    let range = (low - pad)..(high + pad);
    let unit = match metric {
        nas_sdk::Metric::Macs => "MMACs",
        nas_sdk::Metric::Params => "M params",
    };
    draw_svg(out, (640, 600), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "generated subnets: target vs exact complexity",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(range.clone(), range.clone())?;
        chart
            .configure_mesh()
            .x_desc(format!("target ({unit})"))
            .y_desc(format!("exact ({unit})"))
            .draw()?;
        chart.draw_series(LineSeries::new(
            [(range.start, range.start), (range.end, range.end)],
            BLACK.mix(0.4),
        ))?;
        let count = points.len().max(1) as f64;
        chart.draw_series(points.iter().enumerate().map(|(i, &(t, a))| {
            // Early steps light, late steps dark: the generator's progress.
            let level = (200.0 * (1.0 - i as f64 / count)) as u8;
            Circle::new((t, a), 2, RGBColor(level, level, 255).filled())
        }))?;
        Ok(())
    })
}
