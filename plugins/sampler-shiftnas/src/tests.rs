use super::*;
use nas_sdk::{testing::FakeHost, Arch, Complexity, Component, Decision, KeepMask};

/// A small weight-entangled host: three nested decisions of 3 options (keep-masks), MACs
/// `1e6 * (10 + 2 c0 + 3 c1 + 5 c2)` in [10M, 30M]; `path_choice` adds an NB201-style decision.
fn fake_host(path_choice: bool) -> FakeHost {
    let mut list: Vec<Decision> = ["layer0.heads", "layer1.heads", "layer2.mlp"]
        .iter()
        .map(|name| Decision {
            name: (*name).into(),
            options: vec!["1".into(), "2".into(), "3".into()].into(),
            group: "layer".into(),
            kind: "heads".into(),
            keep_mask: abi_stable::std_types::ROption::RSome(KeepMask::nested(&[1, 2, 3], 3)),
        })
        .collect();
    if path_choice {
        list.push(Decision::choice(
            "edge_1<-0",
            "cell",
            "op",
            &["none", "skip_connect", "nor_conv_3x3"],
        ));
    }
    FakeHost::new(list)
        .with_seed(42)
        .with_steps(1000, 100)
        .with_complexity(|arch| {
            let c = arch.choices();
            let macs = 1_000_000 * (10 + 2 * c[0] as u64 + 3 * c[1] as u64 + 5 * c[2] as u64);
            Ok(Complexity {
                macs,
                params: macs / 100,
            })
        })
}

fn started(config: serde_json::Value) -> ShiftnasSampler {
    let mut sampler = ShiftnasSampler::from_config(&config.to_string()).unwrap();
    sampler.start(fake_host(false).context()).unwrap();
    sampler
}

fn step(step: u64) -> StepInfo {
    StepInfo {
        step,
        total_steps: 1000,
        epoch: step / 100,
        steps_per_epoch: 100,
    }
}

fn target_of(plan: &StepPlan) -> f64 {
    assert_eq!(plan.paths.len(), 1);
    match plan.paths[0].arch {
        PathArch::Generate { target } => target,
        ref other => panic!("expected a generated path, got {other:?}"),
    }
}

fn feedback(step: u64, probes: Vec<HeldoutProbe>) -> StepFeedback {
    StepFeedback {
        step,
        archs: vec![Arch::new(vec![0, 0, 0])].into(),
        losses: vec![1.0].into(),
        lr: 0.1,
        probes: probes.into(),
    }
}

/// A deterministic, target- and step-dependent answer to every probe of `plan` (what a host
/// would return), so B moves.
fn answer(step: u64, plan: &StepPlan) -> StepFeedback {
    let probes = plan
        .probes
        .iter()
        .map(|&target| {
            let x = target / 1e7;
            let s = step as f64;
            HeldoutProbe {
                target,
                loss_before: 2.0 - 0.001 * s,
                loss_after: 2.0 - 0.001 * s - 0.01 * (x - 1.5).powi(2) - 0.003 * (s % 7.0),
                grad_after: (x - 2.0) * 1e-8 + s * 1e-10,
                grad_before: (x - 1.0) * 1e-8,
            }
        })
        .collect();
    feedback(step, probes)
}

fn probe(target: f64, loss_after: f64, loss_before: f64, grads: (f64, f64)) -> HeldoutProbe {
    HeldoutProbe {
        target,
        loss_after,
        loss_before,
        grad_after: grads.0,
        grad_before: grads.1,
    }
}

/// Test a: with the per-bin estimator, the bin whose held-out loss falls fastest between the two
/// snapshots gains probability, every other bin loses some.
#[test]
fn per_bin_update_raises_the_bin_whose_loss_falls_fastest() {
    let mut sampler = started(serde_json::json!({
        "estimator": "per-bin", "bins": 5, "warmup_epochs": 0.0, "update_every": 10
    }));
    let plan = sampler.plan(&step(0)).unwrap();
    assert!(plan.keep_previous_weights);
    assert_eq!(plan.probes.as_slice(), sampler.bin_centres());
    let before = sampler.probabilities();
    let fastest = 3;
    let probes = plan
        .probes
        .iter()
        .enumerate()
        .map(|(k, &t)| {
            let drop = if k == fastest { 0.5 } else { 0.1 };
            probe(t, 2.0 - drop, 2.0, (0.0, 0.0))
        })
        .collect();
    sampler.observe(&feedback(0, probes)).unwrap();
    let after = sampler.probabilities();
    assert_eq!(sampler.updates(), 1);
    for k in 0..5 {
        if k == fastest {
            assert!(after[k] > before[k], "bin {k}: {before:?} -> {after:?}");
        } else {
            assert!(after[k] < before[k], "bin {k}: {before:?} -> {after:?}");
        }
    }
    assert!((after.iter().sum::<f64>() - 1.0).abs() < 1e-12);
}

/// Test b: with the generator estimator (Eq. 8 through dC~/dB), a held-out loss that falls faster
/// for larger targets (grad_after - grad_before < 0) raises the top bin; the opposite sign raises
/// the bottom bin. Checked at several update steps, whatever bin each drew.
#[test]
fn generator_estimator_follows_the_sign_of_the_target_gradient() {
    for update_step in [0u64, 3, 6, 9, 12] {
        for sign in [-1.0, 1.0] {
            let mut sampler = started(serde_json::json!({
                "bins": 6, "warmup_epochs": 0.0, "update_every": 3
            }));
            // Reach the update step with B untouched (no probes before it on these steps, and
            // earlier update steps answered with a zero gradient).
            for s in 0..update_step {
                let plan = sampler.plan(&step(s)).unwrap();
                let probes = plan
                    .probes
                    .iter()
                    .map(|&t| probe(t, 1.0, 1.0, (0.0, 0.0)))
                    .collect();
                sampler.observe(&feedback(s, probes)).unwrap();
            }
            let plan = sampler.plan(&step(update_step)).unwrap();
            assert!(plan.keep_previous_weights);
            assert_eq!(plan.probes.as_slice(), &[target_of(&plan)]);
            let before = sampler.probabilities();
            let target = plan.probes[0];
            let probes = vec![probe(
                target,
                1.0,
                1.1,
                (sign * 2e-9, sign * 1e-9 - sign * 2e-9),
            )];
            // grad_after - grad_before = sign * 3e-9.
            sampler.observe(&feedback(update_step, probes)).unwrap();
            let after = sampler.probabilities();
            let (risen, fallen) = if sign < 0.0 { (5, 0) } else { (0, 5) };
            assert!(
                after[risen] > before[risen] && after[fallen] < before[fallen],
                "step {update_step}, sign {sign}: {before:?} -> {after:?}"
            );
        }
    }
}

/// Test c: no probes, no kept weights and no change of B during the warm-up and between update
/// points; updates exactly at warmup, warmup + P, ...
#[test]
fn no_updates_during_warmup_or_between_update_points() {
    let mut sampler = started(serde_json::json!({
        "estimator": "per-bin", "bins": 4, "warmup_epochs": 0.25, "update_every": 7
    }));
    assert_eq!(sampler.warmup_steps(), 25);
    let mut updated = Vec::new();
    for s in 0..60 {
        let plan = sampler.plan(&step(s)).unwrap();
        let logits = sampler.logits().to_vec();
        let fb = answer(s, &plan);
        if plan.probes.is_empty() {
            assert!(!plan.keep_previous_weights, "step {s}");
            // Even a host that answered with junk probes would be refused; with none, B stays.
            sampler.observe(&fb).unwrap();
            assert_eq!(sampler.logits(), logits.as_slice(), "B moved at step {s}");
        } else {
            assert!(plan.keep_previous_weights, "step {s}");
            sampler.observe(&fb).unwrap();
            assert_ne!(
                sampler.logits(),
                logits.as_slice(),
                "B did not move at step {s}"
            );
            updated.push(s);
        }
    }
    assert_eq!(updated, vec![25, 32, 39, 46, 53]);
    assert_eq!(sampler.updates(), 5);
}

/// Test c, the other way round: probes where none were asked for are refused.
#[test]
fn observe_refuses_probes_nobody_asked_for() {
    let mut sampler = started(serde_json::json!({"warmup_epochs": 1.0}));
    let plan = sampler.plan(&step(3)).unwrap();
    assert!(plan.probes.is_empty());
    let err = sampler
        .observe(&feedback(3, vec![probe(1e7, 1.0, 1.0, (0.0, 0.0))]))
        .unwrap_err();
    assert!(
        err.message.contains("returned 1 probes for 0 requested"),
        "{err}"
    );
}

/// Test d: targets are bin centres in [min, max], depend only on the seed and step, and with
/// uniform B their histogram is uniform (chi-square).
#[test]
fn targets_are_bin_centres_deterministic_and_uniform_under_uniform_b() {
    let mut a = started(serde_json::json!({"bins": 10}));
    let mut b = started(serde_json::json!({"bins": 10}));
    let (min, max) = a.range();
    assert_eq!((min, max), (10e6, 30e6));
    let centres = a.bin_centres().to_vec();
    assert_eq!(centres.len(), 10);
    assert!((centres[0] - 11e6).abs() < 1e-6 && (centres[9] - 29e6).abs() < 1e-6);
    let draws = 20_000u64;
    let mut counts = [0u64; 10];
    let mut sequence = Vec::new();
    for s in 0..draws {
        let target = target_of(&a.plan(&step(s)).unwrap());
        assert!((min..=max).contains(&target));
        let bin = centres
            .iter()
            .position(|&c| c == target)
            .unwrap_or_else(|| panic!("target {target} is not a bin centre"));
        counts[bin] += 1;
        if s < 100 {
            sequence.push(target);
        }
    }
    // Out of order, a fresh sampler plans the same target for the same step.
    assert_eq!(target_of(&b.plan(&step(57)).unwrap()), sequence[57]);
    assert_ne!(sequence[..20], sequence[20..40]);
    let expected = draws as f64 / 10.0;
    let chi2: f64 = counts
        .iter()
        .map(|&n| (n as f64 - expected).powi(2) / expected)
        .sum();
    // 9 degrees of freedom, p = 0.001.
    assert!(chi2 < 27.877, "chi2 = {chi2:.2}, counts {counts:?}");
    // Another seed draws other targets.
    let other = ShiftnasSampler::from_config(r#"{"bins": 10}"#).unwrap();
    let mut other = ShiftnasSampler { seed: 7, ..other };
    other.started = true;
    other.centres = centres.clone();
    other.logits = vec![0.0; 10];
    let others: Vec<f64> = (0..100).map(|s| other.target(s)).collect();
    assert_ne!(others, sequence);
}

/// `bin_width` sets K = ceil(range / width), the last bin cut at max; the paper's 0.1 GFLOPs.
#[test]
fn bin_width_sets_the_bins() {
    let sampler = started(serde_json::json!({"bin_width": 3e6}));
    // (30M - 10M) / 3M = 6.67 -> 7 bins; the last is [28M, 30M], centre 29M.
    let centres = sampler.bin_centres();
    assert_eq!(centres.len(), 7);
    assert!((centres[0] - 11.5e6).abs() < 1e-6);
    assert!((centres[6] - 29e6).abs() < 1e-6);
    assert_eq!(sampler.bin_labels()[0], "11.5M");
    let exact = started(serde_json::json!({"bin_width": 5e6}));
    assert_eq!(exact.bin_centres().len(), 4);
    let one = started(serde_json::json!({"bin_width": 1e9}));
    assert_eq!(one.bin_centres().len(), 1);
    assert!((one.bin_centres()[0] - 20e6).abs() < 1e-6);
    let err = ShiftnasSampler::from_config(r#"{"bin_width": 1}"#)
        .unwrap()
        .start(fake_host(false).context())
        .unwrap_err();
    assert!(err.message.contains("bin_width"), "{err}");
}

/// Warm-up from epochs (the paper's default 50) or from a fraction of the run.
#[test]
fn warmup_steps_follow_epochs_or_fraction() {
    // Default: 50 epochs of 100 steps.
    assert_eq!(started(serde_json::json!({})).warmup_steps(), 5000);
    assert_eq!(
        started(serde_json::json!({"warmup_epochs": 0.505})).warmup_steps(),
        51
    );
    // A fraction alone replaces the default epochs: 0.1 * 1000.
    assert_eq!(
        started(serde_json::json!({"warmup_fraction": 0.1})).warmup_steps(),
        100
    );
    assert_eq!(
        started(serde_json::json!({"warmup_fraction": 0.0333})).warmup_steps(),
        34
    );
    assert_eq!(
        started(serde_json::json!({"warmup_epochs": null})).warmup_steps(),
        0
    );
}

/// The report: on the first plan and on the plan after each update, with K labels and
/// probabilities; empty otherwise.
#[test]
fn the_distribution_is_reported_after_start_and_after_each_update() {
    let mut sampler = started(serde_json::json!({
        "estimator": "per-bin", "bins": 4, "warmup_epochs": 0.05, "update_every": 4
    }));
    let mut reported = Vec::new();
    for s in 0..16 {
        let plan = sampler.plan(&step(s)).unwrap();
        if !plan.report.is_empty() {
            let value: serde_json::Value = serde_json::from_str(plan.report.as_str()).unwrap();
            let distribution = &value["distribution"];
            let labels = distribution["labels"].as_array().unwrap();
            let probabilities: Vec<f64> = distribution["probabilities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_f64().unwrap())
                .collect();
            assert_eq!(labels.len(), 4);
            // The report's text is shortest round-trip, but this workspace's serde_json parses
            // floats approximately: equal to the last ulp or so.
            for (reported, exact) in probabilities.iter().zip(sampler.probabilities()) {
                assert!((reported - exact).abs() <= 1e-15, "{reported} vs {exact}");
            }
            assert_eq!(distribution["updates"].as_u64(), Some(sampler.updates()));
            assert_eq!(distribution["centres"].as_array().unwrap().len(), 4);
            assert_eq!(labels[0].as_str(), Some("12.5M"));
            reported.push(s);
        }
        sampler.observe(&answer(s, &plan)).unwrap();
    }
    // Updates at 5, 9, 13.
    assert_eq!(reported, vec![0, 6, 10, 14]);
}

fn run(sampler: &mut ShiftnasSampler, steps: std::ops::Range<u64>) -> Vec<(StepPlan, Vec<f64>)> {
    steps
        .map(|s| {
            let plan = sampler.plan(&step(s)).unwrap();
            sampler.observe(&answer(s, &plan)).unwrap();
            (plan, sampler.probabilities())
        })
        .collect()
}

/// Test e: save after some updates, load into a fresh sampler, continue: the same plans (targets,
/// probes, reports) and bit-identical probabilities as the uninterrupted run, for both
/// estimators.
#[test]
fn state_round_trip_resumes_exactly() {
    for estimator in ["generator", "per-bin"] {
        let config = serde_json::json!({
            "estimator": estimator, "bins": 5, "warmup_epochs": 0.05, "update_every": 3,
            "lr": 0.05
        });
        let mut straight = started(config.clone());
        let all = run(&mut straight, 0..40);

        let mut first = started(config.clone());
        let head = run(&mut first, 0..17);
        assert!(first.updates() >= 4);
        let state = first.save_state().unwrap();
        let mut resumed = started(config.clone());
        resumed.load_state(&state).unwrap();
        let tail = run(&mut resumed, 17..40);
        let split: Vec<_> = head.into_iter().chain(tail).collect();
        for (s, ((a, pa), (b, pb))) in all.iter().zip(&split).enumerate() {
            assert_eq!(a, b, "{estimator}: plan of step {s}");
            assert_eq!(
                pa.iter().map(|p| p.to_bits()).collect::<Vec<_>>(),
                pb.iter().map(|p| p.to_bits()).collect::<Vec<_>>(),
                "{estimator}: probabilities after step {s}"
            );
        }
        assert_eq!(
            straight.save_state().unwrap(),
            resumed.save_state().unwrap()
        );
        // B moved away from uniform.
        let p = straight.probabilities();
        assert!(
            p.iter().any(|&x| (x - 0.2).abs() > 1e-3),
            "{estimator}: {p:?}"
        );
    }
}

/// A checkpoint of another bin count is refused.
#[test]
fn load_state_checks_the_bin_count() {
    let five = started(serde_json::json!({"bins": 5}));
    let mut four = started(serde_json::json!({"bins": 4}));
    let err = four.load_state(&five.save_state().unwrap()).unwrap_err();
    assert!(err.message.contains("5 bins"), "{err}");
}

/// Test f (space): a path-choice decision is refused at start, naming it and the reason.
#[test]
fn path_choice_space_is_refused_naming_the_decision() {
    let mut sampler = ShiftnasSampler::from_config("{}").unwrap();
    let err = sampler.start(fake_host(true).context()).unwrap_err();
    assert_eq!(err.kind, nas_sdk::ErrorKind::Unsupported);
    for part in [
        "weight-entangled",
        "`edge_1<-0`",
        "path choice",
        "keep-mask",
    ] {
        assert!(err.message.contains(part), "{part}: {err}");
    }
}

/// Test f (config): every bad value names its field.
#[test]
fn bad_configs_name_the_field() {
    for (config, field) in [
        (
            r#"{"warmup_epochs": 10, "warmup_fraction": 0.1}"#,
            "warmup_fraction",
        ),
        (
            r#"{"warmup_epochs": 10, "warmup_fraction": 0.1}"#,
            "warmup_epochs",
        ),
        (r#"{"bins": 0}"#, "bins"),
        (r#"{"estimator": "sideways"}"#, "sideways"),
        (r#"{"bin_width": 0}"#, "bin_width"),
        (r#"{"bin_width": -1e8}"#, "bin_width"),
        (r#"{"tau": 0}"#, "tau"),
        (r#"{"lr": -0.1}"#, "lr"),
        (r#"{"betas": [0.9, 1.0]}"#, "betas"),
        (r#"{"eps": 0}"#, "eps"),
        (r#"{"warmup_epochs": -1}"#, "warmup_epochs"),
        (r#"{"warmup_fraction": 1.5}"#, "warmup_fraction"),
        (r#"{"update_every": 0}"#, "update_every"),
        (r#"{"label_smoothing": 1.0}"#, "label_smoothing"),
        (r#"{"metric": "flops"}"#, "flops"),
        (r#"{"bogus": 1}"#, "bogus"),
    ] {
        let err = ShiftnasSampler::from_config(config).err().unwrap();
        assert_eq!(err.kind, nas_sdk::ErrorKind::Config, "{config}");
        assert!(err.message.contains(field), "{config}: {err}");
    }
    // The defaults are what `{}` gives.
    let default: ShiftnasConfig =
        serde_json::from_value(ShiftnasSampler::default_config()).unwrap();
    assert_eq!(default, ShiftnasSampler::from_config("{}").unwrap().config);
}

/// Test g: an update step whose feedback lacks the requested probes is an error, and B stays.
#[test]
fn observe_errors_when_probes_are_missing() {
    for (estimator, requested) in [("generator", 1), ("per-bin", 6)] {
        let mut sampler = started(serde_json::json!({
            "estimator": estimator, "bins": 6, "warmup_epochs": 0.0
        }));
        let plan = sampler.plan(&step(0)).unwrap();
        assert_eq!(plan.probes.len(), requested);
        let err = sampler.observe(&feedback(0, vec![])).unwrap_err();
        assert!(
            err.message.contains(&format!(
                "the host returned 0 probes for {requested} requested"
            )),
            "{err}"
        );
        assert_eq!(sampler.updates(), 0);
        assert!(sampler.logits().iter().all(|&b| b == 0.0));
    }
}

/// Before `start`, every method says so instead of panicking.
#[test]
fn methods_before_start_are_errors() {
    let mut sampler = ShiftnasSampler::from_config("{}").unwrap();
    assert!(sampler.plan(&step(0)).is_err());
    assert!(sampler.save_state().is_err());
}
