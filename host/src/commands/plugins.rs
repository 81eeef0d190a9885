//! `nas plugins list` and `nas plugins show NAME`.

use std::path::PathBuf;

use anyhow::Result;

use crate::plugins::open_catalog;

/// `nas plugins list`.
pub fn list(plugin_path: &[PathBuf]) -> Result<()> {
    let catalog = open_catalog(&[], plugin_path);
    let catalog = catalog.borrow();
    println!(
        "search path: {}",
        catalog
            .dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if catalog.libraries.is_empty() {
        println!("no plugins found");
    }
    for library in &catalog.libraries {
        println!(
            "\n{} ({} {}, nas-sdk {}, libtorch {})",
            library.path.display(),
            library.metadata.library,
            library.metadata.library_version,
            library.metadata.sdk_version,
            library.metadata.libtorch_version
        );
        for c in &library.components {
            println!(
                "  {:<9} {:<12} {:<8} {}",
                c.kind.as_str(),
                c.name,
                c.version,
                c.description
            );
        }
    }
    for err in &catalog.rejected {
        println!("\nrejected: {err}");
    }
    Ok(())
}

/// `nas plugins show NAME`.
pub fn show(name: &str, plugin_path: &[PathBuf]) -> Result<()> {
    let catalog = open_catalog(&[], plugin_path);
    let mut catalog = catalog.borrow_mut();
    let mut found = false;
    for kind in [
        nas_sdk::ComponentKind::Space,
        nas_sdk::ComponentKind::Sampler,
        nas_sdk::ComponentKind::Generator,
    ] {
        if let Ok((library, info)) = catalog.resolve(kind, name) {
            found = true;
            let config: serde_json::Value =
                serde_json::from_str(&info.default_config).unwrap_or_default();
            println!("{} `{}` {}", info.kind, info.name, info.version);
            println!("  {}", info.description);
            println!(
                "  library: {} ({} {}, nas-sdk {}, libtorch {})",
                library.path.display(),
                library.metadata.library,
                library.metadata.library_version,
                library.metadata.sdk_version,
                library.metadata.libtorch_version
            );
            println!(
                "  default config:\n{}",
                indent(&serde_json::to_string_pretty(&config)?, 4)
            );
        }
    }
    if !found {
        // Reproduce the resolver's detailed message (search path, rejected libraries).
        catalog.resolve(nas_sdk::ComponentKind::Space, name)?;
    }
    Ok(())
}

fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
