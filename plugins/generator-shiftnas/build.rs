// Puts libtorch's folder on the rpath of this crate's test binaries (the cdylib itself is loaded
// into a host that already has libtorch).
fn main() {
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
