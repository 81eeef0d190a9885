//! Evaluating subnets of a supernet: BN policies and recalibration ([`bn`]), accuracy and logits
//! ([`accuracy`]), and recorded evaluations of a trained run ([`records`]).

pub mod accuracy;
pub mod bn;
pub mod records;

pub use crate::config::BnPolicy;
pub use accuracy::{evaluate, logits, EvalResult};
pub use bn::{prepare_bn, BnSnapshot, Calibration};
pub use records::{eval_archs, write_eval_records, EvalRecord};
