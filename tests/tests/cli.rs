//! The CLI end to end: plugin listing, complexity against the benchmark's official records, and
//! config errors that name what is wrong.

use nas_tests::*;

#[test]
fn plugins_list_shows_the_built_in_components() {
    let stdout = run_ok(nas().args(["plugins", "list"]));
    assert!(stdout.contains("nb201"), "{stdout}");
    assert!(stdout.contains("uniform"), "{stdout}");
    let stdout = run_ok(nas().args(["plugins", "show", "nb201"]));
    assert!(stdout.contains("\"channels\": 16"), "{stdout}");
}

#[test]
fn complexity_reproduces_official_records_of_archs_0_11_284() {
    // NATS-Bench tss official records (../shared/data/nas-bench-201/), CIFAR-10.
    let records = [
        ("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|", 15.64737, 0.129306),
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|", 113.95137, 0.802426),
        ("|skip_connect~0|+|skip_connect~0|skip_connect~1|+|none~0|nor_conv_1x1~1|none~2|", 11.71521, 0.101306),
    ];
    let mut command = nas();
    command.args(["complexity", "--space", "nb201", "--json"]);
    for (arch, ..) in &records {
        command.args(["--arch", arch]);
    }
    let stdout = run_ok(&mut command);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    for ((arch, mflops, mparams), row) in records.iter().zip(&rows) {
        assert_eq!(row["arch"].as_str().unwrap(), *arch);
        let macs = row["macs"].as_u64().unwrap() as f64 / 1e6;
        let params = row["params"].as_u64().unwrap() as f64 / 1e6;
        assert!((macs - mflops).abs() < 1e-5, "{arch}: {macs} vs {mflops}");
        assert!(
            (params - mparams).abs() < 1e-5,
            "{arch}: {params} vs {mparams}"
        );
    }
}

#[test]
fn config_errors_name_the_field_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[train]\nepocs = 2\n").unwrap();
    let (output, _, stderr) = run(nas().args(["config", "--config"]).arg(&file));
    assert!(!output.status.success());
    assert!(stderr.contains("epocs"), "{stderr}");
    assert!(stderr.contains("bad.toml"), "{stderr}");

    let (output, _, stderr) =
        run(nas().args(["complexity", "--space", "nb201", "--arch", "|conv~0|"]));
    assert!(!output.status.success());
    assert!(stderr.contains("cannot parse arch"), "{stderr}");

    let (output, _, stderr) = run(nas().args(["complexity", "--space", "nb301", "--arch", "[0]"]));
    assert!(!output.status.success());
    assert!(
        stderr.contains("no space named `nb301`") && stderr.contains("nb201"),
        "{stderr}"
    );
}

#[test]
fn demo_trains_searches_and_exports_on_synthetic_data() {
    let out = tempfile::tempdir().unwrap();
    let stdout = run_ok(nas().args(["demo", "--out-dir"]).arg(out.path()).args([
        "--set",
        "data.dataset=synthetic",
        "--set",
        "data.synthetic_train=1024",
        "--set",
        "data.holdout=256",
        "--set",
        "data.synthetic_test=128",
        "--set",
        "space.config.channels=4",
        "--set",
        "train.progress=false",
    ]));
    for line in ["[1/4]", "[2/4]", "[3/4]", "[4/4]", "best subnet", "export "] {
        assert!(stdout.contains(line), "`{line}` missing from:\n{stdout}");
    }
    let run_dir = out.path().join("demo");
    for file in [
        "config.toml",
        "run.json",
        "metrics.jsonl",
        "plots/loss.svg",
        "plots/complexity.svg",
        "checkpoints/latest.json",
        "search/demo/best.json",
        "search/demo/candidates.csv",
        "search/demo/pareto.svg",
    ] {
        assert!(run_dir.join(file).is_file(), "{file} missing");
    }
    let best: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("search/demo/best.json")).unwrap(),
    )
    .unwrap();
    let choices: Vec<String> = best[0]["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    let export = run_dir.join("export").join(choices.join("-"));
    assert!(export.join("weights.safetensors").is_file() && export.join("arch.json").is_file());
    let weights = read_tensors(&export.join("weights.safetensors"));
    assert!(weights.contains_key("classifier.weight"));
}

#[test]
fn example_configs_are_valid() {
    let dir = repo_root().join("examples/configs");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            run_ok(nas().args(["config", "--config"]).arg(&path));
            count += 1;
        }
    }
    assert!(count >= 2, "expected example configs in {}", dir.display());
}

/// Every example recipe runs as written (its augmentation preset included) for a few steps on
/// Fashion-MNIST, and the recipes of papers that trained with augmentation name their preset.
#[test]
fn every_example_recipe_trains_with_its_augmentation_preset() {
    let data = repo_root().join("data/fashion-mnist");
    assert!(
        data.join("train-images-idx3-ubyte.gz").exists(),
        "{} is missing: run scripts/setup.sh",
        data.display()
    );
    let dir = repo_root().join("examples/configs");
    let mut recipes: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    recipes.sort();
    for config in recipes {
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(
            text.contains("[data.augment]") && text.contains("preset = "),
            "{} does not say which augmentation preset it trains with",
            config.display()
        );
        let out = tempfile::tempdir().unwrap();
        let mut command = nas();
        command.args(["train", "-c"]).arg(&config);
        for s in [
            format!("run.out_dir={}", out.path().display()),
            format!("data.path={}", data.display()),
            "train.steps=3".to_string(),
            "train.progress=false".to_string(),
        ] {
            command.args(["--set", &s]);
        }
        let stdout = run_ok(&mut command);
        assert!(
            stdout.contains("waiting for data"),
            "{}: {stdout}",
            config.display()
        );
    }
}

#[test]
fn an_out_of_tree_plugin_crate_trains_through_the_cli() {
    // Built by scripts/test.sh from examples/third-party-sampler into target/third-party.
    let dir = repo_root().join("target/third-party/release");
    let lib = dir.join(format!(
        "liblargest_plus_random{}",
        std::env::consts::DLL_SUFFIX
    ));
    assert!(
        lib.is_file(),
        "{} is missing: build it with `cargo build --release --manifest-path examples/third-party-sampler/Cargo.toml --target-dir target/third-party` (scripts/test.sh does)",
        lib.display()
    );
    let listed = run_ok(nas().args(["plugins", "list", "--plugin-path"]).arg(&dir));
    assert!(listed.contains("largest-plus-random"), "{listed}");

    let out = tempfile::tempdir().unwrap();
    run_ok(
        nas()
            .arg("train")
            .arg("--plugin-path")
            .arg(&dir)
            .args(small_run_args(out.path(), "third-party"))
            .args([
                "--set",
                "train.steps=3",
                "--set",
                "sampler.name=largest-plus-random",
            ]),
    );
    let records =
        nas_host::run::metrics::read(&out.path().join("third-party/metrics.jsonl")).unwrap();
    assert_eq!(records.len(), 3);
    for record in &records {
        assert_eq!(record.paths.len(), 2, "largest + one random path per step");
        assert!(
            record.paths[0].arch.matches("nor_conv_3x3").count() == 6,
            "{}",
            record.paths[0].arch
        );
    }
}

/// An image folder (train/<class>/*.png, test/<class>/*.png) trains and evaluates like any other
/// dataset; its normalisation is computed from the training images and recorded.
#[test]
fn image_folder_dataset_trains_and_evaluates() {
    let root = tempfile::tempdir().unwrap();
    // Two classes told apart by brightness, 12x12 greyscale-ish RGB images of varied sizes.
    for (split, count) in [("train", 24u32), ("test", 8)] {
        for (class, base) in [("dark", 40u8), ("light", 200u8)] {
            let dir = root.path().join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..count {
                let size = 10 + i % 5;
                let image = image::RgbImage::from_fn(size, size, |x, y| {
                    let v = base.wrapping_add(((x * 7 + y * 3 + i) % 30) as u8);
                    image::Rgb([v, v, v])
                });
                image.save(dir.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    let out = tempfile::tempdir().unwrap();
    let sets = [
        format!("run.out_dir={}", out.path().display()),
        "run.name=folder".into(),
        "run.threads=1".into(),
        "data.dataset=image-folder".into(),
        format!("data.path={}", root.path().display()),
        "data.image_folder.size=12".into(),
        "space.config.channels=4".into(),
        "space.config.cells_per_stage=1".into(),
        "train.steps=4".into(),
        "train.batch_size=8".into(),
        "train.progress=false".into(),
    ];
    run_ok(
        nas()
            .arg("train")
            .args(sets.iter().flat_map(|s| ["--set".to_string(), s.clone()])),
    );
    let run = out.path().join("folder");
    let run_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    let data = &run_json["data"];
    assert_eq!(data["dataset"], "image-folder", "{run_json}");
    assert_eq!(data["train"], 48);
    assert_eq!(data["test"], 16);
    assert_eq!(data["mean"].as_array().unwrap().len(), 3);
    let stdout = run_ok(
        nas()
            .args(["eval", "--run"])
            .arg(&run)
            .args(["--arch", "[3,3,3,3,3,3]"]),
    );
    assert!(stdout.contains("results:"), "{stdout}");
}
