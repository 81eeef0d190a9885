//! Subnets of a trained run evaluated and recorded under `<run>/eval/`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use super::{
    accuracy::{evaluate, EvalResult},
    bn::{BnSnapshot, Calibration},
};
use crate::{config::BnPolicy, data::DataInfo, plugins::Origin, run::TrainedRun};

/// One subnet's evaluation, as written to `<run>/eval/`.
#[derive(Serialize)]
pub struct EvalRecord {
    /// Arch text.
    pub arch: String,
    /// Choice indices.
    pub choices: Vec<u32>,
    /// MACs.
    pub macs: u64,
    /// Params.
    pub params: u64,
    /// The result (accuracy, loss, BN policy).
    pub result: EvalResult,
    /// Split evaluated.
    pub split: String,
    /// Checkpoint evaluated.
    pub checkpoint: PathBuf,
    /// Space plugin.
    pub space: Origin,
    /// Data provenance.
    pub data: DataInfo,
}

/// Evaluates `archs` (text or JSON choices) of `run` on the split named `split_name`, each from
/// the trained BN statistics.
pub fn eval_archs(
    run: &TrainedRun,
    archs: &[String],
    bn: BnPolicy,
    split_name: &str,
) -> Result<Vec<EvalRecord>> {
    let split = run.split(split_name)?;
    let space = &run.space;
    let mut calibration = Calibration::for_run(&run.config, &run.data.train)?;
    let trained = BnSnapshot::take(space)?;
    let mut records = Vec::new();
    for text in archs {
        let arch = space.parse_arch(text)?;
        let complexity = space.complexity(&arch)?;
        let result = evaluate(
            space,
            &arch,
            split,
            run.config.eval.batch_size,
            bn,
            Some(&mut calibration),
        )?;
        trained.restore();
        records.push(EvalRecord {
            arch: space.arch_text(&arch)?,
            choices: arch.choices().to_vec(),
            macs: complexity.macs,
            params: complexity.params,
            result,
            split: split_name.to_string(),
            checkpoint: run.checkpoint.clone(),
            space: space.origin().clone(),
            data: run.data.info.clone(),
        });
    }
    Ok(records)
}

/// Writes `records` to `<run>/eval/eval-<hash>.json` (the hash of archs, BN policy and split);
/// returns the path.
pub fn write_eval_records(run_dir: &Path, records: &[EvalRecord]) -> Result<PathBuf> {
    use sha2::{Digest, Sha256};
    let key: String = records
        .iter()
        .map(|r| format!("{}|{}|{}", r.arch, r.result.bn, r.split))
        .collect::<Vec<_>>()
        .join(";");
    let digest = Sha256::digest(key.as_bytes());
    let name: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    let path = run_dir.join("eval").join(format!("eval-{name}.json"));
    crate::run::io::write_json_atomic(&path, &records)?;
    Ok(path)
}
