//! Ground truth and ranking: stand-alone retraining of subnets ([`retrain`]), ground-truth files
//! and the NAS-Bench-201 table ([`groundtruth`]), rank correlation ([`stats`]) and how well a
//! supernet orders subnets ([`correlate`]).

pub mod correlate;
pub mod groundtruth;
pub mod retrain;
pub mod stats;

pub use correlate::{rank, write_report, GroundTruth, RankReport, RankedArch};
pub use retrain::{retrain, RetrainJob};
