use super::*;
use nas_sdk::BnMode;
use rand::{Rng, SeedableRng};
use tch::Kind;

fn space(config: &str) -> CnnSpace {
    CnnSpace::from_config(config).expect("valid config")
}

fn built(config: &str) -> CnnSpace {
    tch::manual_seed(0);
    let mut s = space(config);
    s.build(Device::Cpu).unwrap();
    s
}

fn random_arch(space: &CnnSpace, rng: &mut impl Rng) -> Arch {
    Arch::new(
        space
            .decisions()
            .iter()
            .map(|d| rng.gen_range(0..d.options.len() as u32))
            .collect(),
    )
}

/// torchvision's MobileNetV2 (1000 classes): exact MACs (conv + linear) and parameters from
/// `../shared/data/complexity-reference/complexity_reference.json`.
#[test]
fn mobilenet_v2_matches_reference_figures() {
    for (resolution, macs) in [
        (224, 300_774_272u64),
        (192, 221_316_608),
        (160, 154_083_200),
        (128, 99_074_048),
    ] {
        let s = space(&format!(
            r#"{{"preset": "mobilenetv2", "resolution": {resolution}, "num_classes": 1000}}"#
        ));
        assert!(s.decisions().is_empty());
        let c = s.complexity(&Arch::new(vec![])).unwrap();
        assert_eq!(c.macs, macs, "MACs at {resolution}");
        assert_eq!(c.params, 3_504_872, "params at {resolution}");
    }
}

/// FairNAS's space at kernel 3 / expand 6 everywhere is MobileNetV2.
#[test]
fn fairnas_k3_e6_is_mobilenet_v2() {
    let s = space(r#"{"preset": "fairnas", "resolution": 224, "num_classes": 1000}"#);
    let decisions = s.decisions();
    assert_eq!(decisions.len(), 16);
    assert!(decisions
        .iter()
        .all(|d| d.options.len() == 6 && d.kind == "op"));
    let k3_e6 = decisions[0]
        .options
        .iter()
        .position(|o| o.as_str() == "k3_e6")
        .unwrap() as u32;
    let c = s
        .complexity(&Arch::new(vec![k3_e6; decisions.len()]))
        .unwrap();
    assert_eq!((c.macs, c.params), (300_774_272, 3_504_872));
}

/// AttentiveNAS-A0..A6 (configs/eval_attentive_nas_models.yml of the official code) reproduce the
/// published MFLOPs 203, 279, 317, 357, 444, 491, 709 (rounded to the nearest integer).
#[test]
fn attentivenas_models_match_published_mflops() {
    let s = space(r#"{"resolution": 224, "num_classes": 1000}"#);
    let models = [
        (
            192,
            [16, 16, 24, 32, 64, 112, 192, 216, 1792],
            [3, 3, 3, 3, 3, 3, 3],
            [1, 4, 4, 4, 4, 6, 6],
            [1, 3, 3, 3, 3, 3, 1],
            203,
            203_389_568u64,
        ),
        (
            224,
            [16, 16, 24, 32, 64, 112, 192, 216, 1984],
            [3, 3, 3, 5, 3, 5, 3],
            [1, 4, 4, 4, 4, 6, 6],
            [1, 3, 3, 3, 3, 3, 1],
            279,
            279_238_816,
        ),
        (
            224,
            [16, 16, 24, 32, 64, 112, 200, 224, 1984],
            [3, 3, 3, 3, 3, 5, 3],
            [1, 4, 5, 4, 4, 6, 6],
            [1, 3, 3, 3, 3, 4, 1],
            317,
            316_730_080,
        ),
        (
            224,
            [16, 16, 24, 32, 64, 112, 208, 224, 1984],
            [3, 3, 3, 5, 3, 3, 3],
            [1, 4, 4, 4, 4, 6, 6],
            [2, 3, 3, 4, 3, 5, 1],
            357,
            356_518_400,
        ),
        (
            256,
            [16, 16, 24, 32, 64, 112, 192, 216, 1984],
            [3, 3, 3, 5, 3, 5, 3],
            [1, 4, 4, 5, 4, 6, 6],
            [1, 3, 3, 4, 3, 5, 1],
            444,
            443_530_752,
        ),
        (
            256,
            [16, 16, 24, 32, 72, 112, 192, 216, 1792],
            [3, 3, 3, 5, 3, 3, 3],
            [1, 4, 5, 4, 4, 6, 6],
            [1, 3, 3, 3, 4, 6, 1],
            491,
            490_520_064,
        ),
        (
            288,
            [16, 16, 24, 32, 64, 112, 216, 224, 1984],
            [3, 3, 3, 3, 3, 5, 3],
            [1, 4, 6, 5, 4, 6, 6],
            [1, 3, 3, 4, 4, 6, 1],
            709,
            709_007_232,
        ),
    ];
    for (i, (resolution, width, kernel, expand, depth, mflops, macs)) in models.iter().enumerate() {
        let text = serde_json::json!({
            "resolution": resolution, "width": width, "kernel_size": kernel,
            "expand_ratio": expand, "depth": depth,
        })
        .to_string();
        let arch = s.arch_from_text(&text).unwrap();
        let c = s.complexity(&arch).unwrap();
        assert_eq!(
            (c.macs as f64 / 1e6).round() as u64,
            *mflops,
            "AttentiveNAS-A{i}"
        );
        assert_eq!(c.macs, *macs, "AttentiveNAS-A{i} exact MACs");
        // The text form round-trips.
        assert_eq!(
            s.arch_from_text(&s.arch_to_text(&arch).unwrap()).unwrap(),
            arch
        );
    }
}

#[test]
fn decisions_of_the_attentivenas_space() {
    let s = space("{}");
    let decisions = s.decisions();
    let kinds = |kind: &str| decisions.iter().filter(|d| d.kind == kind).count();
    // Resolution; widths of first conv, 7 stages, head; depths; kernels; expand where it varies.
    assert_eq!(kinds("resolution"), 1);
    assert_eq!(kinds("width"), 9);
    assert_eq!(kinds("depth"), 7);
    assert_eq!(kinds("kernel"), 7);
    assert_eq!(kinds("expand"), 4);
    let (low, high) = s.extremes(Metric::Macs).unwrap();
    let (low, high) = (s.complexity(&low).unwrap(), s.complexity(&high).unwrap());
    // AttentiveNAS-A0 is the smallest subnet of the space.
    assert_eq!(low.macs, 203_389_568);
    assert!(high.macs > 709_007_232);
}

#[test]
fn configs_are_checked() {
    for (config, needle) in [
        (r#"{"preset": "resnet"}"#, "unknown preset `resnet`"),
        (
            r#"{"first_conv": {"width": [24, 16], "stride": 2}}"#,
            "strictly ascending",
        ),
        (r#"{"resolutions": [0]}"#, "resolutions"),
        (r#"{"colour": 1}"#, "unknown field `colour`"),
    ] {
        let err = CnnSpace::from_config(config).err().expect("rejected");
        assert!(err.message.contains(needle), "{config}: {}", err.message);
    }
    let s = space("{}");
    let err = s.arch_from_text(r#"{"resolution": 100, "width": [16,16,24,32,64,112,192,216,1792], "kernel": [3,3,3,3,3,3,3], "expand": [1,4,4,4,4,6,6], "depth": [1,3,3,3,3,3,1]}"#).unwrap_err();
    assert!(err.message.contains("resolution 100"), "{}", err.message);
}

const SMALL: &str = r#"{"preset": "attentivenas-small", "resolution": 28, "input_channels": 1, "num_classes": 10, "resolutions": [24, 28]}"#;
const FAIRNAS_SMALL: &str = r#"{"preset": "fairnas", "resolution": 32, "num_classes": 10,
    "first_conv": {"width": [16], "stride": 1}, "head": {"kind": "mbv2", "width": [64]},
    "stages": [
        {"width": [8], "depth": [1], "kernel": [3], "expand": [1], "stride": 1},
        {"width": [16], "depth": [2], "kernel": [3, 5, 7], "expand": [3, 6], "stride": 2, "choice": "op"},
        {"width": [24], "depth": [2], "kernel": [3, 5, 7], "expand": [3, 6], "stride": 2, "choice": "op"}
    ]}"#;

fn eval_options() -> ForwardOptions {
    ForwardOptions {
        train: false,
        bn: BnMode::Running,
        bn_momentum: -1.0,
    }
}

/// Randomises BN statistics so exported running statistics matter.
fn randomise_buffers(space: &CnnSpace) {
    tch::no_grad(|| {
        for (name, mut buffer) in space.buffers() {
            let noise = Tensor::rand_like(&buffer);
            if name.ends_with("running_var") {
                buffer.copy_(&(noise + 0.5));
            } else {
                buffer.copy_(&(noise - 0.5));
            }
        }
    });
}

/// The exported tensors are exactly the parameters and buffers of the subnet space, and that
/// space, loaded with them, computes the supernet's logits.
#[test]
fn exported_subnet_equals_the_supernet_slice() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for config in [SMALL, FAIRNAS_SMALL] {
        let supernet = built(config);
        randomise_buffers(&supernet);
        let channels = supernet.config.input_channels;
        let resolution = supernet.config.resolution;
        for _ in 0..4 {
            let arch = random_arch(&supernet, &mut rng);
            let exported = supernet.export_subnet(&arch).unwrap();
            let mut subnet = space(&supernet.subnet_config(&arch).unwrap());
            assert!(subnet.decisions().is_empty());
            subnet.build(Device::Cpu).unwrap();
            let mut expected: Vec<(String, Vec<i64>)> = subnet
                .parameters()
                .into_iter()
                .chain(subnet.buffers())
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
            let param_count: i64 = subnet
                .parameters()
                .iter()
                .map(|(_, t)| t.numel() as i64)
                .sum();
            assert_eq!(
                param_count as u64, c.params,
                "parameters of the built subnet"
            );
            tch::no_grad(|| {
                let targets: std::collections::HashMap<String, Tensor> = subnet
                    .parameters()
                    .into_iter()
                    .chain(subnet.buffers())
                    .collect();
                for (name, tensor) in &exported {
                    targets[name].shallow_clone().copy_(tensor);
                }
            });
            let x = Tensor::randn(
                [3, channels, resolution, resolution],
                (Kind::Float, Device::Cpu),
            );
            let a = supernet.forward(&x, &arch, None, &eval_options()).unwrap();
            let b = subnet
                .forward(&x, &Arch::new(vec![]), None, &eval_options())
                .unwrap();
            let diff = (a - b).abs().max().double_value(&[]);
            assert!(diff <= 1e-5, "logits differ by {diff} for {arch:?}");
        }
    }
}

/// One-hot policies mapped through the keep-masks give all-ones gates (no change), and every
/// decision kind's gate receives a finite, non-zero gradient.
#[test]
fn gates_pass_gradients_and_change_nothing() {
    for config in [SMALL, FAIRNAS_SMALL] {
        let s = built(config);
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
                let values: Vec<f32> = match d.keep_mask.as_ref().into_option() {
                    Some(mask) => (0..mask.units).map(|u| mask.get(u, j)).collect(),
                    None => (0..d.options.len() as u32)
                        .map(|o| if o == j { 1.0 } else { 0.0 })
                        .collect(),
                };
                Tensor::from_slice(&values).set_requires_grad(true)
            })
            .collect();
        let x = Tensor::randn(
            [
                4,
                s.config.input_channels,
                s.config.resolution,
                s.config.resolution,
            ],
            (Kind::Float, Device::Cpu),
        );
        let options = ForwardOptions::BATCH_STATS;
        let plain = s.forward(&x, &arch, None, &options).unwrap();
        let gated = s.forward(&x, &arch, Some(&gates), &options).unwrap();
        let diff = (&plain - &gated).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "all-ones gates changed the logits by {diff}");
        let labels = Tensor::from_slice(&[0i64, 1, 2, 3]);
        gated.cross_entropy_for_logits(&labels).backward();
        for (d, gate) in decisions.iter().zip(&gates) {
            let grad = gate.grad();
            let norm = grad.abs().sum(Kind::Float).double_value(&[]);
            assert!(
                norm.is_finite() && norm > 0.0,
                "no gradient for `{}` ({})",
                d.name,
                d.kind
            );
        }
    }
}

/// Parameters outside `active_parameters` get no gradient; those inside are all used.
#[test]
fn active_parameters_are_exactly_the_used_ones() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let s = built(SMALL);
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
        let out = s.forward(&x, &arch, None, &ForwardOptions::TRAIN).unwrap();
        out.sum(Kind::Float).backward();
        let active: std::collections::HashSet<usize> =
            s.active_parameters(&arch).unwrap().into_iter().collect();
        for (i, (name, p)) in params.iter().enumerate() {
            let g = p.grad();
            let touched = g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0;
            if !active.contains(&i) {
                assert!(!touched, "{name} is inactive but got a gradient");
            } else {
                assert!(g.defined(), "{name} is active but unused");
            }
        }
    }
}

/// The additive cost table's error against the exact counter (quoted in docs/spaces.md).
#[test]
fn cost_table_error_is_small() {
    for (config, metric, bound) in [
        ("{}", Metric::Macs, 0.10),
        ("{}", Metric::Params, 0.10),
        (SMALL, Metric::Macs, 0.10),
    ] {
        let s = space(config);
        let options: Vec<u32> = s
            .decisions()
            .iter()
            .map(|d| d.options.len() as u32)
            .collect();
        let (_, error) =
            additive_cost_table(&options, |a| s.complexity(a), metric, COST_SAMPLES, 0).unwrap();
        // Measured on fresh archs, not the fitting sample.
        let table = s.cost_table(metric).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let (mut mean, mut max) = (0.0f64, 0.0f64);
        for _ in 0..500 {
            let arch = random_arch(&s, &mut rng);
            let exact = metric.of(&s.complexity(&arch).unwrap()) as f64;
            let model = table.estimate(&arch);
            let relative = ((model - exact) / exact).abs();
            mean += relative / 500.0;
            max = max.max(relative);
        }
        println!(
            "cost table {config} {metric:?}: fit mean {:.4} max {:.4}; held-out mean {mean:.4} max {max:.4}",
            error.mean_relative, error.max_relative
        );
        assert!(mean < bound, "mean relative error {mean}");
    }
}
