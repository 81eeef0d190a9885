//! Finding, checking and loading plugin libraries.
//!
//! A library is only loaded from an explicit path or from a folder of the search path: the
//! `--plugin-path` flags and `[plugins] path` entries, then `NAS_PLUGIN_PATH`, then the folder
//! beside the `nas` binary — never implicitly from the working directory. Before the host trusts
//! anything in a library it runs three checks, each with its own error naming the file and both
//! versions: the SDK semver (same major, plugin minor not newer), the libtorch version (equal),
//! and abi_stable's layout and version check of the root module. Libraries are never unloaded.

use std::{
    cell::RefCell,
    collections::BTreeMap,
    ffi::CStr,
    os::raw::c_char,
    path::{Path, PathBuf},
    rc::Rc,
};

use abi_stable::{
    library::{lib_header_from_raw_library, LibraryError, RawLibrary},
    std_types::RStr,
};
use nas_sdk::{
    ffi::PluginModuleRef,
    version::{sdk_compatible, PluginMetadata, METADATA_SYMBOL},
    ComponentInfo, ComponentKind, GeneratorClient, PluginError, SamplerClient, SpaceClient,
    LIBTORCH_VERSION, SDK_VERSION,
};

/// The plugin catalog of a command, shared with the host services (samplers load other samplers
/// through it).
pub type SharedCatalog = Rc<RefCell<PluginCatalog>>;

/// Discovers plugins on the search path of a config (`[plugins] path`) plus `extra` folders
/// (`--plugin-path`), which are searched first.
pub fn open_catalog(config_dirs: &[PathBuf], extra: &[PathBuf]) -> SharedCatalog {
    let mut dirs = extra.to_vec();
    dirs.extend(config_dirs.iter().cloned());
    Rc::new(RefCell::new(PluginCatalog::discover(search_path(&dirs))))
}

/// Why a library could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be opened as a shared library.
    #[error("cannot open plugin {path}: {message}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The loader's message.
        message: String,
    },
    /// The library exports neither the metadata symbol nor a root module.
    #[error("{path} is not a nas plugin (it exports no `{METADATA_SYMBOL}`); plugins are built with nas_sdk::export_plugin!")]
    NotAPlugin {
        /// The file.
        path: PathBuf,
    },
    /// The metadata JSON could not be read.
    #[error("plugin {path} has unreadable metadata: {message}")]
    BadMetadata {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// Built against an incompatible SDK.
    #[error("plugin {path} was built against nas-sdk {plugin_version}, this nas has nas-sdk {host_version}: {reason}")]
    SdkVersion {
        /// The file.
        path: PathBuf,
        /// The plugin's SDK version.
        plugin_version: String,
        /// The host's SDK version.
        host_version: String,
        /// The semver rule that failed.
        reason: String,
    },
    /// Built against another libtorch.
    #[error("plugin {path} was built against libtorch {plugin_version}, this nas uses libtorch {host_version}; rebuild the plugin against libtorch {host_version} (tensors are shared in memory, so the versions must match exactly)")]
    LibtorchVersion {
        /// The file.
        path: PathBuf,
        /// The plugin's libtorch version.
        plugin_version: String,
        /// The host's libtorch version.
        host_version: String,
    },
    /// abi_stable's header, version or layout check failed.
    #[error("plugin {path} failed abi_stable's layout/version check of the root module (plugin built with nas-sdk {plugin_version}, host has nas-sdk {host_version}): {message}")]
    Abi {
        /// The file.
        path: PathBuf,
        /// The plugin's SDK version.
        plugin_version: String,
        /// The host's SDK version.
        host_version: String,
        /// abi_stable's report.
        message: String,
    },
}

/// A loaded, checked plugin library.
pub struct PluginLibrary {
    /// Where it was loaded from.
    pub path: PathBuf,
    /// What it says about its build.
    pub metadata: PluginMetadata,
    /// Its components.
    pub components: Vec<ComponentInfo>,
    module: PluginModuleRef,
}

impl PluginLibrary {
    /// Opens `path` and runs the three load checks.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let raw = RawLibrary::load_at(path).map_err(|err| LoadError::Open {
            path: path.to_path_buf(),
            message: err.to_string(),
        })?;
        // Libraries are never unloaded: objects from them may live until the process ends.
        let raw: &'static RawLibrary = Box::leak(Box::new(raw));

        let metadata = read_metadata(raw, path)?;
        if let Err(reason) = sdk_compatible(&metadata.sdk_version, SDK_VERSION) {
            return Err(LoadError::SdkVersion {
                path: path.to_path_buf(),
                plugin_version: metadata.sdk_version.clone(),
                host_version: SDK_VERSION.to_string(),
                reason,
            });
        }
        if metadata.libtorch_version != LIBTORCH_VERSION {
            return Err(LoadError::LibtorchVersion {
                path: path.to_path_buf(),
                plugin_version: metadata.libtorch_version.clone(),
                host_version: LIBTORCH_VERSION.to_string(),
            });
        }
        let abi_error = |err: LibraryError| LoadError::Abi {
            path: path.to_path_buf(),
            plugin_version: metadata.sdk_version.clone(),
            host_version: SDK_VERSION.to_string(),
            message: err.to_string(),
        };
        // SAFETY: the header is read from a library that stays loaded for the process lifetime.
        let header = unsafe { lib_header_from_raw_library(raw) }.map_err(abi_error)?;
        let module = header
            .init_root_module::<PluginModuleRef>()
            .map_err(abi_error)?;
        let components = (module.components())().into_iter().collect();
        Ok(PluginLibrary {
            path: path.to_path_buf(),
            metadata,
            components,
            module,
        })
    }

    fn has(&self, kind: ComponentKind, name: &str) -> Option<&ComponentInfo> {
        self.components
            .iter()
            .find(|c| c.kind == kind && c.name.as_str() == name)
    }
}

fn read_metadata(raw: &'static RawLibrary, path: &Path) -> Result<PluginMetadata, LoadError> {
    type MetadataFn = extern "C" fn() -> *const c_char;
    // SAFETY: the symbol's type is fixed by the SDK across all versions.
    let symbol = unsafe { raw.get::<MetadataFn>(METADATA_SYMBOL.as_bytes()) }.map_err(|_| {
        LoadError::NotAPlugin {
            path: path.to_path_buf(),
        }
    })?;
    let pointer = symbol();
    if pointer.is_null() {
        return Err(LoadError::BadMetadata {
            path: path.to_path_buf(),
            message: "null metadata".into(),
        });
    }
    // SAFETY: the SDK returns a NUL-terminated static string.
    let text = unsafe { CStr::from_ptr(pointer) }
        .to_string_lossy()
        .into_owned();
    serde_json::from_str(&text).map_err(|err| LoadError::BadMetadata {
        path: path.to_path_buf(),
        message: format!("{err} in `{text}`"),
    })
}

/// A component reference: a name, or `path/to/lib.so:name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentSpec {
    /// Explicit library, if given.
    pub library: Option<PathBuf>,
    /// Component name.
    pub name: String,
}

impl ComponentSpec {
    /// Parses `name` or `path:name` (a path is recognised by a shared-library suffix).
    pub fn parse(spec: &str) -> Self {
        for suffix in [".so:", ".dylib:", ".dll:"] {
            if let Some(at) = spec.rfind(suffix) {
                let split = at + suffix.len() - 1;
                return ComponentSpec {
                    library: Some(PathBuf::from(&spec[..split])),
                    name: spec[split + 1..].to_string(),
                };
            }
        }
        ComponentSpec {
            library: None,
            name: spec.to_string(),
        }
    }
}

/// The plugin search path in priority order.
pub fn search_path(explicit: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = explicit.to_vec();
    if let Some(env) = std::env::var_os("NAS_PLUGIN_PATH") {
        dirs.extend(std::env::split_paths(&env).filter(|p| !p.as_os_str().is_empty()));
    }
    // The binary's own folder; canonicalising fails when the binary was replaced while running
    // (a rebuild), in which case its recorded path still names the right folder.
    if let Some(dir) = std::env::current_exe()
        .ok()
        .map(|exe| exe.canonicalize().unwrap_or(exe))
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        dirs.push(dir);
    }
    let mut seen = Vec::new();
    dirs.retain(|d| {
        let key = d.canonicalize().unwrap_or_else(|_| d.clone());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
    dirs
}

fn is_shared_library(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let suffix = std::env::consts::DLL_SUFFIX;
    name.ends_with(suffix) && path.is_file()
}

/// All plugin libraries found on a search path, with the files that failed their checks.
pub struct PluginCatalog {
    /// Search path used.
    pub dirs: Vec<PathBuf>,
    /// Libraries that passed the checks, in search order.
    pub libraries: Vec<PluginLibrary>,
    /// Files that look like plugins (export the metadata symbol) but failed a check.
    pub rejected: Vec<LoadError>,
    /// Explicitly named libraries loaded on demand.
    explicit: BTreeMap<PathBuf, PluginLibrary>,
}

impl PluginCatalog {
    /// Loads every plugin library in `dirs` (files that are not nas plugins are skipped).
    pub fn discover(dirs: Vec<PathBuf>) -> Self {
        let mut libraries = Vec::new();
        let mut rejected = Vec::new();
        for dir in &dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| is_shared_library(p))
                .collect();
            files.sort();
            for file in files {
                match PluginLibrary::load(&file) {
                    Ok(library) => libraries.push(library),
                    Err(LoadError::NotAPlugin { .. }) | Err(LoadError::Open { .. }) => {}
                    Err(err) => rejected.push(err),
                }
            }
        }
        PluginCatalog {
            dirs,
            libraries,
            rejected,
            explicit: BTreeMap::new(),
        }
    }

    /// The library providing `spec` of `kind`.
    pub fn resolve(
        &mut self,
        kind: ComponentKind,
        spec: &str,
    ) -> anyhow::Result<(&PluginLibrary, ComponentInfo)> {
        let spec = ComponentSpec::parse(spec);
        if let Some(path) = &spec.library {
            if !self.explicit.contains_key(path) {
                let library = PluginLibrary::load(path)?;
                self.explicit.insert(path.clone(), library);
            }
            let library = &self.explicit[path];
            let info = library.has(kind, &spec.name).cloned().ok_or_else(|| {
                let names: Vec<String> = library
                    .components
                    .iter()
                    .map(|c| format!("{} {}", c.kind, c.name))
                    .collect();
                anyhow::anyhow!(
                    "plugin {} has no {kind} named `{}` (it has: {})",
                    path.display(),
                    spec.name,
                    names.join(", ")
                )
            })?;
            return Ok((library, info));
        }
        if let Some(library) = self
            .libraries
            .iter()
            .find(|lib| lib.has(kind, &spec.name).is_some())
        {
            let info = library.has(kind, &spec.name).cloned().expect("just found");
            return Ok((library, info));
        }
        let available: Vec<String> = self
            .libraries
            .iter()
            .flat_map(|lib| lib.components.iter())
            .filter(|c| c.kind == kind)
            .map(|c| c.name.to_string())
            .collect();
        let mut message = format!(
            "no {kind} named `{}` on the plugin search path ({}); available {kind}s: {}",
            spec.name,
            self.dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if available.is_empty() {
                "none".to_string()
            } else {
                available.join(", ")
            }
        );
        for err in &self.rejected {
            message.push_str(&format!("\n  rejected: {err}"));
        }
        message.push_str("\n  add a folder with --plugin-path or NAS_PLUGIN_PATH, or name a library as path/to/libfoo.so:name");
        anyhow::bail!(message)
    }

    /// Resolves `spec` and calls the library's constructor for `kind` (picked by `constructor`).
    fn construct<T>(
        &mut self,
        kind: ComponentKind,
        spec: &str,
        config: &str,
        constructor: impl FnOnce(&PluginModuleRef) -> Constructor<T>,
    ) -> anyhow::Result<(T, Origin)> {
        let (library, info) = self.resolve(kind, spec)?;
        let origin = Origin::new(library, &info);
        let object =
            constructor(&library.module)(RStr::from_str(&info.name), RStr::from_str(config))
                .into_result()
                .map_err(|err| origin.error("constructor", err))?;
        Ok((object, origin))
    }

    /// Builds a search space.
    pub fn new_space(&mut self, spec: &str, config: &str) -> anyhow::Result<(SpaceClient, Origin)> {
        let (object, origin) =
            self.construct(ComponentKind::Space, spec, config, |m| m.new_space())?;
        Ok((SpaceClient::from_box(object), origin))
    }

    /// Builds a sampler.
    pub fn new_sampler(
        &mut self,
        spec: &str,
        config: &str,
    ) -> anyhow::Result<(SamplerClient, Origin)> {
        let (object, origin) =
            self.construct(ComponentKind::Sampler, spec, config, |m| m.new_sampler())?;
        Ok((SamplerClient::from_box(object), origin))
    }

    /// Builds a generator.
    pub fn new_generator(
        &mut self,
        spec: &str,
        config: &str,
    ) -> anyhow::Result<(GeneratorClient, Origin)> {
        let (object, origin) = self.construct(ComponentKind::Generator, spec, config, |m| {
            m.new_generator()
        })?;
        Ok((GeneratorClient::from_box(object), origin))
    }
}

/// A root-module constructor: component name and JSON config in, FFI object out.
type Constructor<T> =
    extern "C" fn(RStr<'_>, RStr<'_>) -> abi_stable::std_types::RResult<T, PluginError>;

/// Which plugin a component came from: recorded in results and named in errors.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Origin {
    /// Component kind.
    pub kind: ComponentKind,
    /// Component name.
    pub name: String,
    /// Component version.
    pub version: String,
    /// Library file.
    pub library: PathBuf,
    /// Library crate and version.
    pub library_version: String,
}

impl Origin {
    fn new(library: &PluginLibrary, info: &ComponentInfo) -> Self {
        Origin {
            kind: info.kind,
            name: info.name.to_string(),
            version: info.version.to_string(),
            library: library.path.clone(),
            library_version: format!(
                "{} {}",
                library.metadata.library, library.metadata.library_version
            ),
        }
    }

    /// An error from a call into this component, naming the plugin and the method.
    pub fn error(&self, method: &str, err: PluginError) -> anyhow::Error {
        match err.kind {
            // The SDK's guard already names the component and the method that panicked.
            nas_sdk::ErrorKind::Panic => anyhow::anyhow!(
                "plugin {} ({} `{}`): {}",
                self.library.display(),
                self.kind,
                self.name,
                err.message
            ),
            _ => anyhow::anyhow!(
                "{} `{}` ({}), {method}: {}",
                self.kind,
                self.name,
                self.library.display(),
                err.message
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(
            ComponentSpec::parse("nb201"),
            ComponentSpec {
                library: None,
                name: "nb201".into()
            }
        );
        assert_eq!(
            ComponentSpec::parse("/x/libfoo.so:bar"),
            ComponentSpec {
                library: Some("/x/libfoo.so".into()),
                name: "bar".into()
            }
        );
    }
}
