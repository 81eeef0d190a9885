//! Hardware-aware search through the CLI: `nas profile` writes a latency table for a run's space,
//! `nas search` prices candidates with it (never evaluating one over a latency bound), `nas
//! export` records the predicted and the measured latency, and tables are refused for another
//! space, space config or device.

use std::path::{Path, PathBuf};

use nas_tests::*;
use serde_json::Value;

fn trained_supernet(out: &Path) -> PathBuf {
    run_ok(nas().arg("train").args(small_run_args(out, "super")).args([
        "--set",
        "data.holdout=128",
        "--set",
        "train.steps=10",
    ]));
    out.join("super")
}

/// A quick profile of the run's space (few subnets, one round): enough for the checks here.
fn quick_profile(run: &Path, out: &Path) -> Value {
    let stdout = run_ok(
        nas()
            .args(["profile", "--run"])
            .arg(run)
            .args([
                "--fit-archs",
                "12",
                "--validate",
                "6",
                "--warmup",
                "1",
                "--repeats",
                "2",
                "--rounds",
                "1",
                "--out",
            ])
            .arg(out),
    );
    assert!(
        stdout.contains("validation on 6 held-out subnets"),
        "{stdout}"
    );
    assert!(stdout.contains("Kendall tau"), "{stdout}");
    read_json(out)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The table's latency of `choices`, computed here from the file.
fn predict(table: &Value, choices: &[u64]) -> f64 {
    table["base_ms"].as_f64().unwrap()
        + table["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .zip(choices)
            .map(|(d, &c)| d["ms"][c as usize].as_f64().unwrap())
            .sum::<f64>()
}

fn search_args() -> Vec<&'static str> {
    vec![
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
        "1",
        "--holdout-examples",
        "32",
    ]
}

#[test]
fn latency_constrained_search_and_export_use_the_profiled_table() {
    let out = tempfile::tempdir().unwrap();
    let run = trained_supernet(out.path());
    let table_path = out.path().join("latency.json");
    let table = quick_profile(&run, &table_path);
    assert_eq!(table["format"], "nas-latency-table/1");
    assert_eq!(table["space"], "nb201");
    assert_eq!(table["device"], "cpu");
    assert_eq!(table["threads"], 1);
    assert_eq!(table["batch"], 1);
    assert_eq!(table["decisions"].as_array().unwrap().len(), 6);
    assert!(table["space_config_digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(table["space_config"]["channels"], 4);
    assert_eq!(table["samples"].as_array().unwrap().len(), 18);
    for sample in table["samples"].as_array().unwrap() {
        assert!(sample["measured_ms"].as_f64().unwrap() > 0.0, "{sample}");
    }
    // A budget that some archs meet and others do not: the median predicted latency of the
    // measured subnets.
    let mut predicted: Vec<f64> = table["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["predicted_ms"].as_f64().unwrap())
        .collect();
    predicted.sort_by(f64::total_cmp);
    let limit = predicted[predicted.len() / 2];

    run_ok(
        nas()
            .args(["search", "--run"])
            .arg(&run)
            .args(search_args())
            .arg("--latency-table")
            .arg(&table_path)
            .args(["--max-latency-ms", &limit.to_string(), "--name", "fast"]),
    );
    let dir = run.join("search/fast");
    let csv = std::fs::read_to_string(dir.join("candidates.csv")).unwrap();
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().ends_with(",latency_ms"));
    let rows: Vec<&str> = lines.collect();
    assert!(!rows.is_empty());
    for row in rows {
        let choices: Vec<u64> = serde_json::from_str(row.split('"').nth(3).unwrap()).unwrap();
        let by_table = predict(&table, &choices);
        assert!(
            by_table <= limit + 1e-9,
            "candidate {choices:?} was evaluated at {by_table} ms by the table, over {limit} ms"
        );
        let logged: f64 = row.rsplit(',').next().unwrap().parse().unwrap();
        assert!(
            (logged - by_table).abs() < 1e-3,
            "{row}: logged {logged}, table {by_table}"
        );
    }
    let manifest = read_json(&dir.join("search.json"));
    assert_eq!(
        manifest["constraints"]["max_latency_ms"].as_f64().unwrap(),
        limit
    );
    assert_eq!(manifest["latency_table"]["device"], "cpu");

    // Budgets in ms and the Pareto front accuracy vs latency.
    let budgets = [
        predicted[predicted.len() / 3],
        predicted[2 * predicted.len() / 3],
    ];
    run_ok(
        nas()
            .args(["search", "--run"])
            .arg(&run)
            .args(search_args())
            .arg("--latency-table")
            .arg(&table_path)
            .args([
                "--metric",
                "latency",
                "--budgets",
                &format!("{},{}", budgets[0], budgets[1]),
                "--name",
                "budgets",
            ]),
    );
    let dir = run.join("search/budgets");
    let best = read_json(&dir.join("best.json"));
    let best = best.as_array().unwrap();
    assert_eq!(best.len(), 2);
    for (record, budget) in best.iter().zip(budgets) {
        assert_eq!(record["metric"], "latency");
        assert!((record["budget"].as_f64().unwrap() - budget).abs() < 1e-9);
        assert!(
            record["latency_ms"].as_f64().unwrap() <= budget + 1e-9,
            "{record}"
        );
    }
    assert!(dir.join("pareto.svg").is_file());

    // The exported subnet: predicted and measured latency side by side.
    let best_file = format!("@{}", dir.join("best.json").display());
    let export_dir = out.path().join("export");
    let stdout = run_ok(
        nas()
            .args(["export", "--run"])
            .arg(&run)
            .args(["--arch", &best_file, "--out"])
            .arg(&export_dir)
            .arg("--latency-table")
            .arg(&table_path),
    );
    assert!(stdout.contains("exported module measured"), "{stdout}");
    let arch = read_json(&export_dir.join("arch.json"));
    let latency = &arch["latency"];
    let choices: Vec<u64> = serde_json::from_value(arch["choices"].clone()).unwrap();
    assert!((latency["predicted_ms"].as_f64().unwrap() - predict(&table, &choices)).abs() < 1e-9);
    assert!(latency["measured_ms"].as_f64().unwrap() > 0.0, "{latency}");
    assert_eq!(latency["threads"], 1);
}

#[test]
fn latency_tables_are_refused_for_another_space_config_or_device() {
    let out = tempfile::tempdir().unwrap();
    let run = trained_supernet(out.path());
    let table_path = out.path().join("latency.json");
    let table = quick_profile(&run, &table_path);
    let search = |file: &Path, extra: &[&str]| {
        let (output, _, stderr) = run_output(
            nas()
                .args(["search", "--run"])
                .arg(&run)
                .args(search_args())
                .arg("--latency-table")
                .arg(file)
                .args(["--max-latency-ms", "100"])
                .args(extra),
        );
        assert!(
            !output.status.success(),
            "search accepted {}",
            file.display()
        );
        stderr
    };
    let with = |name: &str, edit: &dyn Fn(&mut Value)| {
        let mut changed = table.clone();
        edit(&mut changed);
        let path = out.path().join(name);
        std::fs::write(&path, serde_json::to_string(&changed).unwrap()).unwrap();
        path
    };

    // Another space.
    let other_space = with("space.json", &|t| t["space"] = "cnn".into());
    let stderr = search(&other_space, &[]);
    assert!(
        stderr.contains("space.json") && stderr.contains("`cnn`, not `nb201`"),
        "{stderr}"
    );

    // Another config of the same space, profiled for real: 8 channels instead of the run's 4.
    let mut config = table["space_config"].clone();
    config["channels"] = 8.into();
    let other_config = out.path().join("channels8.json");
    run_ok(
        nas()
            .args([
                "profile",
                "--space",
                "nb201",
                "--space-config",
                &config.to_string(),
            ])
            .args([
                "--fit-archs",
                "5",
                "--validate",
                "2",
                "--warmup",
                "0",
                "--repeats",
                "1",
            ])
            .args(["--rounds", "1", "--out"])
            .arg(&other_config),
    );
    let stderr = search(&other_config, &[]);
    assert!(
        stderr.contains("channels8.json")
            && stderr.contains("another config")
            && stderr.contains("`channels` (8 vs 4)"),
        "{stderr}"
    );

    // Another device kind for the search, and another CPU model for the export's measurement.
    let stderr = search(&table_path, &["--latency-device", "cuda"]);
    assert!(
        stderr.contains("latency.json") && stderr.contains("measured on `cpu`"),
        "{stderr}"
    );
    let other_cpu = with("cpu.json", &|t| t["device_model"] = "Some Other CPU".into());
    let (output, _, stderr) = run_output(
        nas()
            .args(["export", "--run"])
            .arg(&run)
            .args(["--arch", "[3,3,3,3,3,3]", "--latency-table"])
            .arg(&other_cpu),
    );
    assert!(!output.status.success());
    assert!(
        stderr.contains("cpu.json") && stderr.contains("Some Other CPU"),
        "{stderr}"
    );

    // Latency bounds without a table are refused with what to do.
    let (output, _, stderr) = run_output(
        nas()
            .args(["search", "--run"])
            .arg(&run)
            .args(search_args())
            .args(["--metric", "latency", "--budgets", "1,2"]),
    );
    assert!(!output.status.success());
    assert!(
        stderr.contains("--latency-table") && stderr.contains("nas profile"),
        "{stderr}"
    );
}

/// `run`, under a name the tests' `run` folder variables do not shadow.
fn run_output(command: &mut std::process::Command) -> (std::process::Output, String, String) {
    run(command)
}
