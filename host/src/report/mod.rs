//! What a person looks at: every plot of a run, drawn by one chart module ([`chart`]) from plain
//! series, so no stage sets up its own drawing and no figure is computed twice.

pub mod chart;
pub mod rank;
pub mod search;
pub mod training;
