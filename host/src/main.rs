//! `nas`: train, evaluate and measure weight-sharing supernets whose spaces and training policies
//! are plugins. Run `nas --help` for the commands.

use std::process::ExitCode;

use clap::Parser;
use nas_host::{cli::Cli, commands};

fn main() -> ExitCode {
    match commands::run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
