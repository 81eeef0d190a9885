//! Acceptance: one epoch of the NB201 supernet on Fashion-MNIST (C=16, N=1, batch 64, uniform
//! sampling, SGD lr 0.05 cosine, Nesterov, wd 5e-4, no augmentation), then the all-nor_conv_3x3
//! arch evaluated with batch-statistics BN: >= 70% test accuracy and not more than 1 point below
//! the PyTorch peer (xautodl's official model, bench/peer_nb201_train.py) trained the same way.

use nas_tests::*;

const ALL_3X3: &str =
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|";

#[test]
fn one_epoch_on_fashion_mnist_matches_the_pytorch_peer() {
    let data = repo_root().join("data/fashion-mnist");
    assert!(
        data.join("train-images-idx3-ubyte.gz").exists(),
        "{} is missing: run scripts/setup.sh",
        data.display()
    );
    let python = std::env::var("NAS_PEER_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".venv/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run scripts/test.sh (it installs the peer)",
        python.display()
    );

    let out = tempfile::tempdir().unwrap();
    let sets = [
        format!("run.out_dir={}", out.path().display()),
        "run.name=fmnist".into(),
        "run.seed=0".into(),
        "run.threads=2".into(),
        "run.device=cpu".into(),
        format!("data.path={}", data.display()),
        "space.config.channels=16".into(),
        "space.config.cells_per_stage=1".into(),
        "train.batch_size=64".into(),
        "train.epochs=1".into(),
        "train.progress=false".into(),
        "optim.lr=0.05".into(),
        "optim.schedule=cosine".into(),
        "optim.nesterov=true".into(),
        "optim.momentum=0.9".into(),
        "optim.weight_decay=0.0005".into(),
    ];
    let mut command = nas();
    command.arg("train");
    for s in &sets {
        command.args(["--set", s]);
    }
    run_ok(&mut command);
    let run_dir = out.path().join("fmnist");
    run_ok(nas().args(["eval", "--run"]).arg(&run_dir).args([
        "--arch",
        ALL_3X3,
        "--bn",
        "batch-stats",
    ]));
    let eval_file = std::fs::read_dir(run_dir.join("eval"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let records: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(eval_file).unwrap()).unwrap();
    let ours = records[0]["result"]["accuracy"].as_f64().unwrap();
    assert_eq!(records[0]["result"]["bn"]["policy"], "batch-stats");

    let peer_out = run_ok(
        std::process::Command::new(&python)
            .arg(repo_root().join("bench/peer_nb201_train.py"))
            .args(["--data"])
            .arg(&data)
            .args(["--seed", "0", "--threads", "2"]),
    );
    let peer: serde_json::Value = serde_json::from_str(peer_out.lines().last().unwrap()).unwrap();
    let peer_accuracy = peer["accuracy"].as_f64().unwrap();
    eprintln!("all-nor_conv_3x3 test accuracy after 1 epoch: nas {ours:.2}%, PyTorch peer {peer_accuracy:.2}%");
    assert!(ours >= 70.0, "nas reached {ours:.2}% (< 70%)");
    assert!(
        ours >= peer_accuracy - 1.0,
        "nas {ours:.2}% is more than 1 point below the peer's {peer_accuracy:.2}%"
    );
}
