//! Accuracy and logits of one subnet on a split, under a BN policy.

use anyhow::{bail, Result};
use nas_sdk::Arch;
use serde::Serialize;
use tch::{Kind, Tensor};

use super::bn::{prepare_bn, Calibration};
use crate::{config::BnPolicy, data::Split, plugins::Space};

/// An evaluation result.
#[derive(Clone, Debug, Serialize)]
pub struct EvalResult {
    /// Top-1 accuracy in percent.
    pub accuracy: f64,
    /// Mean cross-entropy.
    pub loss: f64,
    /// Examples evaluated.
    pub examples: usize,
    /// The BN policy used.
    pub bn: BnPolicy,
}

/// Evaluates `arch` on `split` in batches of `batch_size`; `calibration` provides training batches
/// for `recalibrate`.
pub fn evaluate(
    space: &Space,
    arch: &Arch,
    split: &Split,
    batch_size: usize,
    policy: BnPolicy,
    calibration: Option<&mut Calibration<'_>>,
) -> Result<EvalResult> {
    if split.is_empty() {
        bail!("the evaluation split is empty");
    }
    let logits = logits(space, arch, split, batch_size, policy, calibration)?;
    let n = split.len();
    let labels = split.labels().to_device(logits.device());
    // Summed per example, so the mean is exact whatever the batching was.
    let loss_sum = -logits
        .log_softmax(-1, Kind::Float)
        .gather(1, &labels.unsqueeze(1), false)
        .sum(Kind::Double)
        .double_value(&[]);
    let correct = logits
        .argmax(-1, false)
        .eq_tensor(&labels)
        .sum(Kind::Int64)
        .int64_value(&[]);
    Ok(EvalResult {
        accuracy: 100.0 * correct as f64 / n as f64,
        loss: loss_sum / n as f64,
        examples: n,
        bn: policy,
    })
}

/// Logits of `arch` for every example of `split` under `policy` (recalibrating first if asked),
/// in batches of `batch_size`.
pub fn logits(
    space: &Space,
    arch: &Arch,
    split: &Split,
    batch_size: usize,
    policy: BnPolicy,
    calibration: Option<&mut Calibration<'_>>,
) -> Result<Tensor> {
    let options = prepare_bn(space, arch, policy, calibration)?;
    let mut parts = Vec::new();
    tch::no_grad(|| -> Result<()> {
        let mut start = 0;
        while start < split.len() {
            let count = batch_size.min(split.len() - start);
            let (images, _) = split.slice(start, count)?;
            parts.push(space.forward(&images, arch, None, &options)?);
            start += count;
        }
        Ok(())
    })?;
    Ok(Tensor::cat(&parts, 0))
}
