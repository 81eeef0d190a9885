//! The host's AdamW against PyTorch's `torch.optim.AdamW` on the same parameters and gradients.

use std::path::PathBuf;

use nas_host::config::{OptimSection, OptimizerKind};
use nas_host::train::optim::Optimizer;
use nas_tests::*;
use tch::{Kind, Tensor};

#[test]
fn adamw_matches_torch_optim_adamw() {
    let python = std::env::var("NAS_PEER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".venv/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh",
        python.display()
    );
    let initial = [1.0f32, -2.0, 0.5];
    let gradients = [
        [0.3f32, -1.2, 2.0],
        [-0.7, 0.1, 0.0],
        [1.5, 1.5, -0.2],
        [0.0, -0.3, 0.9],
        [2.2, 0.4, -1.1],
    ];
    let script = format!(
        "import json, torch\n\
         w = torch.tensor({initial:?}, requires_grad=True)\n\
         opt = torch.optim.AdamW([w], lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)\n\
         for g in {gradients:?}:\n\
         \x20   opt.zero_grad()\n\
         \x20   w.grad = torch.tensor(g)\n\
         \x20   opt.step()\n\
         print(json.dumps(w.detach().tolist()))\n"
    );
    let stdout = run_ok(std::process::Command::new(&python).args(["-c", &script]));
    let torch_result: Vec<f64> = serde_json::from_str(stdout.trim()).unwrap();

    let w = Tensor::from_slice(&initial).set_requires_grad(true);
    let config = OptimSection {
        optimizer: OptimizerKind::Adamw,
        lr: 0.01,
        weight_decay: 0.05,
        ..OptimSection::default()
    };
    let mut optimizer = Optimizer::new(vec![w.shallow_clone()], &config);
    for g in gradients {
        optimizer.zero_grad();
        (&w * Tensor::from_slice(&g)).sum(Kind::Float).backward();
        optimizer.step(&[0], 0, 0.01);
    }
    let ours = Vec::<f64>::try_from(w.to_kind(Kind::Double)).unwrap();
    for (a, b) in ours.iter().zip(&torch_result) {
        assert!(
            (a - b).abs() < 1e-6,
            "nas {ours:?} vs torch {torch_result:?}"
        );
    }
}
