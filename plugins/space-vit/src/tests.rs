use super::*;
use rand::{Rng, SeedableRng};

fn space(config: &str) -> VitSpace {
    VitSpace::from_config(config).expect("valid config")
}

fn built(config: &str) -> VitSpace {
    tch::manual_seed(0);
    let mut s = space(config);
    s.build(Device::Cpu).unwrap();
    s
}

fn random_arch(space: &VitSpace, rng: &mut impl Rng) -> Arch {
    Arch::new(
        space
            .decisions()
            .iter()
            .map(|d| rng.gen_range(0..d.options.len() as u32))
            .collect(),
    )
}

/// DeiT-Ti and DeiT-S (224, patch 16, 1000 classes): exact parameters (timm's count) and MACs
/// (patch conv, q/k/v, projection, MLP, `q k^T`, `a v`, head on the class token) from
/// `../shared/data/complexity-reference/complexity_reference.json`.
#[test]
fn deit_matches_reference_figures() {
    for (preset, macs, params) in [
        ("deit-tiny", 1_253_683_200u64, 5_717_416u64),
        ("deit-small", 4_598_882_304, 22_050_664),
    ] {
        let s = space(&format!(r#"{{"preset": "{preset}"}}"#));
        assert!(s.decisions().is_empty());
        let c = s.complexity(&Arch::new(vec![])).unwrap();
        assert_eq!((c.macs, c.params), (macs, params), "{preset}");
    }
}

/// AutoFormer-S and AutoFormer-B, the released subnet configs (`experiments/subnet/*.yaml` of
/// the official code), reproduce the published 22.9M and 53.7M parameters with relative
/// positions on; without them they would read 22.8M and 53.6M.
#[test]
fn autoformer_small_and_base_match_published_parameters() {
    let small = (
        "autoformer-small",
        r#"{"embed_dim": 384, "depth": 13, "heads": [6, 6, 5, 7, 5, 5, 5, 6, 6, 7, 7, 6, 7],
            "mlp_ratio": [3.0, 3.5, 3.0, 3.5, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 3.5, 4.0]}"#,
        22_891_432u64,
        "22.9",
    );
    let base = (
        "autoformer-base",
        r#"{"embed_dim": 576, "depth": 14, "heads": [9, 9, 9, 9, 9, 10, 9, 9, 10, 9, 10, 9, 9, 10],
            "mlp_ratio": [3.5, 3.5, 4.0, 3.5, 4.0, 3.5, 3.5, 3.0, 4.0, 4.0, 3.0, 4.0, 3.0, 3.5]}"#,
        53_691_688,
        "53.7",
    );
    for (preset, arch, params, published) in [small, base] {
        let s = space(&format!(r#"{{"preset": "{preset}"}}"#));
        let arch = s.arch_from_text(arch).unwrap();
        let c = s.complexity(&arch).unwrap();
        assert_eq!(c.params, params, "{preset}");
        assert_eq!(
            format!("{:.1}", c.params as f64 / 1e6),
            published,
            "{preset}"
        );
        let without = space(&format!(
            r#"{{"preset": "{preset}", "relative_position": false}}"#
        ));
        let c = without.complexity(&arch).unwrap();
        assert_ne!(
            format!("{:.1}", c.params as f64 / 1e6),
            published,
            "{preset}"
        );
    }
}

/// DeiT built from the elastic layers has exactly timm's tensors (names and shapes).
#[test]
fn deit_tiny_has_timms_tensors() {
    let mut s = space(r#"{"preset": "deit-tiny"}"#);
    s.build(Device::Cpu).unwrap();
    let params = s.parameters();
    let count: i64 = params.iter().map(|(_, t)| t.numel() as i64).sum();
    assert_eq!(count, 5_717_416);
    let shape = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .1
            .size()
    };
    assert_eq!(shape("patch_embed.proj.weight"), [192, 3, 16, 16]);
    assert_eq!(shape("pos_embed"), [1, 197, 192]);
    assert_eq!(shape("blocks.11.attn.qkv.weight"), [576, 192]);
    assert_eq!(shape("blocks.0.mlp.fc1.weight"), [768, 192]);
    assert_eq!(shape("head.weight"), [1000, 192]);
}

#[test]
fn decisions_of_the_autoformer_spaces() {
    for (preset, layers) in [
        ("autoformer-tiny", 14),
        ("autoformer-small", 14),
        ("autoformer-base", 16),
    ] {
        let s = space(&format!(r#"{{"preset": "{preset}"}}"#));
        let decisions = s.decisions();
        assert_eq!(decisions.len(), 2 + 2 * layers, "{preset}");
        let kinds: std::collections::BTreeSet<String> =
            decisions.iter().map(|d| d.kind.to_string()).collect();
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            ["depth", "embed_dim", "heads", "mlp_ratio"]
        );
    }
}

#[test]
fn configs_are_checked() {
    for (config, needle) in [
        (r#"{"preset": "swin"}"#, "unknown preset `swin`"),
        (r#"{"resolution": 28}"#, "not a multiple of `patch_size`"),
        (r#"{"heads": [4, 3]}"#, "strictly ascending"),
        (
            r#"{"layers": [{"heads": [3], "mlp_ratio": [4.0]}]}"#,
            "one per layer",
        ),
    ] {
        let err = VitSpace::from_config(config).err().expect("rejected");
        assert!(err.message.contains(needle), "{config}: {}", err.message);
    }
}

const MINI: &str = r#"{"preset": "autoformer-mini"}"#;
const MINI_ABSOLUTE: &str = r#"{"preset": "autoformer-mini", "relative_position": false, "resolution": 32, "input_channels": 3}"#;

/// The exported tensors are exactly the subnet space's, and that space computes the supernet's
/// logits.
#[test]
fn exported_subnet_equals_the_supernet_slice() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for config in [MINI, MINI_ABSOLUTE] {
        let supernet = built(config);
        for _ in 0..4 {
            let arch = random_arch(&supernet, &mut rng);
            let exported = supernet.export_subnet(&arch).unwrap();
            let mut subnet = space(&supernet.subnet_config(&arch).unwrap());
            assert!(subnet.decisions().is_empty());
            subnet.build(Device::Cpu).unwrap();
            let mut expected: Vec<(String, Vec<i64>)> = subnet
                .parameters()
                .into_iter()
                .map(|(n, t)| (n, t.size()))
                .collect();
            let mut got: Vec<(String, Vec<i64>)> = exported
                .iter()
                .map(|(n, t)| (n.clone(), t.size()))
                .collect();
            expected.sort();
            got.sort();
            assert_eq!(got, expected, "arch {arch:?}");
            let c = supernet.complexity(&arch).unwrap();
            assert_eq!(subnet.complexity(&Arch::new(vec![])).unwrap(), c);
            let count: i64 = subnet
                .parameters()
                .iter()
                .map(|(_, t)| t.numel() as i64)
                .sum();
            assert_eq!(count as u64, c.params, "parameters of the built subnet");
            tch::no_grad(|| {
                let targets: std::collections::HashMap<String, Tensor> =
                    subnet.parameters().into_iter().collect();
                for (name, tensor) in &exported {
                    targets[name].shallow_clone().copy_(tensor);
                }
            });
            let r = supernet.config.resolution;
            let x = Tensor::randn(
                [3, supernet.config.input_channels, r, r],
                (Kind::Float, Device::Cpu),
            );
            let a = supernet
                .forward(&x, &arch, None, &ForwardOptions::EVAL)
                .unwrap();
            let b = subnet
                .forward(&x, &Arch::new(vec![]), None, &ForwardOptions::EVAL)
                .unwrap();
            let diff = (a - b).abs().max().double_value(&[]);
            assert!(diff <= 1e-5, "logits differ by {diff} for {arch:?}");
        }
    }
}

/// One-hot policies mapped through the keep-masks change nothing, and every decision kind's
/// gate gets a finite, non-zero gradient.
#[test]
fn gates_pass_gradients_and_change_nothing() {
    let s = built(MINI);
    let decisions = s.decisions();
    let arch = Arch::new(
        decisions
            .iter()
            .map(|d| d.options.len() as u32 - 1)
            .collect(),
    );
    let gates: Vec<Tensor> = decisions
        .iter()
        .zip(arch.choices())
        .map(|(d, &j)| {
            let mask = d.keep_mask.as_ref().into_option().expect("entangled");
            let values: Vec<f32> = (0..mask.units).map(|u| mask.get(u, j)).collect();
            Tensor::from_slice(&values).set_requires_grad(true)
        })
        .collect();
    let x = Tensor::randn([4, 1, 28, 28], (Kind::Float, Device::Cpu));
    let plain = s.forward(&x, &arch, None, &ForwardOptions::TRAIN).unwrap();
    let gated = s
        .forward(&x, &arch, Some(&gates), &ForwardOptions::TRAIN)
        .unwrap();
    assert!((&plain - &gated).abs().max().double_value(&[]) < 1e-6);
    gated
        .cross_entropy_for_logits(&Tensor::from_slice(&[0i64, 1, 2, 3]))
        .backward();
    for (d, gate) in decisions.iter().zip(&gates) {
        let norm = gate.grad().abs().sum(Kind::Float).double_value(&[]);
        assert!(
            norm.is_finite() && norm > 0.0,
            "no gradient for `{}`",
            d.name
        );
    }
}

#[test]
fn active_parameters_are_exactly_the_used_ones() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let s = built(MINI);
    for _ in 0..3 {
        let arch = random_arch(&s, &mut rng);
        let params = s.parameters();
        for (_, p) in &params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        let x = Tensor::randn([2, 1, 28, 28], (Kind::Float, Device::Cpu));
        s.forward(&x, &arch, None, &ForwardOptions::TRAIN)
            .unwrap()
            .sum(Kind::Float)
            .backward();
        let active: std::collections::HashSet<usize> =
            s.active_parameters(&arch).unwrap().into_iter().collect();
        for (i, (name, p)) in params.iter().enumerate() {
            let g = p.grad();
            let touched = g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0;
            if active.contains(&i) {
                assert!(g.defined(), "{name} is active but unused");
            } else {
                assert!(!touched, "{name} is inactive but got a gradient");
            }
        }
    }
}

#[test]
fn text_form_round_trips_and_cost_table_error_is_small() {
    let s = space("{}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for _ in 0..20 {
        let arch = random_arch(&s, &mut rng);
        let text = s.arch_to_text(&arch).unwrap();
        let back = s.arch_from_text(&text).unwrap();
        // Inactive layers' choices are not part of the text form.
        assert_eq!(s.arch_to_text(&back).unwrap(), text);
        assert_eq!(s.complexity(&back).unwrap(), s.complexity(&arch).unwrap());
    }
    for metric in [Metric::Macs, Metric::Params] {
        let table = s.cost_table(metric).unwrap();
        let (mut mean, mut max) = (0.0f64, 0.0f64);
        for _ in 0..500 {
            let arch = random_arch(&s, &mut rng);
            let exact = metric.of(&s.complexity(&arch).unwrap()) as f64;
            let model = table.estimate(&arch);
            let relative = ((model - exact) / exact).abs();
            mean += relative / 500.0;
            max = max.max(relative);
        }
        println!("cost table autoformer-tiny {metric:?}: held-out mean {mean:.4} max {max:.4}");
        assert!(mean < 0.05, "{metric:?}: mean relative error {mean}");
    }
}
