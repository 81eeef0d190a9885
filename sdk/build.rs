//! Records the libtorch version this SDK (and so every plugin built with it) is compiled against,
//! so the host can refuse a plugin built against another libtorch, and puts libtorch's library
//! folder on the rpath of this crate's own test binaries.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let lib_dir = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from);
    let version = lib_dir
        .as_deref()
        .and_then(libtorch_version)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=NAS_SDK_LIBTORCH_VERSION={version}");
    if let Some(dir) = lib_dir {
        // Only affects binaries of this package (doc tests, unit tests); plugins and the host
        // set their own rpath in their build scripts.
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
}

/// Reads `TORCH_VERSION_{MAJOR,MINOR,PATCH}` from the headers next to the libtorch library dir.
fn libtorch_version(lib_dir: &Path) -> Option<String> {
    let root = lib_dir.parent()?;
    let candidates = [
        root.join("include/torch/headeronly/version.h"),
        root.join("include/torch/csrc/api/include/torch/version.h"),
    ];
    for header in candidates {
        println!("cargo:rerun-if-changed={}", header.display());
        let Ok(text) = std::fs::read_to_string(&header) else {
            continue;
        };
        let field = |name: &str| -> Option<u32> {
            text.lines().find_map(|line| {
                let rest = line.trim().strip_prefix("#define ")?.trim();
                let value = rest.strip_prefix(name)?.trim();
                value.parse().ok()
            })
        };
        if let (Some(major), Some(minor), Some(patch)) = (
            field("TORCH_VERSION_MAJOR"),
            field("TORCH_VERSION_MINOR"),
            field("TORCH_VERSION_PATCH"),
        ) {
            return Some(format!("{major}.{minor}.{patch}"));
        }
    }
    None
}
