//! `nas config`: the resolved config as TOML.

use anyhow::Result;

use crate::{cli::ConfigArgs, config::RunConfig};

/// `nas config`.
pub fn print_config(args: &ConfigArgs) -> Result<()> {
    let config = RunConfig::load(args.config.as_deref(), &args.set)?;
    print!("{}", config.to_toml());
    Ok(())
}
