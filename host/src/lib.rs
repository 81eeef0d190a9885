//! The `nas` host: a pipeline of `cli -> commands -> stages -> run folder`, in folders whose
//! imports only point down:
//!
//! | layer | module | concern |
//! |---|---|---|
//! | 1 | [`cli`] | every clap struct of the command line |
//! | 2 | [`commands`] | one file per subcommand: arguments -> config -> plugins -> stage -> output |
//! | 3 | [`rank`], [`search`], [`export`] | retraining and ranking; search and generated subnets; standalone export |
//! | 4 | [`train`], [`eval`] | the training step and loop, optimizer, losses, generator, data parallelism; BN policies, recalibration, accuracy |
//! | 5 | [`report`], [`profile`] | every plot, through one chart module; latency on the target device (measured subnets, the additive table, `latency.json`) |
//! | 6 | [`run`] | the run folder: checkpoints, `metrics.jsonl`, atomic writes, a trained run reopened |
//! | 7 | [`plugins`] | plugin discovery and load checks; `Space` / `Sampler` / `Generator` wrappers; host services |
//! | 8 | [`data`] | datasets, splits, seeded batch order |
//! | 9 | [`config`] | TOML run configuration, overrides, validation, BN policy names |
//! | 10 | [`device`] | CPU / CUDA choice, threads |
//!
//! `scripts/check-imports.py host/src` checks that no two modules import each other and that
//! nothing imports `commands` or (but `commands`) `cli`.

pub mod cli;
pub mod commands;
pub mod config;
pub mod data;
pub mod device;
pub mod eval;
pub mod export;
pub mod plugins;
pub mod profile;
pub mod rank;
pub mod report;
pub mod run;
pub mod search;
pub mod train;
