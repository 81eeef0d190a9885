//! Acceptance: with the inactive-parameter rule on (the default), parameters the step's subnet
//! does not use keep their weights and momentum buffers; with it off they decay.

use std::{cell::RefCell, collections::BTreeMap, path::Path, rc::Rc};

use nas_host::{
    config::ComponentSection,
    plugins::{PluginCatalog, Space},
};
use nas_tests::*;

const STEP0: &str = "[3,3,3,3,3,3]";
// node 1 = conv1x1(x); node 3 = skip(x) + conv3x3(node 1); edges into node 2 are `none`, so node
// 2 is dead and edge 3<-2 is unused.
const STEP1: [u32; 6] = [2, 0, 0, 1, 3, 0];

/// The small NB201 space of `small_run_args`, built from the plugin beside `nas`.
fn small_space() -> Space {
    let catalog = Rc::new(RefCell::new(PluginCatalog::discover(vec![artifacts_dir()])));
    let mut section = ComponentSection {
        name: "nb201".into(),
        ..Default::default()
    };
    section.config.insert("channels".into(), 4.into());
    section.config.insert("cells_per_stage".into(), 1.into());
    let mut space = Space::create(&catalog, &section, Some((3, 16, 10))).unwrap();
    space.build(tch::Device::Cpu).unwrap();
    space
}

/// Names of the parameters `arch` uses, from the space plugin itself.
fn active_names(arch: &[u32]) -> Vec<String> {
    let space = small_space();
    let params = space.parameters().unwrap();
    let arch = nas_sdk::Arch::new(arch.to_vec());
    let active = space.active_parameters(&arch).unwrap();
    active.into_iter().map(|i| params[i].0.clone()).collect()
}

fn train_two_steps(
    out: &Path,
    rule: &str,
) -> (
    BTreeMap<String, tch::Tensor>,
    BTreeMap<String, tch::Tensor>,
    Vec<String>,
) {
    let lib = fixture("fixture_scripted");
    let mut command = nas();
    command
        .arg("train")
        .args(small_run_args(out, rule))
        .args([
            "--set",
            "train.steps=2",
            "--set",
            "train.checkpoint_every=1",
            "--set",
            "train.keep_checkpoints=3",
        ])
        .args(["--set", &format!("optim.inactive={rule}")])
        .args(["--set", &format!("sampler.name={}:scripted", lib.display())])
        .args([
            "--set",
            &format!("sampler.config.archs=[{STEP0},{:?}]", STEP1),
        ]);
    run_ok(&mut command);
    let run_dir = out.join(rule);
    let before = read_tensors(&run_dir.join("checkpoints/step-00000001/weights.safetensors"));
    let after = read_tensors(&run_dir.join("checkpoints/step-00000002/weights.safetensors"));
    // Parameter index -> name (momentum buffers are saved by index).
    let names = small_space()
        .parameters()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    (before, after, names)
}

#[test]
fn excluded_inactive_parameters_keep_weights_and_momentum() {
    let out = tempfile::tempdir().unwrap();
    let (before, after, names) = train_two_steps(out.path(), "exclude");
    let active = active_names(&STEP1);
    assert!(
        active.iter().any(|n| n.contains("edges.1<-0.2")),
        "conv1x1 on 1<-0 is used: {active:?}"
    );
    assert!(
        !active.iter().any(|n| n.contains("edges.3<-2")),
        "edge 3<-2 is unused"
    );
    let mut inactive_with_momentum = 0;
    for (index, name) in names.iter().enumerate() {
        let key = format!("param.{name}");
        let momentum = format!("momentum.0.{index}");
        if active.contains(name) {
            assert!(
                !before[&key].equal(&after[&key]),
                "active {name} did not move"
            );
        } else {
            assert!(before[&key].equal(&after[&key]), "inactive {name} moved");
            if let Some(buffer) = before.get(&momentum) {
                inactive_with_momentum += 1;
                assert!(
                    buffer.equal(&after[&momentum]),
                    "momentum of inactive {name} changed"
                );
            }
        }
    }
    assert!(
        inactive_with_momentum > 0,
        "step 0 should have given some step-1-inactive parameters momentum"
    );
}

#[test]
fn included_inactive_parameters_decay() {
    let out = tempfile::tempdir().unwrap();
    let (before, after, names) = train_two_steps(out.path(), "include");
    let active = active_names(&STEP1);
    let moved = names
        .iter()
        .filter(|n| !active.contains(n))
        .filter(|n| !before[&format!("param.{n}")].equal(&after[&format!("param.{n}")]))
        .count();
    assert!(
        moved > 0,
        "with the rule off, weight decay and momentum move unused parameters"
    );
}
