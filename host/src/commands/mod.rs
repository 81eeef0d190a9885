//! What each `nas` subcommand does, one file each. Every command reads the same way:
//! `cli` arguments -> `config` -> `plugins` -> a stage (`train`, `eval`, `search`, `rank`,
//! `export`) -> printed summary and files in the run folder. Nothing imports this module but the
//! binary.

mod bench;
mod bench_data;
mod complexity;
mod config;
mod demo;
mod eval;
mod export;
pub mod launch;
mod plugins;
mod profile;
mod rank;
mod retrain;
mod search;
mod train;

use anyhow::Result;

use crate::cli::{Cli, Command, PluginsAction};

pub use demo::demo_config;

/// Runs the command `cli` names.
pub fn run(cli: Cli) -> Result<()> {
    let plugin_path = &cli.plugin_path;
    match &cli.command {
        Command::Train(args) => train::train(args, plugin_path),
        Command::Eval(args) => eval::eval(args, plugin_path),
        Command::Complexity(args) => complexity::complexity(args, plugin_path),
        Command::Plugins { action } => match action {
            PluginsAction::List => plugins::list(plugin_path),
            PluginsAction::Show { name } => plugins::show(name, plugin_path),
        },
        Command::Config { config } => config::print_config(config),
        Command::Demo(args) => demo::demo(args, plugin_path),
        Command::Search(args) => search::search(args, plugin_path),
        Command::Export(args) => export::export(args, plugin_path),
        Command::Retrain(args) => retrain::retrain(args, plugin_path),
        Command::Rank(args) => rank::rank(args, plugin_path),
        Command::Bench(args) => bench::bench(args, plugin_path),
        Command::BenchData(args) => bench_data::bench_data(args),
        Command::Profile(args) => profile::profile(args, plugin_path),
        Command::Launch(args) => std::env::current_exe()
            .map_err(anyhow::Error::from)
            .and_then(|exe| launch::launch(&exe, args.processes, &args.command)),
    }
}
