//! Helpers for the cross-crate integration tests: where the built binaries and plugins are, and
//! running `nas`.
//!
//! The tests use the artifacts of the profile they were built with: run `cargo build --release
//! --workspace --examples` first (scripts/test.sh does).

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// `target/<profile>`, derived from the test executable's location (`target/<profile>/deps/`).
pub fn artifacts_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf()
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `nas` binary.
pub fn nas_binary() -> PathBuf {
    let path = artifacts_dir().join("nas");
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (cargo build --release --workspace --examples)",
        path.display()
    );
    path
}

/// A `nas` command that does not inherit a user's NAS_PLUGIN_PATH.
pub fn nas() -> Command {
    let mut command = Command::new(nas_binary());
    command.env_remove("NAS_PLUGIN_PATH");
    command
}

/// A fixture plugin library built as an example.
pub fn fixture(name: &str) -> PathBuf {
    let path = artifacts_dir()
        .join("examples")
        .join(format!("lib{name}{}", std::env::consts::DLL_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: build the fixtures first (cargo build --release -p nas-tests --examples)",
        path.display()
    );
    path
}

/// libtorch's library folder.
pub fn libtorch_lib_dir() -> PathBuf {
    PathBuf::from(env!("NAS_TESTS_LIBTORCH_LIB"))
}

/// Runs a command, returning its output, stdout and stderr as text.
pub fn run(command: &mut Command) -> (Output, String, String) {
    let output = command.output().expect("spawn");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

/// Runs a command that must succeed; returns stdout.
pub fn run_ok(command: &mut Command) -> String {
    let (output, stdout, stderr) = run(command);
    assert!(
        output.status.success(),
        "command failed: {command:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

/// `--set` arguments for a small, fast NB201 run on synthetic data in `out_dir`.
pub fn small_run_args(out_dir: &Path, name: &str) -> Vec<String> {
    [
        format!("run.out_dir={}", out_dir.display()),
        format!("run.name={name}"),
        "run.threads=1".into(),
        "run.device=cpu".into(),
        "data.dataset=synthetic".into(),
        "data.synthetic_train=512".into(),
        "data.synthetic_test=128".into(),
        "data.synthetic_resolution=16".into(),
        "space.config.channels=4".into(),
        "space.config.cells_per_stage=1".into(),
        "train.batch_size=32".into(),
        "train.progress=false".into(),
    ]
    .into_iter()
    .flat_map(|s| ["--set".to_string(), s])
    .collect()
}

/// `--set` arguments of a small run of `space` (`vit` or `cnn`) on 28x28 synthetic images with a
/// held-out split, ShiftNAS sampler and generator.
pub fn shiftnas_args(out: &Path, name: &str, space: &str, extra: &[&str]) -> Vec<String> {
    let preset = match space {
        "vit" => "autoformer-mini",
        _ => "attentivenas-small",
    };
    let mut sets: Vec<String> = vec![
        format!("run.out_dir={}", out.display()),
        format!("run.name={name}"),
        "run.threads=1".into(),
        "run.device=cpu".into(),
        "data.dataset=synthetic".into(),
        "data.synthetic_train=1024".into(),
        "data.synthetic_test=128".into(),
        "data.synthetic_channels=1".into(),
        "data.synthetic_resolution=28".into(),
        "data.holdout=128".into(),
        format!("space.name={space}"),
        format!("space.config.preset={preset}"),
        "sampler.name=shiftnas".into(),
        "generator.name=shiftnas".into(),
        "generator.probe_batch_size=64".into(),
        "train.batch_size=16".into(),
        "train.progress=false".into(),
        "eval.bn=batch-stats".into(),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    sets.into_iter()
        .flat_map(|s| ["--set".to_string(), s])
        .collect()
}

/// Reads a safetensors file into name -> tensor.
pub fn read_tensors(path: &Path) -> std::collections::BTreeMap<String, tch::Tensor> {
    tch::Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .into_iter()
        .collect()
}

/// The newest checkpoint folder of a run.
pub fn latest_checkpoint(run_dir: &Path) -> PathBuf {
    nas_host::run::checkpoint::latest(run_dir)
        .expect("readable checkpoints")
        .expect("a checkpoint exists")
}

/// Asserts two run folders logged the same steps (arch, LR, loss) and end with identical
/// checkpoint tensors (weights, buffers, every momentum group).
pub fn assert_same_run(a: &Path, b: &Path) {
    let ma: Vec<nas_host::run::metrics::StepRecord> =
        nas_host::run::metrics::read(&a.join("metrics.jsonl")).unwrap();
    let mb: Vec<nas_host::run::metrics::StepRecord> =
        nas_host::run::metrics::read(&b.join("metrics.jsonl")).unwrap();
    assert_eq!(ma.len(), mb.len(), "different number of logged steps");
    for (ra, rb) in ma.iter().zip(&mb) {
        assert_eq!(ra.step, rb.step);
        assert_eq!(
            ra.paths[0].arch, rb.paths[0].arch,
            "step {}: different arch",
            ra.step
        );
        assert_eq!(ra.lr, rb.lr, "step {}: different lr", ra.step);
        assert_eq!(
            ra.loss, rb.loss,
            "step {}: loss {} vs {}",
            ra.step, ra.loss, rb.loss
        );
    }
    let ta = read_tensors(&latest_checkpoint(a).join("weights.safetensors"));
    let tb = read_tensors(&latest_checkpoint(b).join("weights.safetensors"));
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    assert!(
        ta.keys().any(|k| k.starts_with("momentum.")),
        "optimizer state is checkpointed"
    );
    for (name, tensor) in &ta {
        assert!(tensor.equal(&tb[name]), "{name} differs");
    }
}

/// Kills the training process `child` (kill -9) as soon as its run folder `run_dir` holds a
/// checkpoint, waiting at most `timeout`; asserts it was still running then.
pub fn kill_after_first_checkpoint(
    child: &mut std::process::Child,
    run_dir: &Path,
    timeout: std::time::Duration,
) {
    let pointer = run_dir.join("checkpoints/latest.json");
    let deadline = std::time::Instant::now() + timeout;
    while !pointer.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let finished_early = child.try_wait().unwrap().is_some();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !finished_early,
        "the run finished before it could be killed; make it longer"
    );
}
