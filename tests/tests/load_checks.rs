//! Acceptance: every load check has its own error naming the file and both versions, and a
//! plugin that panics inside a method stops the host cleanly with the last checkpoint intact.

use nas_tests::*;

fn show_error(spec: &str) -> String {
    let (output, _stdout, stderr) = run(nas().args(["plugins", "show", spec]));
    assert!(
        !output.status.success(),
        "`nas plugins show {spec}` should fail"
    );
    stderr
}

#[test]
fn a_file_that_is_not_a_shared_library_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("libjunk.so");
    std::fs::write(&junk, "not a library").unwrap();
    let stderr = show_error(&format!("{}:anything", junk.display()));
    assert!(stderr.contains("cannot open plugin"), "{stderr}");
    assert!(stderr.contains(&junk.display().to_string()), "{stderr}");
}

#[test]
fn a_shared_library_that_is_not_a_plugin_is_refused() {
    let c10 = libtorch_lib_dir().join("libc10.so");
    let stderr = show_error(&format!("{}:anything", c10.display()));
    assert!(stderr.contains("is not a nas plugin"), "{stderr}");
    assert!(stderr.contains("libc10.so"), "{stderr}");
}

#[test]
fn a_plugin_built_against_another_sdk_major_is_refused() {
    let lib = fixture("fixture_sdk_major");
    let stderr = show_error(&format!("{}:trivial", lib.display()));
    assert!(stderr.contains(&lib.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("nas-sdk 1.0.0"),
        "plugin version missing: {stderr}"
    );
    assert!(
        stderr.contains(&format!("nas-sdk {}", nas_sdk::SDK_VERSION)),
        "host version missing: {stderr}"
    );
    assert!(stderr.contains("major"), "{stderr}");
}

/// Before 1.0 a minor release may change the ABI: an older 0.x plugin is refused by the version
/// check (with a rebuild hint), not by abi_stable's layout dump.
#[test]
fn a_plugin_built_against_an_older_0x_minor_sdk_is_refused() {
    let lib = fixture("fixture_sdk_old_minor");
    let stderr = show_error(&format!("{}:trivial", lib.display()));
    assert!(stderr.contains(&lib.display().to_string()), "{stderr}");
    assert!(stderr.contains("nas-sdk 0.1.0"), "{stderr}");
    assert!(
        stderr.contains("rebuild the plugin against nas-sdk 0."),
        "{stderr}"
    );
    assert!(!stderr.contains("Type Layout"), "{stderr}");
}

#[test]
fn a_plugin_built_against_another_libtorch_is_refused() {
    let lib = fixture("fixture_libtorch");
    let stderr = show_error(&format!("{}:trivial", lib.display()));
    assert!(stderr.contains(&lib.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("libtorch 2.12.0"),
        "plugin version missing: {stderr}"
    );
    assert!(
        stderr.contains(&format!("libtorch {}", nas_sdk::LIBTORCH_VERSION)),
        "host version missing: {stderr}"
    );
}

#[test]
fn rejected_plugins_on_the_search_path_are_reported_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["fixture_sdk_major", "fixture_libtorch"] {
        let lib = fixture(name);
        std::fs::copy(&lib, dir.path().join(lib.file_name().unwrap())).unwrap();
    }
    let stdout = run_ok(
        nas()
            .args(["plugins", "list", "--plugin-path"])
            .arg(dir.path()),
    );
    assert_eq!(stdout.matches("rejected:").count(), 2, "{stdout}");
    assert!(
        stdout.contains("nb201"),
        "built-in plugins beside the binary still load: {stdout}"
    );
    // The refused sampler is not usable by name.
    let (output, _, stderr) = run(nas()
        .args(["plugins", "show", "trivial", "--plugin-path"])
        .arg(dir.path()));
    assert!(!output.status.success());
    assert!(stderr.contains("rejected"), "{stderr}");
}

#[test]
fn a_panicking_plugin_stops_the_host_cleanly_and_keeps_the_last_checkpoint() {
    let out = tempfile::tempdir().unwrap();
    let lib = fixture("fixture_scripted");
    let mut command = nas();
    command
        .arg("train")
        .args(small_run_args(out.path(), "panic"))
        .args([
            "--set",
            "train.steps=20",
            "--set",
            "train.checkpoint_every=5",
        ])
        .args(["--set", &format!("sampler.name={}:scripted", lib.display())])
        .args([
            "--set",
            "sampler.config.archs=[[3,3,3,3,3,3],[2,1,0,4,3,2]]",
        ])
        .args(["--set", "sampler.config.panic_at_step=7"]);
    let (output, _stdout, stderr) = run(&mut command);
    assert!(!output.status.success(), "the host must exit non-zero");
    assert!(
        output.status.code().is_some(),
        "the host must exit, not crash on a signal: {:?}",
        output.status
    );
    assert!(
        stderr.contains("panicked in Sampler::plan"),
        "method missing: {stderr}"
    );
    assert!(
        stderr.contains("scripted failure at step 7"),
        "panic message missing: {stderr}"
    );
    assert!(
        stderr.contains(&lib.display().to_string()),
        "plugin file missing: {stderr}"
    );

    let run_dir = out.path().join("panic");
    let checkpoint = latest_checkpoint(&run_dir);
    assert!(
        checkpoint.ends_with("step-00000005"),
        "{}",
        checkpoint.display()
    );
    // The checkpoint loads: evaluate a subnet from it.
    let stdout = run_ok(
        nas()
            .args(["eval", "--run"])
            .arg(&run_dir)
            .args(["--arch", "[3,3,3,3,3,3]"]),
    );
    assert!(stdout.contains("batch-stats"), "{stdout}");
}
