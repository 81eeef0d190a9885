//! The `nas` host: a pipeline of `cli -> config -> plugins -> trainer / eval -> outputs`.
//!
//! | module | concern |
//! |---|---|
//! | [`config`] | TOML run configuration, overrides, validation |
//! | [`plugins`] | plugin discovery and the three load checks |
//! | [`session`] | a space built from a plugin, and the host services plugins call |
//! | [`data`], [`image_folder`] | datasets and seeded batch order |
//! | [`optim`] | SGD / AdamW with momentum groups, inactive-parameter rule, schedules, clipping |
//! | [`trainer`] | the training loop |
//! | [`distributed`] | data-parallel training over c10d: config check, broadcasts, gradient buckets |
//! | [`generator`] | the run's architecture generator, its optimizer and held-out probes |
//! | [`checkpoint`] | atomic checkpoints and resume |
//! | [`loss`] | per-path losses (labels, distillation) |
//! | [`eval`] | BN policies and accuracy |
//! | [`metrics`] | `metrics.jsonl` and plots |
//! | [`search`], [`searching`] | evolutionary / random search, Pareto front |
//! | [`generated`] | `nas search --generator`: the trained generator's arch per target |
//! | [`export`] | standalone subnets: safetensors, TorchScript, verification |
//! | [`groundtruth`], [`ranking`], [`stats`] | retraining, ranking against ground truth, rank correlation |
//! | [`commands`] | what each CLI subcommand does |

pub mod bench;
pub mod checkpoint;
pub mod commands;
pub mod config;
pub mod data;
pub mod device;
pub mod distributed;
pub mod eval;
pub mod export;
pub mod generated;
pub mod generator;
pub mod groundtruth;
pub mod image_folder;
pub mod io;
pub mod launch;
pub mod loss;
pub mod metrics;
pub mod optim;
pub mod plugins;
pub mod ranking;
pub mod search;
pub mod searching;
pub mod session;
pub mod stats;
pub mod trainer;
