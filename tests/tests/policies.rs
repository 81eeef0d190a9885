//! Training policies through the CLI: FairNAS fairness and single update, the sandwich rule,
//! DYNAS composed over each base sampler by config only, exact resume of a DYNAS run, and every
//! recipe in examples/configs lowering the loss on Fashion-MNIST.

use std::path::Path;

use nas_host::run::metrics::{read, StepRecord};
use nas_tests::*;

fn train(out: &Path, name: &str, sets: &[&str]) -> Vec<StepRecord> {
    let mut command = nas();
    command.arg("train").args(small_run_args(out, name));
    for s in sets {
        command.args(["--set", s]);
    }
    run_ok(&mut command);
    read(&out.join(name).join("metrics.jsonl")).unwrap()
}

fn optimizer_updates(run_dir: &Path) -> u64 {
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(latest_checkpoint(run_dir).join("state.json")).unwrap(),
    )
    .unwrap();
    state["optimizer_updates"].as_u64().unwrap()
}

#[test]
fn fairnas_trains_every_pair_once_per_step_with_one_update() {
    let out = tempfile::tempdir().unwrap();
    let records = train(
        out.path(),
        "fairnas",
        &["sampler.name=fairnas", "train.steps=8"],
    );
    assert_eq!(records.len(), 8);
    for record in &records {
        assert_eq!(record.paths.len(), 5, "m = 5 paths");
        for decision in 0..6 {
            let mut seen: Vec<u32> = record.paths.iter().map(|p| p.choices[decision]).collect();
            seen.sort_unstable();
            assert_eq!(
                seen,
                vec![0, 1, 2, 3, 4],
                "step {} decision {decision}",
                record.step
            );
        }
    }
    for pair in records.windows(2) {
        let a: Vec<_> = pair[0].paths.iter().map(|p| &p.choices).collect();
        let b: Vec<_> = pair[1].paths.iter().map(|p| &p.choices).collect();
        assert_ne!(
            a, b,
            "permutations must differ between steps {} and {}",
            pair[0].step, pair[1].step
        );
    }
    assert_eq!(
        optimizer_updates(&out.path().join("fairnas")),
        8,
        "one update per step"
    );
}

#[test]
fn sandwich_trains_largest_random_smallest_with_one_update() {
    let out = tempfile::tempdir().unwrap();
    let records = train(
        out.path(),
        "sandwich",
        &["sampler.name=sandwich", "train.steps=5"],
    );
    for record in &records {
        assert_eq!(record.paths.len(), 4);
        assert_eq!(record.paths[0].choices, vec![3; 6], "largest first");
        assert_eq!(record.paths[3].choices, vec![0; 6], "smallest last");
    }
    assert_eq!(optimizer_updates(&out.path().join("sandwich")), 5);
}

/// Parameter counts (DYNAS convention) of the smallest and largest subnet of the small space.
fn extremes() -> (f64, f64) {
    let stdout = run_ok(nas().args([
        "complexity",
        "--json",
        "--set",
        "space.config.channels=4",
        "--set",
        "space.config.cells_per_stage=1",
        "--set",
        "space.config.param_convention=weights",
        "--arch",
        "[0,0,0,0,0,0]",
        "--arch",
        "[3,3,3,3,3,3]",
    ]));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    (
        rows[0]["params"].as_f64().unwrap(),
        rows[1]["params"].as_f64().unwrap(),
    )
}

#[test]
fn dynas_composes_over_every_base_by_config_only() {
    let (c_min, c_max) = extremes();
    let w = -(4.0 - 0.25) / (c_max.ln() - c_min.ln());
    let tau = 0.25 - w * c_max.ln();
    let total = 8u64;
    for base in ["uniform", "fairnas", "sandwich"] {
        let out = tempfile::tempdir().unwrap();
        let records = train(
            out.path(),
            base,
            &[
                "sampler.name=dynas",
                &format!("sampler.config.base={base}"),
                "space.config.param_convention=weights",
                &format!("train.steps={total}"),
            ],
        );
        assert_eq!(records.len(), total as usize);
        // MS: one split decision for the whole run; the group is every path's choice on it.
        let split = (0..6).find(|&d| {
            records
                .iter()
                .all(|r| r.paths.iter().all(|p| p.choices[d] == r.momentum_group))
        });
        assert!(
            split.is_some(),
            "{base}: no decision carries the momentum group in every path"
        );
        let groups: std::collections::BTreeSet<u32> =
            records.iter().map(|r| r.momentum_group).collect();
        assert!(
            groups.len() > 1,
            "{base}: a single momentum group in {total} steps"
        );
        // CaLR: the step's LR is lr0 times the mean of its paths' factors.
        for r in &records {
            let progress = 1.0 - r.step as f64 / total as f64;
            let mean: f64 = r
                .paths
                .iter()
                .map(|p| progress.powf(w * (p.params as f64).ln() + tau))
                .sum::<f64>()
                / r.paths.len() as f64;
            assert!(
                (r.lr - 0.025 * mean).abs() < 1e-9,
                "{base} step {}: lr {} vs {}",
                r.step,
                r.lr,
                0.025 * mean
            );
        }
    }
}

#[test]
fn a_dynas_run_resumes_exactly_with_all_momentum_groups() {
    let out = tempfile::tempdir().unwrap();
    let sets = [
        "sampler.name=dynas",
        "sampler.config.base=fairnas",
        "train.steps=10",
        "train.checkpoint_every=5",
    ];
    train(out.path(), "straight", &sets);
    let mut command = nas();
    command
        .arg("train")
        .args(small_run_args(out.path(), "split"))
        .args(["--stop-after-steps", "5"]);
    for s in sets {
        command.args(["--set", s]);
    }
    run_ok(&mut command);
    let split = out.path().join("split");
    run_ok(nas().args(["train", "--resume"]).arg(&split));
    assert_same_run(&out.path().join("straight"), &split);
    let tensors = read_tensors(&latest_checkpoint(&split).join("weights.safetensors"));
    let groups: std::collections::BTreeSet<&str> = tensors
        .keys()
        .filter_map(|k| k.strip_prefix("momentum.")?.split('.').next())
        .collect();
    assert!(
        groups.len() > 1,
        "several momentum groups are checkpointed: {groups:?}"
    );
}

#[test]
fn every_recipe_lowers_the_loss_on_fashion_mnist() {
    let data = repo_root().join("data/fashion-mnist");
    assert!(
        data.join("train-images-idx3-ubyte.gz").exists(),
        "{} is missing: run scripts/setup.sh",
        data.display()
    );
    let recipes = [
        "nb201-uniform",
        "fairnas",
        "sandwich",
        "dynas-uniform",
        "dynas-fairnas",
        "dynas-sandwich",
    ];
    for recipe in recipes {
        let out = tempfile::tempdir().unwrap();
        let config = repo_root().join(format!("examples/configs/{recipe}.toml"));
        let mut command = nas();
        command.args(["train", "-c"]).arg(&config);
        for s in [
            format!("run.out_dir={}", out.path().display()),
            format!("data.path={}", data.display()),
            // Documented reduction for the test: 8 channels, 1 cell per stage, 80 steps.
            "space.config.channels=8".to_string(),
            "train.steps=80".to_string(),
            "train.progress=false".to_string(),
        ] {
            command.args(["--set", &s]);
        }
        run_ok(&mut command);
        let records = read(&out.path().join(recipe).join("metrics.jsonl")).unwrap();
        let mean =
            |slice: &[StepRecord]| slice.iter().map(|r| r.loss).sum::<f64>() / slice.len() as f64;
        let (start, end) = (mean(&records[..10]), mean(&records[records.len() - 10..]));
        eprintln!("{recipe}: mean loss of the first 10 steps {start:.3}, of the last 10 {end:.3}");
        assert!(
            end < start,
            "{recipe}: loss did not fall ({start:.3} -> {end:.3})"
        );
        assert!(out
            .path()
            .join(recipe)
            .join("plots/complexity.svg")
            .is_file());
    }
}

#[test]
fn calr_reproduces_the_nb201_table_through_the_plugin() {
    // algorithms.md section 5, NB201 C=16, N=5, 10 classes, gamma_max 4, parameters counted by
    // the space itself (conv and linear weights): (archs, gamma, LR factor at t/T = 0.5).
    let table: [([u32; 6], f64, f64); 6] = [
        ([0, 0, 0, 0, 0, 0], 4.000, 0.0625),
        ([2, 2, 2, 2, 2, 2], 2.560, 0.170),
        ([3, 0, 0, 0, 0, 0], 2.195, 0.218),
        ([3, 3, 3, 0, 0, 0], 1.047, 0.484),
        ([2, 2, 2, 3, 3, 3], 0.928, 0.526),
        ([3, 3, 3, 3, 3, 3], 0.250, 0.841),
    ];
    let archs: Vec<String> = table.iter().map(|(a, ..)| format!("{a:?}")).collect();
    let out = tempfile::tempdir().unwrap();
    let total = 12u64;
    let records = train(
        out.path(),
        "calr",
        &[
            "space.config.channels=16",
            "space.config.cells_per_stage=5",
            "space.config.param_convention=weights",
            "sampler.name=dynas",
            &format!(
                "sampler.config.base={}:scripted",
                fixture("fixture_scripted").display()
            ),
            &format!("sampler.config.base_config.archs=[{}]", archs.join(",")),
            &format!("train.steps={total}"),
        ],
    );
    for record in records.iter().filter(|r| r.step > 0) {
        let (arch, gamma, factor) = table[record.step as usize % table.len()];
        assert_eq!(record.paths[0].choices, arch.to_vec());
        let progress = 1.0 - record.step as f64 / total as f64;
        let measured_gamma = (record.lr / 0.025).ln() / progress.ln();
        assert!(
            (measured_gamma - gamma).abs() < 1e-3,
            "{arch:?}: gamma {measured_gamma:.4} vs {gamma}"
        );
        let measured_factor = 0.5f64.powf(measured_gamma);
        assert!(
            (measured_factor - factor).abs() < 1e-3,
            "{arch:?}: factor {measured_factor:.4} vs {factor}"
        );
    }
}

#[test]
fn dynas_loss_scale_mode_keeps_lr0_and_scales_the_losses() {
    let out = tempfile::tempdir().unwrap();
    let records = train(
        out.path(),
        "loss-scale",
        &[
            "sampler.name=dynas",
            "sampler.config.base=fairnas",
            "sampler.config.calr_mode=loss-scale",
            "train.steps=4",
        ],
    );
    assert!(
        records.iter().all(|r| r.lr == 0.025),
        "the official FairNAS variant keeps lr0"
    );
}
