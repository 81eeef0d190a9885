//! Supernet training: each step runs the sampler's plan (one or more forward/backward passes
//! with accumulated gradients), then one optimizer update with the plan's momentum group and LR.
//!
//! | file | what |
//! |---|---|
//! | [`trainer`] | the run's state: building, rank synchronisation, checkpoint and resume |
//! | [`step`] | one step: plan -> check -> batches -> forward/backward -> reduce -> update -> probes -> feedback |
//! | [`runner`] | the loop: progress, metrics, checkpoint cadence, interrupts, plots |
//! | [`optim`] | SGD / AdamW with momentum groups, the inactive-parameter rule, LR schedules, clipping |
//! | [`loss`] | per-path losses (labels, distillation) |
//! | [`generator`] | the run's architecture generator, its optimizer and held-out probes |
//! | [`distributed`] | data parallelism over c10d: config check, broadcasts, gradient buckets |

pub mod distributed;
pub mod generator;
pub mod loss;
pub mod optim;
pub mod runner;
pub mod step;
pub mod trainer;

pub use runner::{Progress, StopPolicy, TrainSummary};
pub use step::StepTimings;
pub use trainer::Trainer;
