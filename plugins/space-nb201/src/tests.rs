use super::*;
use nas_sdk::Component;
use rand::{Rng, SeedableRng};

fn space(config: serde_json::Value) -> Nb201Space {
    Nb201Space::from_config(&config.to_string()).expect("valid config")
}

/// Official records of NATS-Bench tss archs 0, 11 and 284 (`../shared/data/nas-bench-201/
/// nats_tss_official_records_0_11_284.json`): (arch string, dataset, classes, resolution,
/// MFLOPs, Mparams).
const OFFICIAL: &[(&str, &str, i64, i64, f64, f64)] = &[
    ("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|", "cifar10", 10, 32, 15.64737, 0.129306),
    ("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|", "cifar100", 100, 32, 15.65322, 0.135156),
    ("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|", "ImageNet16-120", 120, 16, 3.91948, 0.136456),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|", "cifar10", 10, 32, 113.95137, 0.802426),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|", "cifar100", 100, 32, 113.95722, 0.808276),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|", "ImageNet16-120", 120, 16, 28.49548, 0.809576),
    ("|skip_connect~0|+|skip_connect~0|skip_connect~1|+|none~0|nor_conv_1x1~1|none~2|", "cifar10", 10, 32, 11.71521, 0.101306),
    ("|skip_connect~0|+|skip_connect~0|skip_connect~1|+|none~0|nor_conv_1x1~1|none~2|", "cifar100", 100, 32, 11.72106, 0.107156),
    ("|skip_connect~0|+|skip_connect~0|skip_connect~1|+|none~0|nor_conv_1x1~1|none~2|", "ImageNet16-120", 120, 16, 2.93644, 0.108456),
];

#[test]
fn complexity_matches_official_records() {
    for &(arch_str, dataset, classes, resolution, mflops, mparams) in OFFICIAL {
        let space = space(serde_json::json!({"num_classes": classes, "resolution": resolution}));
        let arch = space.arch_from_text(arch_str).unwrap();
        let c = space.complexity(&arch).unwrap();
        let got_mflops = c.macs as f64 / 1e6;
        let got_mparams = c.params as f64 / 1e6;
        assert!(
            (got_mflops - mflops).abs() < 1e-5,
            "{dataset} {arch_str}: {got_mflops} MFLOPs, official {mflops}"
        );
        assert!(
            (got_mparams - mparams).abs() < 1e-5,
            "{dataset} {arch_str}: {got_mparams} Mparams, official {mparams}"
        );
    }
}

#[test]
fn complexity_matches_closed_form_for_random_archs() {
    // CIFAR-10 closed form from the benchmark: FLOPs (M) = 7.78305 + 35.38944 n3 + 3.93216 n1,
    // params (M) = 0.073306 + 0.243040 n3 + 0.028000 n1.
    let space = space(serde_json::json!({}));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(201);
    for _ in 0..500 {
        let arch = Arch::new((0..6).map(|_| rng.gen_range(0..5)).collect());
        let n1 = arch.choices().iter().filter(|&&c| c == CONV1).count() as f64;
        let n3 = arch.choices().iter().filter(|&&c| c == CONV3).count() as f64;
        let c = space.complexity(&arch).unwrap();
        let flops = 7.78305 + 35.38944 * n3 + 3.93216 * n1;
        let params = 0.073306 + 0.243040 * n3 + 0.028000 * n1;
        assert!((c.macs as f64 / 1e6 - flops).abs() < 1e-9, "{arch:?}");
        assert!((c.params as f64 / 1e6 - params).abs() < 1e-9, "{arch:?}");
    }
}

#[test]
fn weights_convention_matches_dynas_counts() {
    // algorithms.md section 5: C(a) = 432 + 26880 n1 + 241920 n3 + 71680 + 640.
    let space = space(serde_json::json!({"param_convention": "weights"}));
    for (n1, n3, expected) in [
        (0, 0, 72_752u64),
        (6, 0, 234_032),
        (0, 1, 314_672),
        (3, 3, 879_152),
        (0, 6, 1_524_272),
    ] {
        let mut choices = vec![NONE; 6];
        for slot in choices.iter_mut().take(n1) {
            *slot = CONV1;
        }
        for slot in choices.iter_mut().skip(n1).take(n3) {
            *slot = CONV3;
        }
        let c = space.complexity(&Arch::new(choices)).unwrap();
        assert_eq!(c.params, expected, "n1={n1} n3={n3}");
    }
}

#[test]
fn built_supernet_counts_agree_with_counter_for_weights() {
    // With affine cells the built parameters of an arch's convs equal the counter's increments.
    let mut space = space(serde_json::json!({"affine": true, "cells_per_stage": 1}));
    space.build(Device::Cpu).unwrap();
    let params = space.parameters();
    let arch = Arch::new(vec![CONV3, CONV1, NONE, SKIP, CONV3, POOL]);
    let active = space.active_parameters(&arch).unwrap();
    let counted: i64 = active.iter().map(|&i| params[i].1.numel() as i64).sum();
    let expected = space.complexity(&arch).unwrap().params as i64;
    assert_eq!(counted, expected);
}

#[test]
fn arch_text_round_trips_and_rejects_garbage() {
    let space = space(serde_json::json!({}));
    for &(arch_str, ..) in OFFICIAL {
        let arch = space.arch_from_text(arch_str).unwrap();
        assert_eq!(space.arch_to_text(&arch).unwrap(), arch_str);
    }
    assert_eq!(
        space.arch_from_text("[3,3,3,3,3,3]").unwrap(),
        Arch::new(vec![3; 6])
    );
    for bad in [
        "",
        "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        "[1,2]",
        "[9,0,0,0,0,0]",
        "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
    ] {
        let err = space.arch_from_text(bad).unwrap_err();
        assert_eq!(err.kind, nas_sdk::ErrorKind::Arch, "{bad}: {err}");
    }
}

#[test]
fn config_errors_name_the_field() {
    let err = Nb201Space::from_config(r#"{"resolution": 30}"#)
        .err()
        .unwrap();
    assert!(err.message.contains("resolution"), "{err}");
    let err = Nb201Space::from_config(r#"{"chanels": 8}"#).err().unwrap();
    assert!(err.message.contains("chanels"), "{err}");
}

/// The benchmark's forward: every selected edge computed, `none` as `x * 0`.
fn reference_forward(
    space: &Nb201Space,
    input: &Tensor,
    arch: &Arch,
    options: &ForwardOptions,
) -> Tensor {
    let net = space.net().unwrap();
    let ops = arch.choices();
    // Same memory layout as the space's forward, so only the pruning differs.
    let input = input
        .permute([0, 2, 3, 1])
        .contiguous()
        .permute([0, 3, 1, 2]);
    let mut x = net.stem_bn.forward(&net.stem_conv.forward(&input), options);
    for layer in &net.layers {
        x = match layer {
            Layer::Reduction(block) => block.forward(&x, options),
            Layer::Cell(cell) => {
                let mut nodes = vec![x.shallow_clone()];
                for to in 1..4 {
                    let mut sum = x.zeros_like();
                    for (from, node) in nodes.iter().enumerate() {
                        let e = edge_index(to, from);
                        let edge = &cell.edges[e];
                        sum += match ops[e] {
                            NONE => node * 0.0,
                            SKIP => node.shallow_clone(),
                            CONV1 => edge.conv1x1.forward(node, options),
                            CONV3 => edge.conv3x3.forward(node, options),
                            _ => node.avg_pool2d([3, 3], [1, 1], [1, 1], false, false, None),
                        };
                    }
                    nodes.push(sum);
                }
                nodes.pop().unwrap()
            }
        };
    }
    let features = net.last_bn.forward(&x, options).relu();
    net.classifier
        .forward(&features.mean_dim([2i64, 3].as_slice(), false, Kind::Float))
}

#[test]
fn pruned_forward_equals_full_forward_for_every_arch_shape() {
    tch::manual_seed(0);
    // Affine cells make a conv fed by a zero node produce a non-zero output (BN's shift): the
    // pruned forward must still compute it.
    for affine in [false, true] {
        let mut space =
            space(serde_json::json!({"channels": 4, "cells_per_stage": 1, "affine": affine}));
        space.build(Device::Cpu).unwrap();
        for p in space.parameters() {
            // Non-trivial BN affine values.
            tch::no_grad(|| {
                let _ = p.1.shallow_clone().uniform_(-1.0, 1.0);
            });
        }
        let input = Tensor::randn([4, 3, 32, 32], (Kind::Float, Device::Cpu));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut archs: Vec<Arch> = (0..150)
            .map(|_| Arch::new((0..6).map(|_| rng.gen_range(0..5)).collect()))
            .collect();
        archs.push(Arch::new(vec![NONE; 6]));
        archs.push(Arch::new(vec![NONE, CONV3, CONV1, NONE, CONV3, SKIP]));
        for arch in &archs {
            let options = ForwardOptions::BATCH_STATS;
            let fast = space.forward(&input, arch, None, &options).unwrap();
            let full = reference_forward(&space, &input, arch, &options);
            let diff = (fast - full).abs().max().double_value(&[]);
            assert!(
                diff < 1e-4,
                "affine={affine} arch {arch:?}: max diff {diff}"
            );
        }
    }
}

#[test]
fn inactive_parameters_get_no_gradient_and_active_ones_are_used() {
    tch::manual_seed(1);
    let mut space =
        space(serde_json::json!({"channels": 4, "cells_per_stage": 2, "resolution": 8}));
    space.build(Device::Cpu).unwrap();
    let params = space.parameters();
    let input = Tensor::randn([3, 3, 8, 8], (Kind::Float, Device::Cpu));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for _ in 0..40 {
        let arch = Arch::new((0..6).map(|_| rng.gen_range(0..5)).collect());
        for (_, p) in &params {
            let mut p = p.shallow_clone();
            p.zero_grad();
        }
        let loss = space
            .forward(&input, &arch, None, &ForwardOptions::TRAIN)
            .unwrap()
            .sum(Kind::Float);
        loss.backward();
        let active = space.active_parameters(&arch).unwrap();
        for (i, (name, p)) in params.iter().enumerate() {
            let grad = p.grad();
            let touched = grad.defined() && grad.abs().sum(Kind::Float).double_value(&[]) > 0.0;
            if !active.contains(&i) {
                assert!(
                    !touched,
                    "{name} is not active for {arch:?} but got a gradient"
                );
            }
        }
    }
}

#[test]
fn gates_of_ones_change_nothing_and_carry_gradient() {
    tch::manual_seed(2);
    let mut space = space(serde_json::json!({"channels": 4, "cells_per_stage": 1}));
    space.build(Device::Cpu).unwrap();
    let input = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    let arch = Arch::new(vec![CONV3, SKIP, CONV1, POOL, CONV3, SKIP]);
    let gates: Vec<Tensor> = (0..6)
        .map(|_| Tensor::ones([5], (Kind::Float, Device::Cpu)).set_requires_grad(true))
        .collect();
    let plain = space
        .forward(&input, &arch, None, &ForwardOptions::BATCH_STATS)
        .unwrap();
    let gated = space
        .forward(&input, &arch, Some(&gates), &ForwardOptions::BATCH_STATS)
        .unwrap();
    assert!((&plain - &gated).abs().max().double_value(&[]) < 1e-6);
    gated.sum(Kind::Float).backward();
    for (e, gate) in gates.iter().enumerate() {
        let g = gate.grad().double_value(&[arch.choices()[e] as i64]);
        assert!(g.is_finite() && g != 0.0, "edge {e}: gate gradient {g}");
    }
}

#[test]
fn cost_table_is_exact() {
    let space = space(serde_json::json!({}));
    let table = space.cost_table(Metric::Macs).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    for _ in 0..100 {
        let arch = Arch::new((0..6).map(|_| rng.gen_range(0..5)).collect());
        let additive: f64 = table.base
            + arch
                .choices()
                .iter()
                .enumerate()
                .map(|(i, &c)| table.per_option[i][c as usize])
                .sum::<f64>();
        assert_eq!(additive as u64, space.complexity(&arch).unwrap().macs);
    }
}

#[test]
fn export_keeps_the_used_weights_and_their_bn_statistics() {
    let mut space = space(serde_json::json!({"channels": 4, "cells_per_stage": 1}));
    space.build(Device::Cpu).unwrap();
    // node 1 = conv1x1(x) feeds nothing that reaches the output (edges 2<-1 and 3<-1 are none).
    let arch = Arch::new(vec![CONV1, CONV3, NONE, SKIP, NONE, POOL]);
    let exported = space.export_subnet(&arch).unwrap();
    let names: Vec<&str> = exported.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"cells.0.edges.2<-0.3.op.1.weight"),
        "{names:?}"
    );
    assert!(
        names.contains(&"cells.0.edges.2<-0.3.op.2.running_mean"),
        "{names:?}"
    );
    assert!(names.contains(&"stem.1.running_var"));
    assert!(
        !names.iter().any(|n| n.contains("edges.1<-0")),
        "dead edge exported: {names:?}"
    );
    let params = space.parameters();
    let active = space.active_parameters(&arch).unwrap();
    let exported_params = exported
        .iter()
        .filter(|(n, _)| !n.contains("running_"))
        .count();
    assert_eq!(exported_params, active.len());
    assert!(params.len() > exported_params);
}
