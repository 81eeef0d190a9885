//! Version data for the host's load checks.
//!
//! A plugin library exports, besides its abi_stable root module, a plain C function
//! [`METADATA_SYMBOL`] returning a NUL-terminated JSON object (see [`PluginMetadata`]). Its ABI
//! never changes, so the host can read the SDK and libtorch versions a plugin was built against
//! before trusting anything else in the library, and name both versions in its error.

use serde::{Deserialize, Serialize};

/// Version of this SDK (the plugin contract), from its Cargo manifest.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The libtorch version this SDK was compiled against, read from libtorch's headers at build time
/// (`"unknown"` if they could not be read).
pub const LIBTORCH_VERSION: &str = env!("NAS_SDK_LIBTORCH_VERSION");

/// Name of the exported C function `extern "C" fn() -> *const c_char` that returns the metadata.
pub const METADATA_SYMBOL: &str = "nas_plugin_metadata";

/// What a plugin library reports about how it was built.
///
/// ```
/// let metadata = nas_sdk::version::PluginMetadata::current("my-plugins", "0.1.0");
/// assert_eq!(metadata.sdk_version, nas_sdk::SDK_VERSION);
/// ```
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PluginMetadata {
    /// Version of the nas-sdk the library was compiled against.
    pub sdk_version: String,
    /// libtorch version the library was compiled against.
    pub libtorch_version: String,
    /// The library crate's name.
    pub library: String,
    /// The library crate's version.
    pub library_version: String,
}

impl PluginMetadata {
    /// Metadata of a library built now against this SDK.
    pub fn current(library: &str, library_version: &str) -> Self {
        PluginMetadata {
            sdk_version: SDK_VERSION.to_string(),
            libtorch_version: LIBTORCH_VERSION.to_string(),
            library: library.to_string(),
            library_version: library_version.to_string(),
        }
    }

    /// As the NUL-terminated JSON the metadata symbol returns.
    pub fn to_c_json(&self) -> std::ffi::CString {
        let json = serde_json::to_string(self).expect("metadata serialises");
        std::ffi::CString::new(json).expect("JSON has no NUL bytes")
    }
}

/// Whether a plugin built against SDK `plugin` can be loaded by a host built against `host`:
/// same major version, and the plugin's minor version not newer than the host's (a newer plugin
/// may call methods the host lacks). Before 1.0, every minor release may change the ABI (Cargo's
/// semver rule, which abi_stable's own load check applies too), so 0.x versions must share their
/// minor version. Returns a reason when not.
///
/// ```
/// use nas_sdk::version::sdk_compatible;
/// assert!(sdk_compatible("0.2.0", "0.2.3").is_ok());
/// assert!(sdk_compatible("0.1.0", "0.2.0").is_err());
/// assert!(sdk_compatible("1.0.0", "0.1.0").is_err());
/// assert!(sdk_compatible("1.2.0", "1.3.0").is_ok());
/// assert!(sdk_compatible("1.3.0", "1.2.0").is_err());
/// ```
pub fn sdk_compatible(plugin: &str, host: &str) -> Result<(), String> {
    let parse = |text: &str| {
        semver::Version::parse(text).map_err(|err| format!("invalid SDK version `{text}`: {err}"))
    };
    let (plugin_version, host_version) = (parse(plugin)?, parse(host)?);
    if plugin_version.major == 0
        && host_version.major == 0
        && plugin_version.minor != host_version.minor
    {
        return Err(format!(
            "SDK versions differ in a 0.x minor release, which may change the ABI (plugin {plugin}, host {host}); rebuild the plugin against nas-sdk 0.{}",
            host_version.minor
        ));
    }
    if plugin_version.major != host_version.major {
        return Err(format!(
            "SDK major versions differ (plugin {plugin}, host {host}); rebuild the plugin against nas-sdk {}.x",
            host_version.major
        ));
    }
    if plugin_version.minor > host_version.minor {
        return Err(format!(
            "the plugin needs a newer SDK (plugin {plugin}, host {host}); update nas or rebuild the plugin against nas-sdk {host}"
        ));
    }
    Ok(())
}
