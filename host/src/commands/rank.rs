//! `nas rank`: correlate a supernet's ranking of subnets with ground truth.

use std::path::PathBuf;

use anyhow::Result;

use super::retrain::collect_archs;
use crate::{
    cli::RankArgs,
    eval::BnPolicy,
    rank::{self, GroundTruth},
    run::load_run_config,
};

/// `nas rank`.
pub fn rank(args: &RankArgs, plugin_path: &[PathBuf]) -> Result<()> {
    let options = &args.subnet_eval;
    let policy = BnPolicy::for_run(
        &load_run_config(&args.run)?,
        options.bn.as_deref(),
        options.calib_batches,
    )?;
    let truth = GroundTruth::parse(&args.ground_truth)?;
    let archs = collect_archs(&args.arch, args.archs_file.as_deref())?;
    let report = rank::rank(
        &args.run,
        &truth,
        &archs,
        policy,
        &options.split,
        args.top_k,
        plugin_path,
    )?;
    let path = rank::write_report(&report)?;
    println!(
        "{} archs: Kendall tau-b {:.4}, Spearman rho {:.4}, top-{} overlap {:.2} (BN {}, {} split)",
        report.n,
        report.kendall_tau,
        report.spearman_rho,
        report.top_k,
        report.top_k_overlap,
        report.bn,
        report.split
    );
    println!("report: {}", path.display());
    Ok(())
}
