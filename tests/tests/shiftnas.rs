//! ShiftNAS through the CLI: the generator hits its targets on small ViT and CNN spaces, Eq. 8's
//! held-out probes run only at update points and move B, gradients reach the generator, path-
//! choice spaces are refused, and `dynas` over `shiftnas` resumes exactly.

use std::{path::Path, process::Command};

use nas_host::{
    report::training::reported_distributions,
    run::metrics::{read, StepRecord},
};
use nas_tests::*;

fn train(out: &Path, name: &str, space: &str, extra: &[&str]) -> Vec<StepRecord> {
    run_ok(
        nas()
            .arg("train")
            .args(shiftnas_args(out, name, space, extra)),
    );
    read(&out.join(name).join("metrics.jsonl")).unwrap()
}

/// `nas search --generator` over `bins` bin centres; returns (mean relative error, records).
fn generated(run_dir: &Path, bins: usize) -> (f64, serde_json::Value) {
    run_ok(
        nas()
            .args(["search", "--generator", "--bn", "batch-stats", "--run"])
            .arg(run_dir)
            .args(["--targets-across", &bins.to_string()]),
    );
    let text =
        std::fs::read_to_string(run_dir.join("search/search/generated.json")).expect("written");
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    (value["mean_relative_error"].as_f64().unwrap(), value)
}

fn generator_hits_targets(space: &str, steps: u32) {
    let out = tempfile::tempdir().unwrap();
    let records = train(
        out.path(),
        "gen",
        space,
        &[
            &format!("train.steps={steps}"),
            "sampler.config.warmup_fraction=0.5",
            "sampler.config.update_every=20",
            "generator.lr=0.01",
        ],
    );
    assert!(records.iter().all(|r| r.paths[0].target.is_some()));
    let (error, value) = generated(&out.path().join("gen"), 6);
    let report: Vec<String> = value["subnets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "target {:.3}M -> {}M macs ({:.1}%)",
                s["target"].as_f64().unwrap() / 1e6,
                s["macs"].as_u64().unwrap() as f64 / 1e6,
                100.0 * s["relative_error"].as_f64().unwrap()
            )
        })
        .collect();
    eprintln!(
        "{space}: mean relative error {:.2}%\n{}",
        100.0 * error,
        report.join("\n")
    );
    assert!(
        error < 0.10,
        "{space}: argmax AG(C) misses its targets by {:.1}% on average:\n{}",
        100.0 * error,
        report.join("\n")
    );
    let plots = out.path().join("gen/plots");
    assert!(plots.join("generator.svg").is_file());
    assert!(plots.join("distribution.svg").is_file());
}

/// Acceptance 1 (ViT): the exact complexity of `argmax AG(C)` is within 10% of C on average
/// over targets at six bin centres across the space's range.
#[test]
fn the_generator_hits_its_targets_on_a_small_vit() {
    generator_hits_targets("vit", 600);
}

/// Acceptance 1 (CNN).
#[test]
fn the_generator_hits_its_targets_on_a_small_cnn() {
    generator_hits_targets("cnn", 1000);
}

/// Acceptance 2 (no update during warm-up or between update points) and 3 (gradients reach the
/// generator's parameters and B) through the host: probes only at the update steps, with finite
/// non-zero target gradients, B's reported distribution moving, generator weights moving.
#[test]
fn probes_run_only_at_update_points_and_move_b_and_the_generator() {
    let out = tempfile::tempdir().unwrap();
    let records = train(
        out.path(),
        "probes",
        "vit",
        &[
            "train.steps=40",
            "sampler.config.warmup_fraction=0.25",
            "sampler.config.update_every=10",
            "train.checkpoint_every=10",
            "train.keep_checkpoints=10",
        ],
    );
    let probed: Vec<u64> = records
        .iter()
        .filter(|r| !r.probes.is_empty())
        .map(|r| r.step)
        .collect();
    assert_eq!(
        probed,
        vec![10, 20, 30],
        "updates at warm-up end, then every 10"
    );
    for record in records.iter().filter(|r| !r.probes.is_empty()) {
        let probe = record.probes[0];
        assert_eq!(Some(probe.target), record.paths[0].target);
        for value in [
            probe.loss_after,
            probe.loss_before,
            probe.grad_after,
            probe.grad_before,
        ] {
            assert!(value.is_finite(), "step {}: {probe:?}", record.step);
        }
        assert!(
            probe.grad_after != 0.0 && probe.grad_before != 0.0,
            "step {}: the target's gradient is zero: {probe:?}",
            record.step
        );
        assert!(
            probe.grad_after != probe.grad_before,
            "step {}: the two snapshots gave the same gradient: {probe:?}",
            record.step
        );
    }
    let distributions = reported_distributions(&records);
    assert!(distributions.len() >= 2, "{distributions:?}");
    let first = &distributions[0].2;
    let last = &distributions.last().unwrap().2;
    let k = first.len() as f64;
    assert!(
        first.iter().all(|p| (p - 1.0 / k).abs() < 1e-12),
        "{first:?}"
    );
    assert!(
        first.iter().zip(last).any(|(a, b)| (a - b).abs() > 1e-6),
        "B did not move: {last:?}"
    );
    // The generator's weights moved between checkpoints (its gradients reached them).
    let checkpoints = out.path().join("probes/checkpoints");
    let a = read_tensors(&checkpoints.join("step-00000010/weights.safetensors"));
    let b = read_tensors(&checkpoints.join("step-00000040/weights.safetensors"));
    let generator: Vec<&String> = a
        .keys()
        .filter(|k| k.starts_with("generator.param."))
        .collect();
    assert!(
        !generator.is_empty(),
        "generator parameters are checkpointed"
    );
    assert!(
        generator.iter().any(|k| !a[*k].equal(&b[*k])),
        "no generator parameter changed"
    );
}

/// Acceptance 4: NAS-Bench-201 (path choices, no keep-masks) with `shiftnas` fails at start-up
/// with an error that names the reason.
#[test]
fn nb201_with_shiftnas_is_refused_at_start_up() {
    let out = tempfile::tempdir().unwrap();
    for (sampler, generator) in [("shiftnas", "random"), ("uniform", "shiftnas")] {
        let mut command: Command = nas();
        command
            .arg("train")
            .args(small_run_args(out.path(), "nb201"));
        command.args([
            "--set",
            &format!("sampler.name={sampler}"),
            "--set",
            &format!("generator.name={generator}"),
            "--set",
            "data.holdout=64",
        ]);
        let (output, _, stderr) = run(&mut command);
        assert!(!output.status.success());
        assert!(
            stderr.contains("weight-entangled") && stderr.contains("path choice"),
            "{sampler}/{generator}: {stderr}"
        );
        assert!(
            !out.path().join("nb201/metrics.jsonl").exists(),
            "no step may run"
        );
    }
}

/// Acceptance 5: `dynas` over `shiftnas` trains and resumes exactly from a checkpoint (weights,
/// every momentum group, generator parameters and optimizer, B).
#[test]
fn dynas_over_shiftnas_resumes_exactly() {
    let out = tempfile::tempdir().unwrap();
    let common = [
        "train.steps=24",
        "train.checkpoint_every=6",
        "sampler.name=dynas",
        "sampler.config.base=shiftnas",
        "sampler.config.base_config.warmup_fraction=0.2",
        "sampler.config.base_config.update_every=5",
        "sampler.config.base_config.estimator=per-bin",
        "sampler.config.base_config.bins=4",
    ];
    let straight = train(out.path(), "straight", "vit", &common);
    assert!(straight.iter().any(|r| !r.probes.is_empty()));
    assert!(
        straight
            .iter()
            .map(|r| r.momentum_group)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 1,
        "MS groups generated paths by target"
    );
    let mut args = shiftnas_args(out.path(), "split", "vit", &common);
    args.extend(["--set".into(), "train.progress=false".into()]);
    run_ok(
        nas()
            .arg("train")
            .args(&args)
            .args(["--stop-after-steps", "12"]),
    );
    run_ok(
        nas()
            .args(["train", "--resume"])
            .arg(out.path().join("split"))
            .args(["--set", "train.progress=false"]),
    );
    assert_same_run(&out.path().join("straight"), &out.path().join("split"));
    let split = read(&out.path().join("split/metrics.jsonl")).unwrap();
    for (a, b) in straight.iter().zip(&split) {
        assert_eq!(a.probes, b.probes, "step {}", a.step);
        assert_eq!(a.sampler, b.sampler, "step {}", a.step);
        assert_eq!(a.paths[0].target, b.paths[0].target, "step {}", a.step);
    }
}

/// The random generator (ablation baseline) trains with the ShiftNAS sampler's per-bin estimator,
/// on any space, and its archs fall near their targets.
#[test]
fn the_random_generator_ablates_the_shiftnas_generator() {
    let out = tempfile::tempdir().unwrap();
    let records = train(
        out.path(),
        "random",
        "cnn",
        &[
            "train.steps=12",
            "generator.name=random",
            "sampler.config.estimator=per-bin",
            "sampler.config.bins=4",
            "sampler.config.warmup_fraction=0.5",
            "sampler.config.update_every=3",
        ],
    );
    let probed = records.iter().filter(|r| !r.probes.is_empty()).count();
    assert_eq!(probed, 2);
    for record in &records {
        let path = &record.paths[0];
        let target = path.target.unwrap();
        let error = (path.macs as f64 - target).abs() / target;
        assert!(
            error < 0.25,
            "step {}: {} MACs for target {target}",
            record.step,
            path.macs
        );
    }
}
