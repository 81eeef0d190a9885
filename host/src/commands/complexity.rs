//! `nas complexity`: exact MACs and parameters of subnets.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use crate::{
    cli::ComplexityArgs,
    config::RunConfig,
    plugins::{open_catalog, Space},
};

/// `nas complexity`.
pub fn complexity(args: &ComplexityArgs, plugin_path: &[PathBuf]) -> Result<()> {
    let mut config = RunConfig::load(args.config.config.as_deref(), &args.config.set)?;
    if let Some(name) = &args.space {
        if *name != config.space.name {
            config.space.name = name.clone();
            config.space.config = toml::Table::new();
        }
    }
    let catalog = open_catalog(&config.plugins.path, plugin_path);
    let space = Space::create(&catalog, &config.space, None)?;
    #[derive(Serialize)]
    struct Row {
        arch: String,
        choices: Vec<u32>,
        macs: u64,
        params: u64,
    }
    let mut rows = Vec::new();
    for text in &args.arch {
        let arch = space.parse_arch(text)?;
        let c = space.complexity(&arch)?;
        rows.push(Row {
            arch: space.arch_text(&arch)?,
            choices: arch.choices().to_vec(),
            macs: c.macs,
            params: c.params,
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("{:>12}  {:>10}  arch", "MMACs", "Mparams");
        for r in &rows {
            println!(
                "{:>12.5}  {:>10.6}  {}",
                r.macs as f64 / 1e6,
                r.params as f64 / 1e6,
                r.arch
            );
        }
    }
    Ok(())
}
