//! The loss of one path of a step.

use nas_sdk::LossKind;
use tch::{Kind, Reduction, Tensor};

/// The loss of a path with `logits` against `labels` (class indices `[n]`, or soft targets
/// `[n, classes]` from Mixup / CutMix, which libtorch's cross-entropy takes as they are), or against the first path's predictions
/// `teacher` for distillation. The teacher's logits are detached here, so the distillation loss
/// never sends gradient into the teacher path.
pub fn path_loss(
    kind: LossKind,
    logits: &Tensor,
    labels: &Tensor,
    teacher: Option<&Tensor>,
) -> anyhow::Result<Tensor> {
    Ok(match kind {
        LossKind::Labels { label_smoothing } => logits.cross_entropy_loss::<Tensor>(
            labels,
            None,
            Reduction::Mean,
            -100,
            label_smoothing,
        ),
        LossKind::DistillFromFirst { temperature } => {
            let teacher = teacher
                .ok_or_else(|| anyhow::anyhow!("distillation needs a first path to learn from"))?;
            let t = temperature.max(1e-6);
            // Soft cross-entropy: -sum softmax(teacher / t) * log_softmax(student / t), mean over
            // the batch (temperature 1 is the sandwich rule's inplace distillation).
            let target = (teacher.detach() / t).softmax(-1, Kind::Float);
            -(target * (logits / t).log_softmax(-1, Kind::Float))
                .sum_dim_intlist([-1i64].as_slice(), false, Kind::Float)
                .mean(Kind::Float)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn distillation_sends_no_gradient_into_the_teacher() {
        let teacher = Tensor::randn([4, 10], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let student = Tensor::randn([4, 10], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let labels = Tensor::from_slice(&[0i64, 1, 2, 3]);
        let loss = path_loss(
            LossKind::DistillFromFirst { temperature: 1.0 },
            &student,
            &labels,
            Some(&teacher),
        )
        .unwrap();
        loss.backward();
        assert!(!teacher.grad().defined(), "the teacher received a gradient");
        let student_grad = student.grad().abs().sum(Kind::Float).double_value(&[]);
        assert!(student_grad > 0.0);
    }

    #[test]
    fn distillation_from_identical_logits_is_the_entropy() {
        let logits = Tensor::from_slice(&[2.0f32, 0.0, 0.0]).view([1, 3]);
        let labels = Tensor::from_slice(&[0i64]);
        let loss = path_loss(
            LossKind::DistillFromFirst { temperature: 1.0 },
            &logits,
            &labels,
            Some(&logits),
        )
        .unwrap();
        let p = logits.softmax(-1, Kind::Float);
        let entropy = -(&p * p.log()).sum(Kind::Float);
        assert!((loss.double_value(&[]) - entropy.double_value(&[])).abs() < 1e-6);
    }

    #[test]
    fn label_smoothing_matches_its_definition() {
        let logits = Tensor::from_slice(&[1.0f32, 2.0, 0.5]).view([1, 3]);
        let labels = Tensor::from_slice(&[1i64]);
        let loss = path_loss(
            LossKind::Labels {
                label_smoothing: 0.1,
            },
            &logits,
            &labels,
            None,
        )
        .unwrap();
        let logp = logits.log_softmax(-1, Kind::Float);
        let nll = -logp.double_value(&[0, 1]);
        let uniform = -logp.mean(Kind::Float).double_value(&[]);
        let expected = 0.9 * nll + 0.1 * uniform;
        assert!((loss.double_value(&[]) - expected).abs() < 1e-6);
    }

    #[test]
    fn soft_targets_are_the_cross_entropy_of_the_mixed_distribution() {
        let logits = Tensor::from_slice(&[1.0f32, 2.0, 0.5, 0.0, -1.0, 3.0]).view([2, 3]);
        let targets = Tensor::from_slice(&[0.7f32, 0.3, 0.0, 0.1, 0.1, 0.8]).view([2, 3]);
        let loss = path_loss(
            LossKind::Labels {
                label_smoothing: 0.0,
            },
            &logits,
            &targets,
            None,
        )
        .unwrap();
        let expected = -(targets * logits.log_softmax(-1, Kind::Float))
            .sum(Kind::Float)
            .double_value(&[])
            / 2.0;
        assert!((loss.double_value(&[]) - expected).abs() < 1e-6);
    }
}
