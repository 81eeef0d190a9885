//! Plugins: finding and checking libraries ([`catalog`]), and one wrapper per component kind
//! whose every method returns the host's error type with the plugin named ([`Space`],
//! [`Sampler`], [`Generator`]), plus the host's side of the SDK's `HostServices`
//! ([`Services`]).

mod catalog;
mod generator;
mod sampler;
mod services;
mod space;

pub use catalog::{
    open_catalog, search_path, ComponentSpec, LoadError, Origin, PluginCatalog, PluginLibrary,
    SharedCatalog,
};
pub use generator::Generator;
pub use sampler::Sampler;
pub use services::Services;
pub use space::Space;
