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
            latency_table: args.latency_table.as_deref(),
        },
        plugin_path,
    )?;
    println!(
        "exported to {} (arch.json, weights.safetensors, subnet.pt, check.safetensors)",
        dir.display()
    );
    if args.latency_table.is_some() {
        let manifest: serde_json::Value = crate::run::io::read_json(&dir.join("arch.json"))?;
        let latency = &manifest["latency"];
        println!(
            "latency on {} ({} thread(s), batch {}): table {:.3} ms, exported module measured {:.3} ms ({:+.1}%)",
            latency["device"].as_str().unwrap_or("?"),
            latency["threads"],
            latency["batch"],
            latency["predicted_ms"].as_f64().unwrap_or(f64::NAN),
            latency["measured_ms"].as_f64().unwrap_or(f64::NAN),
            100.0 * latency["relative_error"].as_f64().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
