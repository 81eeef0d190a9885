//! Compiles `src/shim.cpp` (PyTorch's c10d: TCPStore, PrefixStore, ProcessGroupGloo) against the
//! libtorch torch-sys links, and links it to `torch_cpu` and `c10`.
//!
//! libtorch's headers are the `include/` folder beside its `lib/` (torch-sys exports the lib
//! folder as `DEP_TCH_LIBTORCH_LIB`). PyTorch's wheels do not ship gloo's headers, which
//! `ProcessGroupGloo.hpp` includes; they are looked up in `$NAS_GLOO_INCLUDE`, then
//! `.deps/gloo/usr/include` of the workspace (what `scripts/setup.sh` fetches), then
//! `/usr/include` (Debian's `libgloo-dev`). Without them the crate still builds, without the shim:
//! the cfg `nas_c10d` is then unset and every process group reports `DistError::Unavailable`.

use std::{
    env,
    path::{Path, PathBuf},
};

/// The header that marks a folder as holding gloo's headers.
const GLOO_MARKER: &str = "gloo/algorithm.h";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(nas_c10d)");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/shim.cpp");
    println!("cargo:rerun-if-env-changed=NAS_GLOO_INCLUDE");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");

    let lib_dir = env::var("DEP_TCH_LIBTORCH_LIB").unwrap_or_default();
    if lib_dir.is_empty() {
        skip("torch-sys did not report libtorch's folder (DEP_TCH_LIBTORCH_LIB); run `source scripts/env.sh` before cargo, then rebuild");
        return;
    }
    let lib_dir = PathBuf::from(lib_dir);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());

    let include_dir = lib_dir.join("..").join("include");
    if !include_dir
        .join("torch/csrc/distributed/c10d/ProcessGroupGloo.hpp")
        .is_file()
    {
        skip(&format!(
            "{} has no torch/csrc/distributed/c10d/ProcessGroupGloo.hpp; use a libtorch that ships its distributed headers (PyPI's torch wheel, as scripts/setup.sh sets up), then rebuild",
            include_dir.display()
        ));
        return;
    }

    let Some(gloo) = find_gloo() else {
        skip(&format!(
            "gloo's C++ headers were not found; run scripts/setup.sh (it fetches Debian's libgloo-dev headers into .deps/gloo), or set NAS_GLOO_INCLUDE to a folder holding {GLOO_MARKER}, then rebuild"
        ));
        return;
    };

    let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .cargo_warnings(false)
        .include(&include_dir)
        .include(include_dir.join("torch/csrc/api/include"))
        .flag("-std=c++20")
        .define("USE_C10D_GLOO", None)
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .file("src/shim.cpp");
    if let Gloo::Folder(folder) = &gloo {
        build.include(folder);
    }
    build.compile("nas_c10d_shim");

    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-cfg=nas_c10d");
}

/// Builds without the shim: warns, and records `reason` for `DistError::Unavailable`.
fn skip(reason: &str) {
    println!("cargo:warning=nas-dist: building without the c10d shim, so process groups are unavailable: {reason}");
    println!("cargo:rustc-env=NAS_DIST_UNAVAILABLE={reason}");
}

/// Where gloo's headers are.
enum Gloo {
    /// A folder to add to the include path.
    Folder(PathBuf),
    /// Already on the compiler's default path (`/usr/include`).
    System,
}

/// Looks for gloo's headers; also tells cargo which file to watch (or, when none is found, the
/// missing ones, so the build script runs again once `scripts/setup.sh` fetched them).
fn find_gloo() -> Option<Gloo> {
    if let Ok(folder) = env::var("NAS_GLOO_INCLUDE") {
        let folder = PathBuf::from(folder);
        if has_gloo(&folder) {
            return Some(Gloo::Folder(folder));
        }
        println!(
            "cargo:warning=nas-dist: NAS_GLOO_INCLUDE={} holds no {GLOO_MARKER}; looking elsewhere",
            folder.display()
        );
    }
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let deps = manifest.join("../.deps/gloo/usr/include");
    if has_gloo(&deps) {
        return Some(Gloo::Folder(deps));
    }
    if has_gloo(Path::new("/usr/include")) {
        return Some(Gloo::System);
    }
    // Cargo reruns this script on every build while a watched file is missing (cheap: nothing
    // is compiled then), so the shim is built as soon as either place gets the headers, even
    // when they keep their package's old timestamps.
    println!(
        "cargo:rerun-if-changed={}",
        deps.join(GLOO_MARKER).display()
    );
    println!("cargo:rerun-if-changed=/usr/include/{GLOO_MARKER}");
    None
}

/// Whether `folder` holds gloo's headers (and if so, watches them).
fn has_gloo(folder: &Path) -> bool {
    let marker = folder.join(GLOO_MARKER);
    let found = marker.is_file();
    if found {
        println!("cargo:rerun-if-changed={}", marker.display());
    }
    found
}
