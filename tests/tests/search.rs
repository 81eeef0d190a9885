//! Search, export, retrain and rank through the CLI.

use std::path::Path;

use nas_tests::*;

const ALL_3X3: &str =
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|";
const ALL_SKIP: &str =
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|";

fn trained_supernet(out: &Path) -> std::path::PathBuf {
    run_ok(nas().arg("train").args(small_run_args(out, "super")).args([
        "--set",
        "data.holdout=128",
        "--set",
        "train.steps=20",
    ]));
    out.join("super")
}

#[test]
fn search_stays_within_budgets_and_never_repeats_a_candidate() {
    let out = tempfile::tempdir().unwrap();
    let run = trained_supernet(out.path());
    let budgets = [2_000_000u64, 3_000_000];
    run_ok(nas().args(["search", "--run"]).arg(&run).args([
        "--budgets",
        "2000000,3000000",
        "--population",
        "8",
        "--iterations",
        "2",
        "--top-k",
        "3",
        "--mutations",
        "4",
        "--crossovers",
        "4",
        "--calib-batches",
        "2",
        "--name",
        "budgets",
    ]));
    let dir = run.join("search/budgets");
    let csv = std::fs::read_to_string(dir.join("candidates.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert!(!rows.is_empty());
    let mut archs: Vec<&str> = rows.iter().map(|r| r.split('"').nth(1).unwrap()).collect();
    let macs: Vec<u64> = rows
        .iter()
        .map(|r| r.rsplit(',').nth(2).unwrap().parse().unwrap())
        .collect();
    assert!(
        macs.iter().all(|&m| m <= budgets[1]),
        "a candidate exceeds the largest budget"
    );
    archs.sort_unstable();
    let before = archs.len();
    archs.dedup();
    assert_eq!(archs.len(), before, "a candidate was evaluated twice");
    let best: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("best.json")).unwrap()).unwrap();
    assert_eq!(best.len(), 2);
    for (record, budget) in best.iter().zip(budgets) {
        assert!(record["macs"].as_u64().unwrap() <= budget, "{record}");
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("search.json")).unwrap()).unwrap();
    assert_eq!(manifest["split"], "holdout");
    assert_eq!(manifest["bn"]["policy"], "recalibrate");
    assert!(dir.join("pareto.svg").is_file());

    // The best arch exports by reference to best.json.
    let best_file = format!("@{}", dir.join("best.json").display());
    let stdout = run_ok(
        nas()
            .args(["export", "--run"])
            .arg(&run)
            .args(["--arch", &best_file]),
    );
    assert!(stdout.contains("exported to"), "{stdout}");
}

#[test]
fn search_refuses_a_run_without_a_holdout_split() {
    let out = tempfile::tempdir().unwrap();
    run_ok(
        nas()
            .arg("train")
            .args(small_run_args(out.path(), "plain"))
            .args(["--set", "train.steps=2"]),
    );
    let (output, _, stderr) = run(nas()
        .args(["search", "--run"])
        .arg(out.path().join("plain")));
    assert!(!output.status.success());
    assert!(stderr.contains("data.holdout"), "{stderr}");
}

#[test]
fn rank_against_the_nb201_table_end_to_end() {
    let table = repo_root().join("../shared/data/nas-bench-201/nats_bench_tss_200ep_test_acc.csv");
    assert!(
        table.exists(),
        "{} is missing (../shared beside the checkout)",
        table.display()
    );
    let out = tempfile::tempdir().unwrap();
    let run = trained_supernet(out.path());
    let stdout = run_ok(nas().args(["rank", "--run"]).arg(&run).args([
        "--ground-truth",
        &format!("nb201:{}:cifar10", table.display()),
        "--arch",
        ALL_3X3,
        "--arch",
        ALL_SKIP,
        "--arch",
        "[2,3,1,4,0,3]",
        "--arch",
        "[3,3,0,1,2,4]",
        "--top-k",
        "2",
    ]));
    assert!(stdout.contains("Kendall tau-b"), "{stdout}");
    let report_path = std::fs::read_dir(run.join("rank"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report_path).unwrap()).unwrap();
    assert_eq!(report["n"], 4);
    let tau = report["kendall_tau"].as_f64().unwrap();
    assert!((-1.0..=1.0).contains(&tau));
    // Ground truth is the table's 200-epoch CIFAR-10 accuracy (row 1463 and 1836).
    assert_eq!(report["archs"][0]["truth"].as_f64().unwrap(), 93.76);
    assert!((report["archs"][1]["truth"].as_f64().unwrap() - 54.29666666666666).abs() < 1e-9);
}

#[test]
fn retrain_writes_ground_truth_that_rank_uses() {
    let out = tempfile::tempdir().unwrap();
    let truth = out.path().join("truth.jsonl");
    run_ok(
        nas()
            .arg("retrain")
            .args(small_run_args(out.path(), "unused"))
            .args(["--set", "train.steps=15"])
            .args([
                "--arch",
                ALL_3X3,
                "--arch",
                ALL_SKIP,
                "--arch",
                "[2,2,2,2,2,2]",
                "--seeds",
                "0,1",
            ])
            .arg("--ground-truth")
            .arg(&truth),
    );
    let lines = std::fs::read_to_string(&truth).unwrap();
    assert_eq!(lines.lines().count(), 6, "3 archs x 2 seeds");
    // Retraining again reuses the finished runs and replaces, not duplicates, the records.
    run_ok(
        nas()
            .arg("retrain")
            .args(small_run_args(out.path(), "unused"))
            .args([
                "--set",
                "train.steps=15",
                "--arch",
                ALL_SKIP,
                "--seeds",
                "1",
            ])
            .arg("--ground-truth")
            .arg(&truth),
    );
    assert_eq!(std::fs::read_to_string(&truth).unwrap().lines().count(), 6);

    let run = trained_supernet(out.path());
    let stdout = run_ok(
        nas()
            .args(["rank", "--run"])
            .arg(&run)
            .arg("--ground-truth")
            .arg(&truth),
    );
    assert!(stdout.starts_with("3 archs"), "{stdout}");
}

/// `nas eval` of one arch on the held-out split with BN recalibrated from `batches` batches: its
/// accuracy (%) as the results file records it.
fn eval_holdout(run_dir: &Path, choices: &str, batches: usize) -> f64 {
    let stdout = run_ok(
        nas()
            .args(["eval", "--split", "holdout", "--bn", "recalibrate"])
            .args(["--calib-batches", &batches.to_string(), "--run"])
            .arg(run_dir)
            .args(["--arch", choices]),
    );
    let path = stdout
        .lines()
        .find_map(|l| l.strip_prefix("results: "))
        .expect("nas eval names its results file");
    let records: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    records[0]["result"]["accuracy"].as_f64().unwrap()
}

/// One seed rule for BN calibration: `nas eval`, `nas search` (whatever its `--seed`),
/// `nas search --generator` and `nas export` recalibrate an arch from the same training batches,
/// so they report the same accuracy and logits for it. (Before the rule, search and the
/// generator path drew them from `--seed`: with seed 7 here, the generated 6M subnet scored
/// 11.72% in search against 12.89% in eval.)
#[test]
fn eval_search_generator_and_export_calibrate_bn_from_the_same_batches() {
    let out = tempfile::tempdir().unwrap();
    let sets = shiftnas_args(
        out.path(),
        "cnn",
        "cnn",
        &[
            "data.holdout=256",
            "sampler.config.warmup_fraction=0.5",
            "sampler.config.update_every=10",
            "train.steps=30",
        ],
    );
    run_ok(nas().arg("train").args(&sets));
    let run_dir = out.path().join("cnn");
    // Two calibration batches make BN statistics (and so accuracies) sensitive to which
    // batches were drawn.
    let calib = ["--bn", "recalibrate", "--calib-batches", "2", "--seed", "7"];

    run_ok(
        nas()
            .args(["search", "--algorithm", "random", "--evaluations", "3"])
            .args(calib)
            .args(["--name", "random", "--run"])
            .arg(&run_dir),
    );
    let csv = std::fs::read_to_string(run_dir.join("search/random/candidates.csv")).unwrap();
    for line in csv.lines().skip(1) {
        // iteration,"arch","[choices]",macs,params,accuracy (the arch text may hold quotes)
        let choices = line.rsplit('"').nth(1).expect("quoted choices");
        let searched: f64 = line.rsplit(',').next().unwrap().parse().unwrap();
        let evaluated = eval_holdout(&run_dir, choices, 2);
        assert!(
            (searched - evaluated).abs() < 6e-5,
            "{choices}: search scored {searched}, eval {evaluated}"
        );
    }

    run_ok(
        nas()
            .args(["search", "--generator", "--target", "3M,6M"])
            .args(calib)
            .args(["--name", "generated", "--run"])
            .arg(&run_dir),
    );
    let generated: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("search/generated/generated.json")).unwrap(),
    )
    .unwrap();
    for subnet in generated["subnets"].as_array().unwrap() {
        let choices = subnet["choices"].to_string();
        let reported = subnet["holdout_accuracy"].as_f64().unwrap();
        assert_eq!(
            reported,
            eval_holdout(&run_dir, &choices, 2),
            "generated subnet {choices}"
        );
    }

    let choices = generated["subnets"][0]["choices"].to_string();
    let export_dir = out.path().join("export");
    run_ok(
        nas()
            .args(["export", "--bn", "recalibrate", "--calib-batches", "2"])
            .args(["--arch", &choices, "--run"])
            .arg(&run_dir)
            .arg("--out")
            .arg(&export_dir),
    );
    let logits_file = out.path().join("logits.safetensors");
    run_ok(
        nas()
            .args(["eval", "--split", "holdout", "--bn", "recalibrate"])
            .args(["--calib-batches", "2", "--arch", &choices, "--run"])
            .arg(&run_dir)
            .arg("--save-logits")
            .arg(&logits_file),
    );
    let check = read_tensors(&export_dir.join("check.safetensors"));
    let evaluated = read_tensors(&logits_file);
    let count = check["logits"].size()[0];
    let difference = (&check["logits"] - evaluated["logits"].narrow(0, 0, count))
        .abs()
        .max()
        .double_value(&[]);
    assert!(
        difference < 1e-4,
        "export's check logits and eval's differ by {difference}"
    );
}
