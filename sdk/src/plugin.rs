//! What a plugin library exports: a registry of its components, turned into the root module by
//! [`crate::export_plugin!`].

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RResult, RVec},
};

pub use crate::config::{parse_config, parse_preset_config};
use crate::{
    api::{Generator, Sampler, SearchSpace},
    ffi::{FfiGenerator_TO, FfiSampler_TO, FfiSpace_TO, GeneratorBox, SamplerBox, SpaceBox},
    guard::{guard, GeneratorAdapter, SamplerAdapter, SpaceAdapter},
    Component, ComponentInfo, ComponentKind, ErrorKind, PluginError, PluginResult,
};

type Constructor<T> = fn(&str) -> PluginResult<T>;

/// The components of one plugin library.
///
/// ```
/// # use nas_sdk::{Component, PluginResult, Sampler, StepInfo, StepPlan, Arch, HostContext};
/// # struct Fixed;
/// # impl Component for Fixed {
/// #     const NAME: &'static str = "fixed";
/// #     const VERSION: &'static str = "0.1.0";
/// #     const DESCRIPTION: &'static str = "always the same arch";
/// #     fn default_config() -> serde_json::Value { serde_json::json!({}) }
/// #     fn from_config(_: &str) -> PluginResult<Self> { Ok(Fixed) }
/// # }
/// # impl Sampler for Fixed {
/// #     fn start(&mut self, _: HostContext) -> PluginResult<()> { Ok(()) }
/// #     fn plan(&mut self, _: &StepInfo) -> PluginResult<StepPlan> { Ok(StepPlan::single(Arch::new(vec![0]))) }
/// # }
/// let registry = nas_sdk::plugin::Registry::new().sampler::<Fixed>();
/// assert_eq!(registry.components()[0].name.as_str(), "fixed");
/// ```
#[derive(Default)]
pub struct Registry {
    components: Vec<ComponentInfo>,
    spaces: Vec<(&'static str, Constructor<SpaceBox>)>,
    samplers: Vec<(&'static str, Constructor<SamplerBox>)>,
    generators: Vec<(&'static str, Constructor<GeneratorBox>)>,
}

fn info<C: Component>(kind: ComponentKind) -> ComponentInfo {
    ComponentInfo {
        kind,
        name: C::NAME.into(),
        version: C::VERSION.into(),
        description: C::DESCRIPTION.into(),
        default_config: C::default_config().to_string().into(),
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a search space.
    pub fn space<S: SearchSpace + Component>(mut self) -> Self {
        self.components.push(info::<S>(ComponentKind::Space));
        self.spaces.push((S::NAME, |config| {
            let inner = S::from_config(config)?;
            Ok(FfiSpace_TO::from_value(
                SpaceAdapter {
                    name: S::NAME,
                    inner,
                },
                TD_Opaque,
            ))
        }));
        self
    }

    /// Adds a sampler.
    pub fn sampler<S: Sampler + Component>(mut self) -> Self {
        self.components.push(info::<S>(ComponentKind::Sampler));
        self.samplers.push((S::NAME, |config| {
            let inner = S::from_config(config)?;
            Ok(FfiSampler_TO::from_value(
                SamplerAdapter {
                    name: S::NAME,
                    inner,
                },
                TD_Opaque,
            ))
        }));
        self
    }

    /// Adds a generator.
    pub fn generator<G: Generator + Component>(mut self) -> Self {
        self.components.push(info::<G>(ComponentKind::Generator));
        self.generators.push((G::NAME, |config| {
            let inner = G::from_config(config)?;
            Ok(FfiGenerator_TO::from_value(
                GeneratorAdapter {
                    name: G::NAME,
                    inner,
                },
                TD_Opaque,
            ))
        }));
        self
    }

    /// The components, for the root module.
    pub fn components(&self) -> RVec<ComponentInfo> {
        self.components.iter().cloned().collect()
    }

    fn find<T>(
        list: &[(&'static str, Constructor<T>)],
        kind: ComponentKind,
        name: &str,
        config: &str,
    ) -> PluginResult<T> {
        let (_, constructor) = list.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            let known: Vec<&str> = list.iter().map(|(n, _)| *n).collect();
            PluginError::new(
                ErrorKind::NotFound,
                format!("no {kind} named `{name}` in this library (it has: {known:?})"),
            )
        })?;
        constructor(config)
    }

    /// Builds the space `name`, catching panics.
    pub fn new_space(&self, name: &str, config: &str) -> RResult<SpaceBox, PluginError> {
        guard(name, "constructor", || {
            Self::find(&self.spaces, ComponentKind::Space, name, config)
        })
    }

    /// Builds the sampler `name`, catching panics.
    pub fn new_sampler(&self, name: &str, config: &str) -> RResult<SamplerBox, PluginError> {
        guard(name, "constructor", || {
            Self::find(&self.samplers, ComponentKind::Sampler, name, config)
        })
    }

    /// Builds the generator `name`, catching panics.
    pub fn new_generator(&self, name: &str, config: &str) -> RResult<GeneratorBox, PluginError> {
        guard(name, "constructor", || {
            Self::find(&self.generators, ComponentKind::Generator, name, config)
        })
    }
}

/// Exports a plugin library: its abi_stable root module and its metadata symbol.
///
/// Call it once at the crate root of a `cdylib` crate, with a [`Registry`] expression. The crate
/// must depend on `abi_stable` too (the generated code names it).
///
/// ```ignore
/// nas_sdk::export_plugin!(nas_sdk::plugin::Registry::new().space::<MySpace>());
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($registry:expr) => {
        $crate::export_plugin!(@versions $registry, $crate::SDK_VERSION, $crate::LIBTORCH_VERSION);
    };
    // Overriding the reported versions exists for the host's load-check tests only.
    (@versions $registry:expr, $sdk_version:expr, $libtorch_version:expr) => {
        fn __nas_registry() -> &'static $crate::plugin::Registry {
            static REGISTRY: ::std::sync::OnceLock<$crate::plugin::Registry> =
                ::std::sync::OnceLock::new();
            REGISTRY.get_or_init(|| $registry)
        }

        extern "C" fn __nas_components(
        ) -> ::abi_stable::std_types::RVec<$crate::ComponentInfo> {
            match ::std::panic::catch_unwind(|| __nas_registry().components()) {
                Ok(list) => list,
                Err(_) => ::abi_stable::std_types::RVec::new(),
            }
        }

        extern "C" fn __nas_new_space(
            name: ::abi_stable::std_types::RStr<'_>,
            config: ::abi_stable::std_types::RStr<'_>,
        ) -> ::abi_stable::std_types::RResult<$crate::ffi::SpaceBox, $crate::PluginError> {
            $crate::guard::guard(name.as_str(), "registry", || Ok(__nas_registry()))
                .and_then(|registry| registry.new_space(name.as_str(), config.as_str()))
        }

        extern "C" fn __nas_new_sampler(
            name: ::abi_stable::std_types::RStr<'_>,
            config: ::abi_stable::std_types::RStr<'_>,
        ) -> ::abi_stable::std_types::RResult<$crate::ffi::SamplerBox, $crate::PluginError> {
            $crate::guard::guard(name.as_str(), "registry", || Ok(__nas_registry()))
                .and_then(|registry| registry.new_sampler(name.as_str(), config.as_str()))
        }

        extern "C" fn __nas_new_generator(
            name: ::abi_stable::std_types::RStr<'_>,
            config: ::abi_stable::std_types::RStr<'_>,
        ) -> ::abi_stable::std_types::RResult<$crate::ffi::GeneratorBox, $crate::PluginError> {
            $crate::guard::guard(name.as_str(), "registry", || Ok(__nas_registry()))
                .and_then(|registry| registry.new_generator(name.as_str(), config.as_str()))
        }

        /// The abi_stable root module of this plugin library.
        #[::abi_stable::export_root_module]
        pub fn nas_plugin_root_module() -> $crate::ffi::PluginModuleRef {
            use ::abi_stable::prefix_type::PrefixTypeTrait;
            $crate::ffi::PluginModule {
                components: __nas_components,
                new_space: __nas_new_space,
                new_sampler: __nas_new_sampler,
                new_generator: __nas_new_generator,
            }
            .leak_into_prefix()
        }

        /// Build metadata of this plugin library (NUL-terminated JSON, never freed).
        #[no_mangle]
        pub extern "C" fn nas_plugin_metadata() -> *const ::std::os::raw::c_char {
            static METADATA: ::std::sync::OnceLock<::std::ffi::CString> =
                ::std::sync::OnceLock::new();
            METADATA
                .get_or_init(|| {
                    $crate::version::PluginMetadata {
                        sdk_version: ($sdk_version).to_string(),
                        libtorch_version: ($libtorch_version).to_string(),
                        library: env!("CARGO_PKG_NAME").to_string(),
                        library_version: env!("CARGO_PKG_VERSION").to_string(),
                    }
                    .to_c_json()
                })
                .as_ptr()
        }
    };
}
