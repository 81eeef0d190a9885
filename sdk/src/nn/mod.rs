//! Building blocks for supernets: an ordered parameter store and plain layers with PyTorch's
//! default initialisation, whose batch norm follows the host's
//! [`ForwardOptions`](crate::ForwardOptions).
//!
//! Layers are plain structs with a `forward`, in the style of tch-rs's examples. Each remembers
//! the indices of its parameters in the [`ParamStore`] so a space can report the parameters an
//! arch uses ([`crate::SearchSpace::active_parameters`]).
//!
//! One layer per file, as in tch-rs's `nn`; this module only re-exports them.

mod batch_norm;
mod conv;
pub(crate) mod init;
mod linear;
pub(crate) mod slice;
mod store;

pub use batch_norm::BatchNorm2d;
pub use conv::Conv2d;
pub use linear::Linear;
pub use store::ParamStore;
