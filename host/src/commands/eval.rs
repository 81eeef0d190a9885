//! `nas eval`: accuracy of subnets of a trained supernet under a BN policy.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::{
    cli::EvalArgs,
    eval::{eval_archs, logits, write_eval_records, BnPolicy, Calibration, EvalRecord},
    run::{io, load_run_config, TrainedRun},
};

/// The printed table of evaluated subnets.
pub(super) fn print_eval_table(records: &[EvalRecord]) {
    println!(
        "{:>8}  {:>9}  {:>9}  {:<18}  arch",
        "acc %", "MMACs", "Mparams", "BN policy"
    );
    for r in records {
        println!(
            "{:>8.2}  {:>9.3}  {:>9.4}  {:<18}  {}",
            r.result.accuracy,
            r.macs as f64 / 1e6,
            r.params as f64 / 1e6,
            r.result.bn.to_string(),
            r.arch
        );
    }
}

/// `nas eval`.
pub fn eval(args: &EvalArgs, plugin_path: &[PathBuf]) -> Result<()> {
    let run_dir = &args.run;
    let options = &args.subnet_eval;
    let policy = BnPolicy::for_run(
        &load_run_config(run_dir)?,
        options.bn.as_deref(),
        options.calib_batches,
    )?;
    let run = TrainedRun::open(run_dir, plugin_path)?;
    // eval_archs puts the trained BN statistics back after each arch, so the same opened run
    // serves --save-logits.
    let records = eval_archs(&run, &args.arch, policy, &options.split)?;
    print_eval_table(&records);
    let path = write_eval_records(run_dir, &records)?;
    println!("results: {}", path.display());
    if let Some(out) = &args.save_logits {
        let [arch] = args.arch.as_slice() else {
            bail!("--save-logits takes exactly one --arch");
        };
        write_logits(&run, arch, policy, &options.split, out)?;
        println!("logits: {}", out.display());
    }
    Ok(())
}

/// Writes `{input, labels, logits}` of one arch on one split (the images as the space sees them).
fn write_logits(
    run: &TrainedRun,
    arch_text: &str,
    policy: BnPolicy,
    split_name: &str,
    out: &Path,
) -> Result<()> {
    let split = run.split(split_name)?;
    let arch = run.space.parse_arch(arch_text)?;
    let mut calibration = Calibration::for_run(&run.config, &run.data.train)?;
    let logits = logits(
        &run.space,
        &arch,
        split,
        run.config.eval.batch_size,
        policy,
        Some(&mut calibration),
    )?;
    io::write_safetensors_atomic(
        out,
        &[
            ("input".to_string(), split.slice(0, split.len())?.0),
            ("labels".to_string(), split.labels().shallow_clone()),
            ("logits".to_string(), logits),
        ],
    )
}
