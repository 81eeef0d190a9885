// Puts libtorch's library folder on the rpath of `nas` (and this crate's tests), so the binary
// runs without LD_LIBRARY_PATH, and records that folder so `nas` can load libtorch's CUDA library
// at run time when the user asks for a GPU.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let dir = std::env::var("DEP_TCH_LIBTORCH_LIB").unwrap_or_default();
    if !dir.is_empty() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rustc-env=NAS_LIBTORCH_LIB_DIR={dir}");
}
