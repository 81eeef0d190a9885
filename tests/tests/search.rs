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
