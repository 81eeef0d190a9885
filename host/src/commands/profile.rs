//! `nas profile`: a space's latency table on this machine, validated on held-out subnets.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::{
    cli::ProfileArgs,
    config::{ComponentSection, RunConfig},
    device,
    plugins::{open_catalog, Space},
    profile::{self, LatencyTable, Protocol, MAX_MEAN_ERROR, MIN_TAU},
    rank::stats::kendall_tau_b,
    run::load_run_config,
};

/// `--space-config`: a JSON object, or a JSON or TOML file with one.
fn space_config(text: &str) -> Result<toml::Table> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text)
            .with_context(|| format!("--space-config `{text}` is not a JSON object"));
    }
    let path = Path::new(text);
    let contents = std::fs::read_to_string(path)
        .with_context(|| format!("--space-config: reading {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "toml") {
        toml::from_str(&contents)
            .with_context(|| format!("--space-config: {} is not a TOML table", path.display()))
    } else {
        serde_json::from_str(&contents)
            .with_context(|| format!("--space-config: {} is not a JSON object", path.display()))
    }
}

/// `nas profile`.
pub fn profile(args: &ProfileArgs, plugin_path: &[PathBuf]) -> Result<()> {
    if args.batch < 1 {
        bail!("--batch {}: use 1 or more", args.batch);
    }
    if args.threads < 1 {
        bail!("--threads {}: use 1 or more", args.threads);
    }
    let device = device::select(&args.device)?;
    device::set_threads(args.threads);
    let (catalog, mut space) = match (&args.run, &args.space) {
        (Some(run), _) => {
            let config = load_run_config(run)?;
            let (name, space_config) = profile::space_of_run(run)?;
            let catalog = open_catalog(&config.plugins.path, plugin_path);
            let space = Space::from_json(&catalog, &name, &space_config.to_string())?;
            (catalog, space)
        }
        (None, Some(name)) => {
            let defaults = RunConfig::with_default_components();
            let catalog = open_catalog(&defaults.plugins.path, plugin_path);
            let section = ComponentSection {
                name: name.clone(),
                config: match &args.space_config {
                    Some(text) => space_config(text)?,
                    None => toml::Table::new(),
                },
            };
            let space = Space::create(&catalog, &section, None)?;
            (catalog, space)
        }
        (None, None) => bail!("nas profile needs --space S or --run RUN_DIR"),
    };
    let request = profile::ProfileRequest {
        device,
        threads: args.threads,
        batch: args.batch,
        fit_archs: args.fit_archs,
        validation_archs: args.validate,
        protocol: Protocol {
            warmup: args.warmup,
            repeats: args.repeats,
            rounds: args.rounds,
        },
        seed: args.seed,
    };
    let options: Vec<u32> = space
        .decisions()
        .iter()
        .map(|d| d.options.len() as u32)
        .collect();
    let fit_archs = match args.fit_archs {
        0 => profile::default_fit_archs(&options),
        n => n,
    };
    println!(
        "profiling space `{}` on {} ({}), {} thread(s), batch {}: {} subnets for the fit + {} held out, {} warm-up + {} timed runs x {} rounds each",
        space.origin().name,
        device::name(device),
        profile::device_model(device),
        args.threads,
        args.batch,
        fit_archs,
        args.validate,
        args.warmup,
        args.repeats,
        args.rounds
    );
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {pos}/{len} {wide_bar} [{elapsed_precise}]")
            .expect("valid template"),
    );
    let mut progress = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_message(if done <= fit_archs + args.validate {
            "tracing"
        } else {
            "timing"
        });
        bar.set_position(done as u64);
    };
    let tau = |pairs: &[(f64, f64)]| {
        let (predicted, measured): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
        kendall_tau_b(&predicted, &measured).ok()
    };
    let (table, _) = profile::profile(&catalog, &mut space, &request, &tau, &mut progress)?;
    bar.finish_and_clear();
    table.save(&args.out)?;
    print_table(&table);
    println!("wrote {}", args.out.display());
    Ok(())
}

/// The table and its validation figures.
fn print_table(table: &LatencyTable) {
    println!(
        "table: fixed part {:.3} ms (option 0 everywhere); ms added per option:",
        table.base_ms
    );
    for d in &table.decisions {
        let terms: Vec<String> = d
            .options
            .iter()
            .zip(&d.ms)
            .map(|(o, ms)| format!("{o} {ms:+.3}"))
            .collect();
        println!("  {:<24} {}", d.name, terms.join("  "));
    }
    let measured: Vec<f64> = table.samples.iter().map(|s| s.measured_ms).collect();
    let (low, high) = measured
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), &m| (l.min(m), h.max(m)));
    println!(
        "measured subnets: {:.3}-{:.3} ms; fit ({} subnets): mean relative error {:.1}%, max {:.1}%; {:.1} s in all",
        low,
        high,
        table.fit_error.archs,
        100.0 * table.fit_error.mean_relative_error,
        100.0 * table.fit_error.max_relative_error,
        table.measurement.seconds
    );
    let v = &table.validation;
    println!(
        "validation on {} held-out subnets (plain modules, end to end): mean relative error {:.1}%, max {:.1}%, Kendall tau {}",
        v.error.archs,
        100.0 * v.error.mean_relative_error,
        100.0 * v.error.max_relative_error,
        v.kendall_tau
            .map(|t| format!("{t:.3}"))
            .unwrap_or_else(|| "undefined".into())
    );
    if v.additive_ok {
        println!(
            "the additive table holds on this device (goals: mean error <= {:.0}%, tau >= {MIN_TAU})",
            100.0 * MAX_MEAN_ERROR
        );
        return;
    }
    println!(
        "WARNING: the additive table does not hold well enough here (goals: mean error <= {:.0}%, tau >= {MIN_TAU}).",
        100.0 * MAX_MEAN_ERROR
    );
    if let Some(worst) = table
        .samples
        .iter()
        .filter(|s| s.set == "validation")
        .max_by(|a, b| {
            let e = |s: &profile::table::Sample| {
                ((s.predicted_ms - s.measured_ms) / s.measured_ms).abs()
            };
            e(a).total_cmp(&e(b))
        })
    {
        println!(
            "  worst held-out subnet {:?}: measured {:.3} ms, table {:.3} ms",
            worst.choices, worst.measured_ms, worst.predicted_ms
        );
    }
    if table.fit_error.mean_relative_error > 0.5 * v.error.mean_relative_error
        && table.fit_error.mean_relative_error > 0.5 * MAX_MEAN_ERROR
    {
        println!(
            "  the fit itself is poor ({:.1}% on its own subnets): the choices interact (e.g. resolution x width); \
             constrain the interacting decision (profile a space config with one resolution) or search by --max-macs as well",
            100.0 * table.fit_error.mean_relative_error
        );
    } else {
        println!(
            "  the fit is good on its own subnets but not on held-out ones: timing noise or too few subnets; \
             try --repeats/--rounds higher, --fit-archs higher, --threads 1, or a quieter machine"
        );
    }
}
