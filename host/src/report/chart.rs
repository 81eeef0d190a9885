//! The one place an SVG chart file is set up: the drawing area, its white background, and the
//! atomic write (temp file + rename) every plot of a run goes through.

use std::path::Path;

use anyhow::{Context, Result};
use plotters::{coord::Shift, prelude::*};

use crate::run::io::temp_path;

/// The drawing area a chart draws on.
pub type Canvas<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Draws an SVG of `size` pixels with `draw` and moves it into place at `out` (creating its
/// folder), so a reader never sees half a plot.
pub fn draw_svg(
    out: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&Canvas<'_>) -> Result<()>,
) -> Result<()> {
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let temp = temp_path(out).with_extension("svg");
    {
        let root = SVGBackend::new(&temp, size).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    std::fs::rename(&temp, out).with_context(|| format!("writing {}", out.display()))
}

/// `(min, max)` of `values` (infinite bounds when empty).
pub fn bounds(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    values
        .into_iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        })
}
