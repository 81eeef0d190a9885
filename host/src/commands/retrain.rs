//! `nas retrain`: stand-alone training of subnets, recorded as ground truth.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::{
    cli::RetrainArgs,
    config::RunConfig,
    rank::{self, RetrainJob},
};

/// Archs from `--arch` values and an optional file (one per line, `#` comments).
pub fn collect_archs(archs: &[String], file: Option<&Path>) -> Result<Vec<String>> {
    let mut list = archs.to_vec();
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading the arch list {}", file.display()))?;
        list.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    Ok(list)
}

/// `nas retrain`.
pub fn retrain(args: &RetrainArgs, plugin_path: &[PathBuf]) -> Result<()> {
    let config = RunConfig::load(args.config.config.as_deref(), &args.config.set)?;
    let archs = collect_archs(&args.arch, args.archs_file.as_deref())?;
    let records = rank::retrain(
        RetrainJob {
            config,
            archs: &archs,
            seeds: &args.seeds,
            ground_truth: &args.ground_truth,
        },
        plugin_path,
    )?;
    println!(
        "{} results in {}",
        records.len(),
        args.ground_truth.display()
    );
    Ok(())
}
