//! `metrics.jsonl` (one JSON object per step) and the plots drawn from it.

use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, BufWriter, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

/// One trained path of a step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PathRecord {
    /// The arch in the space's text form.
    pub arch: String,
    /// Its choice indices.
    pub choices: Vec<u32>,
    /// Unscaled loss.
    pub loss: f64,
    /// MACs of the arch.
    pub macs: u64,
    /// Params of the arch.
    pub params: u64,
}

/// One step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StepRecord {
    /// Global step (0-based).
    pub step: u64,
    /// Epoch.
    pub epoch: u64,
    /// Learning rate used.
    pub lr: f64,
    /// Mean unscaled loss over paths.
    pub loss: f64,
    /// Momentum group used.
    pub momentum_group: u32,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Training images per second over this step.
    pub images_per_s: f64,
    /// The paths.
    pub paths: Vec<PathRecord>,
}

/// Appends step records to `metrics.jsonl`.
pub struct MetricsWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl MetricsWriter {
    /// Opens `path` for appending, first dropping records of steps `>= from_step` (a resumed run
    /// rewrites what the interrupted run logged after its last checkpoint).
    pub fn open(path: &Path, from_step: u64) -> Result<Self> {
        if path.exists() {
            let kept: Vec<String> = read_lines(path)?
                .into_iter()
                .filter(|line| {
                    serde_json::from_str::<StepRecord>(line)
                        .map(|r| r.step < from_step)
                        .unwrap_or(false)
                })
                .collect();
            let mut text = kept.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            crate::io::write_atomic(path, text.as_bytes())?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(MetricsWriter {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    /// Appends a record.
    pub fn write(&mut self, record: &StepRecord) -> Result<()> {
        serde_json::to_writer(&mut self.out, record)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    /// Flushes to disk.
    pub fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

fn read_lines(path: &Path) -> Result<Vec<String>> {
    let file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter(|l| !l.trim().is_empty())
        .collect())
}

/// Reads all step records of a run.
pub fn read(path: &Path) -> Result<Vec<StepRecord>> {
    read_lines(path)?
        .iter()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{} line {}: not a step record", path.display(), i + 1))
        })
        .collect()
}

/// Draws the training loss (and its moving average) over steps as an SVG.
pub fn plot_loss(records: &[StepRecord], out: &Path) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
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
    let temp = crate::io::temp_path(out).with_extension("svg");
    {
        let root = SVGBackend::new(&temp, (800, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
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
        root.present()?;
    }
    std::fs::rename(&temp, out).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
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
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
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
    let temp = crate::io::temp_path(out).with_extension("svg");
    {
        let root = SVGBackend::new(&temp, (800, 180 * phases as u32 + 40)).into_drawing_area();
        root.fill(&WHITE)?;
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
        root.present()?;
    }
    std::fs::rename(&temp, out).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
