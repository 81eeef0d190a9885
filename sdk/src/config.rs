//! Parsing a component's JSON config (re-exported by [`crate::plugin`]): the one place that words
//! config errors, so every component reports them alike.

use crate::{PluginError, PluginResult};

/// Parses a component's JSON config into `T`, filling missing fields from `T::default()` (via
/// `#[serde(default)]` on `T`) and refusing unknown fields (via `#[serde(deny_unknown_fields)]`),
/// with an error naming the component.
///
/// ```
/// #[derive(serde::Deserialize, Default)]
/// #[serde(default, deny_unknown_fields)]
/// struct Config { width: u32 }
/// let config: Config = nas_sdk::plugin::parse_config("demo", r#"{"width": 8}"#).unwrap();
/// assert_eq!(config.width, 8);
/// assert!(nas_sdk::plugin::parse_config::<Config>("demo", r#"{"wdth": 8}"#).is_err());
/// ```
pub fn parse_config<T: serde::de::DeserializeOwned>(
    component: &str,
    json: &str,
) -> PluginResult<T> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    serde_json::from_str(json)
        .map_err(|err| PluginError::config(format!("config of `{component}`: {err}")))
}

/// Parses a config that may name a preset: the full config of the preset named by its `preset`
/// field (`default_preset` when absent), with every other field the user gives replacing the
/// preset's. Errors name the component.
///
/// ```
/// use nas_sdk::plugin::parse_preset_config;
/// use serde_json::json;
/// #[derive(serde::Deserialize)]
/// struct Config { preset: String, width: i64, depth: i64 }
/// let presets = |name: &str| match name {
///     "small" => Ok(json!({"preset": "small", "width": 8, "depth": 2})),
///     other => Err(nas_sdk::PluginError::config(format!("unknown preset `{other}`"))),
/// };
/// let config: Config = parse_preset_config("demo", r#"{"depth": 3}"#, "small", presets).unwrap();
/// assert_eq!((config.preset.as_str(), config.width, config.depth), ("small", 8, 3));
/// ```
pub fn parse_preset_config<T: serde::de::DeserializeOwned>(
    component: &str,
    json: &str,
    default_preset: &str,
    preset: impl Fn(&str) -> PluginResult<serde_json::Value>,
) -> PluginResult<T> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    let user: serde_json::Value = serde_json::from_str(json)
        .map_err(|err| PluginError::config(format!("config of `{component}`: {err}")))?;
    let Some(user) = user.as_object() else {
        return Err(PluginError::config(format!(
            "config of `{component}` must be a table"
        )));
    };
    let name = match user.get("preset") {
        None => default_preset,
        Some(serde_json::Value::String(name)) => name.as_str(),
        Some(other) => {
            return Err(PluginError::config(format!(
                "{component}: field `preset` must be a string, got {other}"
            )))
        }
    };
    let mut merged = preset(name)?;
    for (key, value) in user {
        merged[key] = value.clone();
    }
    serde_json::from_value(merged)
        .map_err(|err| PluginError::config(format!("config of `{component}`: {err}")))
}
