//! The elastic CNN and ViT spaces through the CLI: training on Fashion-MNIST and on 224x224
//! input, and exported TorchScript modules checked from Python.

use std::path::{Path, PathBuf};

use nas_tests::*;

fn python() -> PathBuf {
    let python = std::env::var("NAS_PEER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".venv/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh (it creates the virtualenv with torch)",
        python.display()
    );
    python
}

fn fashion_mnist() -> PathBuf {
    let data = repo_root().join("data/fashion-mnist");
    assert!(
        data.join("train-images-idx3-ubyte.gz").is_file(),
        "{} is missing: run scripts/setup.sh",
        data.display()
    );
    data
}

fn set(pairs: &[String]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|p| ["--set".to_string(), p.clone()])
        .collect()
}

fn train(out: &Path, name: &str, space: &str, extra: &[String]) -> PathBuf {
    let mut pairs = vec![
        format!("run.out_dir={}", out.display()),
        format!("run.name={name}"),
        "run.threads=2".into(),
        "run.device=cpu".into(),
        format!("space.name={space}"),
        "sampler.name=uniform".into(),
        "train.progress=false".into(),
    ];
    pairs.extend_from_slice(extra);
    run_ok(nas().arg("train").args(set(&pairs)));
    out.join(name)
}

fn final_loss(run: &Path) -> f64 {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    last["loss"].as_f64().unwrap()
}

/// Both spaces' full presets (AttentiveNAS, AutoFormer-Tiny) train a few steps on 224x224 input.
#[test]
fn full_presets_train_on_224_pixel_input() {
    let out = tempfile::tempdir().unwrap();
    for space in ["cnn", "vit"] {
        let run = train(
            out.path(),
            space,
            space,
            &[
                "data.dataset=synthetic".into(),
                "data.synthetic_resolution=224".into(),
                "data.synthetic_channels=3".into(),
                "data.synthetic_train=16".into(),
                "data.synthetic_test=8".into(),
                "train.steps=2".into(),
                "train.batch_size=4".into(),
                "optim.lr=0.01".into(),
            ],
        );
        assert!(final_loss(&run).is_finite(), "{space}");
        let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
        assert!(config.contains(&format!("name = \"{space}\"")), "{config}");
    }
}

/// The small presets train on Fashion-MNIST; an exported subnet's TorchScript module, run by
/// PyTorch alone, gives `nas eval`'s logits (same recalibrated BN statistics) and its
/// safetensors file loads with the `safetensors` package.
#[test]
fn small_presets_train_on_fashion_mnist_and_export_modules_python_runs() {
    let data = fashion_mnist();
    let out = tempfile::tempdir().unwrap();
    let cases = [
        (
            "cnn",
            "attentivenas-small",
            r#"{"resolution":28,"width":[16,16,24,32,64,384],"depth":[2,2,3,2],"kernel":[5,3,5,3],"expand":[1,6,4,3]}"#,
        ),
        (
            "vit",
            "autoformer-mini",
            r#"{"embed_dim":64,"depth":4,"heads":[2,4,3,4],"mlp_ratio":[2,4,3,4]}"#,
        ),
    ];
    for (space, preset, arch) in cases {
        let run = train(
            out.path(),
            space,
            space,
            &[
                "data.dataset=fashion-mnist".into(),
                format!("data.path={}", data.display()),
                "data.holdout=256".into(),
                format!("space.config.preset=\"{preset}\""),
                "train.steps=40".into(),
                "train.batch_size=64".into(),
                "eval.bn=\"recalibrate\"".into(),
                "eval.calib_batches=4".into(),
            ],
        );
        let first: serde_json::Value = serde_json::from_str(
            std::fs::read_to_string(run.join("metrics.jsonl"))
                .unwrap()
                .lines()
                .next()
                .unwrap(),
        )
        .unwrap();
        let (start, end) = (first["loss"].as_f64().unwrap(), final_loss(&run));
        assert!(end < start, "{space}: loss went from {start} to {end}");

        let export = out.path().join(format!("{space}-export"));
        let stdout = run_ok(
            nas()
                .args(["export", "--run"])
                .arg(&run)
                .args(["--arch", arch, "--out"])
                .arg(&export),
        );
        assert!(stdout.contains("subnet.pt"), "{stdout}");
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(export.join("arch.json")).unwrap())
                .unwrap();
        assert_eq!(manifest["torchscript"]["traced_from"], "subnet");
        assert_eq!(manifest["bn"]["policy"], "recalibrate");

        let logits = out.path().join(format!("{space}-logits.safetensors"));
        run_ok(
            nas()
                .args(["eval", "--run"])
                .arg(&run)
                .args(["--arch", arch, "--split", "holdout", "--save-logits"])
                .arg(&logits),
        );
        let stdout = run_ok(
            std::process::Command::new(python())
                .arg(repo_root().join("bench/check_export.py"))
                .arg(&export)
                .arg("--against")
                .arg(&logits),
        );
        let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        println!("{space}: {report}");
        assert!(
            report["max_abs_diff_vs_nas_eval"].as_f64().unwrap() <= 1e-4,
            "{report}"
        );
        assert_eq!(report["nas_eval_examples"], 256);
        assert_eq!(report["shapes_match_manifest"], true);
        assert_eq!(
            report["parameters_in_safetensors"], manifest["params"],
            "the exported weights hold exactly the subnet's parameters"
        );
    }
}
