//! Searching a trained supernet: the algorithms ([`algorithms`]: SPOS evolution, random, Pareto
//! front), the search of a run's held-out split ([`supernet`]), and a trained generator's subnet
//! per target ([`generated`], ShiftNAS: no search).

pub mod algorithms;
pub mod generated;
pub mod supernet;

pub use algorithms::{Candidate, Constraints, Cost, EvolutionConfig, SearchMetric};
pub use generated::{parse_target, GeneratedOutcome, GeneratedRequest};
pub use supernet::{
    parse_metric, parse_search_metric, run_search, Algorithm, LatencyRequest, SearchOutcome,
    SearchRequest,
};
