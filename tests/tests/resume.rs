//! Acceptance: a run interrupted after N steps and resumed for N more gives exactly the loss
//! sequence and final weights (and optimizer state) of a straight 2N-step run.

use std::{path::Path, process::Command, time::Duration};

use nas_tests::*;

fn train(out: &Path, name: &str, extra: &[&str]) -> Command {
    let mut command = nas();
    command.arg("train").args(small_run_args(out, name));
    for item in extra {
        command.args(["--set", item]);
    }
    command
}

#[test]
fn stopping_and_resuming_replays_the_straight_run_exactly() {
    stop_and_resume(&["train.steps=24", "train.checkpoint_every=6"]);
}

/// The same with AdamW, whose state includes per-parameter update counts (the sampled paths
/// leave some parameters idle on some steps).
#[test]
fn stopping_and_resuming_an_adamw_run_replays_it_exactly() {
    stop_and_resume(&[
        "train.steps=24",
        "train.checkpoint_every=6",
        "optim.optimizer=\"adamw\"",
        "optim.lr=0.001",
        "optim.weight_decay=0.05",
    ]);
}

fn stop_and_resume(common: &[&str]) {
    let out = tempfile::tempdir().unwrap();
    run_ok(&mut train(out.path(), "straight", common));

    run_ok(train(out.path(), "split", common).args(["--stop-after-steps", "12"]));
    let split = out.path().join("split");
    assert!(latest_checkpoint(&split).ends_with("step-00000012"));
    run_ok(
        nas()
            .args(["train", "--resume"])
            .arg(&split)
            .args(["--set", "train.progress=false"]),
    );
    assert_same_run(&out.path().join("straight"), &split);
}

#[test]
fn a_killed_run_resumes_from_its_last_checkpoint_to_the_same_result() {
    let out = tempfile::tempdir().unwrap();
    let common = [
        "train.steps=80",
        "train.checkpoint_every=5",
        "data.synthetic_resolution=32",
        "data.synthetic_train=2048",
        "space.config.channels=8",
        "train.batch_size=64",
    ];
    run_ok(&mut train(out.path(), "straight", &common));

    let killed = out.path().join("killed");
    let mut child = train(out.path(), "killed", &common).spawn().unwrap();
    kill_after_first_checkpoint(&mut child, &killed, Duration::from_secs(120));
    let interrupted_at = latest_checkpoint(&killed);
    assert!(
        !interrupted_at.ends_with("step-00000080"),
        "{}",
        interrupted_at.display()
    );

    run_ok(
        nas()
            .args(["train", "--resume"])
            .arg(&killed)
            .args(["--set", "train.progress=false"]),
    );
    assert_same_run(&out.path().join("straight"), &killed);
}

/// Ctrl-C (SIGINT) stops after the current step with a checkpoint at exactly that step, exits
/// with an error that says how to resume, and the resumed run equals the straight run.
#[test]
fn an_interrupted_run_checkpoints_its_last_step_and_resumes_exactly() {
    let out = tempfile::tempdir().unwrap();
    let common = [
        "train.steps=60",
        "train.checkpoint_every=1000",
        "data.synthetic_resolution=32",
        "data.synthetic_train=2048",
        "space.config.channels=8",
        "train.batch_size=64",
    ];
    run_ok(&mut train(out.path(), "straight", &common));

    let interrupted = out.path().join("interrupted");
    let mut child = train(out.path(), "interrupted", &common)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = interrupted.join("metrics.jsonl");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    // Wait for a few logged steps (the metrics file is written in batches, so poll its size).
    while std::fs::metadata(&metrics).map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(std::time::Instant::now() < deadline, "no step was logged");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended first; make it longer"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "an interrupted run must not report success"
    );
    assert!(stderr.contains("training interrupted at step"), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    let checkpoint = latest_checkpoint(&interrupted);
    let logged = std::fs::read_to_string(&metrics).unwrap().lines().count();
    assert!(logged < 60, "the run was not interrupted");
    assert!(
        checkpoint.ends_with(format!("step-{logged:08}")),
        "checkpoint {} after {logged} logged steps",
        checkpoint.display()
    );

    run_ok(
        nas()
            .args(["train", "--resume"])
            .arg(&interrupted)
            .args(["--set", "train.progress=false"]),
    );
    assert_same_run(&out.path().join("straight"), &interrupted);
}

#[test]
fn resuming_with_another_config_is_refused() {
    let out = tempfile::tempdir().unwrap();
    run_ok(train(out.path(), "run", &["train.steps=4"]).args(["--stop-after-steps", "2"]));
    let run_dir = out.path().join("run");
    let (output, _, stderr) = run(nas()
        .args(["train", "--resume"])
        .arg(&run_dir)
        .args(["--set", "optim.lr=0.5"]));
    assert!(!output.status.success());
    assert!(stderr.contains("another config"), "{stderr}");
    // Starting a new run over a trained one is refused too.
    let (output, _, stderr) = run(&mut train(out.path(), "run", &["train.steps=4"]));
    assert!(!output.status.success());
    assert!(stderr.contains("--resume"), "{stderr}");
}
