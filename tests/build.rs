// rpath for the test binaries, and libtorch's folder for tests that need a real non-plugin library.
fn main() {
    let dir = std::env::var("DEP_TCH_LIBTORCH_LIB").unwrap_or_default();
    if !dir.is_empty() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rustc-env=NAS_TESTS_LIBTORCH_LIB={dir}");
}
