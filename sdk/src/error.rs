//! The error every plugin call can return.

use abi_stable::{std_types::RString, StableAbi};

/// What went wrong, so the host can tell a user's mistake from a plugin's bug.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The component's config is invalid (unknown field, value out of range).
    Config,
    /// An arch does not fit the space (wrong length, choice out of range, unparsable text).
    Arch,
    /// The component does not support this operation (e.g. a path-choice space has no keep-masks).
    Unsupported,
    /// A failure while running (libtorch error, shape mismatch).
    Runtime,
    /// The plugin panicked; the message names the method.
    Panic,
    /// The requested component does not exist in this library.
    NotFound,
}

/// An error returned across the plugin boundary.
///
/// ```
/// use nas_sdk::{ErrorKind, PluginError};
/// let err = PluginError::config("field `C`: must be positive, got 0");
/// assert_eq!(err.kind, ErrorKind::Config);
/// assert!(err.to_string().contains("field `C`"));
/// ```
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct PluginError {
    /// The category.
    pub kind: ErrorKind,
    /// A message for the user: what was wrong and what to do.
    pub message: RString,
}

impl PluginError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        PluginError {
            kind,
            message: message.into().into(),
        }
    }

    /// A config error.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// An arch error.
    pub fn arch(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Arch, message)
    }

    /// An unsupported-operation error.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    /// A runtime error.
    pub fn runtime(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Runtime, message)
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}

impl From<tch::TchError> for PluginError {
    fn from(err: tch::TchError) -> Self {
        PluginError::runtime(format!("libtorch: {err}"))
    }
}

/// Result of plugin calls.
pub type PluginResult<T> = Result<T, PluginError>;
