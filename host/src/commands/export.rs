//! `nas export`: a standalone subnet of a trained supernet, checked against it.

use std::path::PathBuf;

use anyhow::Result;

use crate::{
    cli::ExportArgs,
    export::{export as export_subnet, ExportOptions},
};

/// `nas export`.
pub fn export(args: &ExportArgs, plugin_path: &[PathBuf]) -> Result<()> {
    let dir = export_subnet(
        &ExportOptions {
            run_dir: &args.run,
            arch: &args.arch,
            out: args.out.as_deref(),
            bn: args.bn.as_deref(),
            calib_batches: args.calib_batches,
        },
        plugin_path,
    )?;
    println!(
        "exported to {} (arch.json, weights.safetensors, subnet.pt, check.safetensors)",
        dir.display()
    );
    Ok(())
}
