//! Elastic (weight-entangled) layers for search spaces whose subnets share nested slices of one
//! set of weights: BigNAS/AttentiveNAS-style CNNs and AutoFormer-style ViTs.
//!
//! Every layer is created at its largest size and run at any smaller one: a subnet uses the
//! **first** `c` channels / features / heads, and the **centre** `k x k` crop of a kernel. Sizes
//! are arguments of `forward`, never state, so one layer serves every subnet of a step.
//!
//! **Gates.** Each `forward` optionally takes a gate tensor over the layer's units (output
//! channels, hidden features, heads, kernel rings): the mask-mapped policy `p' = M p` of
//! ShiftNAS (see [`crate::KeepMask`]). The layer multiplies the matching activations (or, for
//! kernel rings, the kernel) by it, so a generator's gradient reaches its policy. A gate of all
//! ones changes nothing numerically; units past the active size are ignored. Entries are read
//! from the front, so a gate may be as long as the layer's largest size.
//! [`expand_levels`] turns a gate over a decision's options (nested levels) into a gate over
//! units, for decisions whose unit counts depend on other decisions (expand and MLP ratios).
//!
//! **Complexity.** [`Counter`] adds MACs and parameters of the active sizes with the convention
//! of [`crate::Complexity`] (conv `Cin/groups * k * k * Cout * Hout * Wout`, linear `in * out`;
//! BN, activations, pooling and additions not counted), so a space computes exact complexity
//! without running anything.
//!
//! **Export.** Each layer's `export` returns plain tensors of the active sizes, named as the
//! layer's `new` would name them, so a layer built at exactly those sizes loads them as they are.
//!
//! ```
//! use nas_sdk::{elastic::ElasticConv2d, nn::ParamStore};
//! use tch::{Device, Kind, Tensor};
//! let mut store = ParamStore::new(Device::Cpu);
//! // Up to 8 -> 16 channels, kernels up to 5x5, stride 1.
//! let conv = ElasticConv2d::new(&mut store, "conv", 8, 16, 5, 1, false, false);
//! let x = Tensor::randn([2, 6, 10, 10], (Kind::Float, Device::Cpu));
//! // 6 input channels (from `x`), 12 output channels, centre 3x3 crop.
//! let y = conv.forward(&x, 12, 3, None, None);
//! assert_eq!(y.size(), [2, 12, 10, 10]);
//! ```
//!
//! One layer family per file, as in tch-rs's `nn`; this module only re-exports them.

mod activation;
mod attention;
mod conv;
mod cost_model;
mod counter;
mod gate;
mod kernel;
mod layer_norm;
mod linear;
mod ops;
mod relative_position;
mod squeeze_excite;

pub use crate::nn::slice::{first, plain};
pub use activation::Activation;
pub use attention::ElasticSelfAttention;
pub use conv::ElasticConv2d;
pub use cost_model::{additive_cost_table, CostModelError};
pub use counter::Counter;
pub use gate::{expand_levels, gate_channels, gate_features};
pub use kernel::{centre_crop, kernel_ring_mask};
pub use layer_norm::ElasticLayerNorm;
pub use linear::ElasticLinear;
pub use ops::{residual, resize};
pub use relative_position::RelativePosition2d;
pub use squeeze_excite::SqueezeExcite;
