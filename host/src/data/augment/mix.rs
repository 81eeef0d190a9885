//! Mixup and CutMix over a batch, as timm's `Mixup` in its `batch` mode: one mixing ratio per
//! batch, each image mixed with the image at the mirrored position of the batch, and soft
//! targets `lam * y + (1 - lam) * y_mirrored` (with label smoothing).

use rand::Rng;
use rand_distr::{Beta, Distribution};
use serde::Serialize;
use tch::{Kind, Tensor};

/// Mixup / CutMix settings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MixSettings {
    /// Mixup's Beta(alpha, alpha) (0 = no Mixup).
    pub mixup_alpha: f64,
    /// CutMix's Beta(alpha, alpha) (0 = no CutMix).
    pub cutmix_alpha: f64,
    /// Probability that a batch is mixed at all.
    pub probability: f64,
    /// With both on: probability of CutMix rather than Mixup.
    pub switch_probability: f64,
    /// Label smoothing of the soft targets.
    pub label_smoothing: f64,
}

/// What was done to one batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mixed {
    /// Weight of each image's own label.
    pub lam: f64,
    /// The CutMix box `(top, bottom, left, right)`, if CutMix was used.
    pub cut: Option<(i64, i64, i64, i64)>,
}

impl MixSettings {
    /// Whether anything is mixed at all.
    pub fn enabled(&self) -> bool {
        self.probability > 0.0 && (self.mixup_alpha > 0.0 || self.cutmix_alpha > 0.0)
    }

    /// Mixes `images` (`[n, c, h, w]`) in place and returns the soft targets (`[n, classes]`)
    /// for `labels` (`[n]`).
    pub fn apply(
        &self,
        images: &mut Tensor,
        labels: &Tensor,
        classes: i64,
        rng: &mut impl Rng,
    ) -> (Tensor, Mixed) {
        let mixed = self.draw(images.size(), rng);
        let mirrored = images.flip([0]);
        tch::no_grad(|| match mixed.cut {
            Some((top, bottom, left, right)) => {
                let (rows, cols) = (bottom - top, right - left);
                if rows > 0 && cols > 0 {
                    images
                        .narrow(2, top, rows)
                        .narrow(3, left, cols)
                        .copy_(&mirrored.narrow(2, top, rows).narrow(3, left, cols));
                }
            }
            None => {
                let blended = &*images * mixed.lam + &mirrored * (1.0 - mixed.lam);
                images.copy_(&blended);
            }
        });
        (self.targets(labels, classes, mixed.lam), mixed)
    }

    /// Smoothed one-hot targets of `labels` mixed with their mirror at ratio `lam`.
    pub fn targets(&self, labels: &Tensor, classes: i64, lam: f64) -> Tensor {
        let off = self.label_smoothing / classes as f64;
        let on = 1.0 - self.label_smoothing + off;
        let one_hot = labels.one_hot(classes).to_kind(Kind::Float) * (on - off) + off;
        &one_hot * lam + one_hot.flip([0]) * (1.0 - lam)
    }

    fn draw(&self, shape: Vec<i64>, rng: &mut impl Rng) -> Mixed {
        let unmixed = Mixed {
            lam: 1.0,
            cut: None,
        };
        if !self.enabled() || rng.gen::<f64>() >= self.probability {
            return unmixed;
        }
        let use_cutmix = if self.mixup_alpha > 0.0 && self.cutmix_alpha > 0.0 {
            rng.gen::<f64>() < self.switch_probability
        } else {
            self.cutmix_alpha > 0.0
        };
        let alpha = if use_cutmix {
            self.cutmix_alpha
        } else {
            self.mixup_alpha
        };
        let lam = Beta::new(alpha, alpha)
            .expect("alpha checked positive")
            .sample(rng);
        if !use_cutmix {
            return Mixed { lam, cut: None };
        }
        let (h, w) = (shape[2], shape[3]);
        let ratio = (1.0 - lam).sqrt();
        let (cut_h, cut_w) = ((h as f64 * ratio) as i64, (w as f64 * ratio) as i64);
        let (cy, cx) = (rng.gen_range(0..h), rng.gen_range(0..w));
        let top = (cy - cut_h / 2).clamp(0, h);
        let bottom = (cy + cut_h / 2).clamp(0, h);
        let left = (cx - cut_w / 2).clamp(0, w);
        let right = (cx + cut_w / 2).clamp(0, w);
        // The ratio the box actually gives once clipped to the image (timm's `correct_lam`).
        let lam = 1.0 - ((bottom - top) * (right - left)) as f64 / (h * w) as f64;
        Mixed {
            lam,
            cut: Some((top, bottom, left, right)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn settings(mixup: f64, cutmix: f64) -> MixSettings {
        MixSettings {
            mixup_alpha: mixup,
            cutmix_alpha: cutmix,
            probability: 1.0,
            switch_probability: 0.5,
            label_smoothing: 0.1,
        }
    }

    #[test]
    fn mixup_targets_sum_to_one_with_the_drawn_ratio() {
        let mut rng = nas_sdk::rng::stream(5, 0, "test");
        let labels = Tensor::from_slice(&[0i64, 1, 2, 3]);
        let mut images = Tensor::arange(4, (Kind::Float, Device::Cpu))
            .view([4, 1, 1, 1])
            .repeat([1, 1, 2, 2]);
        let (targets, mixed) = settings(0.8, 0.0).apply(&mut images, &labels, 5, &mut rng);
        assert!(mixed.cut.is_none() && (0.0..=1.0).contains(&mixed.lam));
        let sums =
            Vec::<f64>::try_from(targets.sum_dim_intlist([1i64].as_slice(), false, Kind::Double))
                .unwrap();
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-6), "{sums:?}");
        // Image 0 is lam * 0 + (1 - lam) * 3; its own label weighs lam (smoothed).
        let pixel = images.double_value(&[0, 0, 0, 0]);
        assert!((pixel - 3.0 * (1.0 - mixed.lam)).abs() < 1e-5);
        let own = targets.double_value(&[0, 0]);
        let expected = mixed.lam * (0.9 + 0.02) + (1.0 - mixed.lam) * 0.02;
        assert!((own - expected).abs() < 1e-6, "{own} vs {expected}");
    }

    #[test]
    fn cutmix_ratio_is_the_share_of_pixels_kept() {
        let mut rng = nas_sdk::rng::stream(6, 0, "test");
        let labels = Tensor::from_slice(&[0i64, 1]);
        for _ in 0..20 {
            let mut images = Tensor::cat(
                &[
                    Tensor::zeros([1, 1, 16, 16], (Kind::Float, Device::Cpu)),
                    Tensor::ones([1, 1, 16, 16], (Kind::Float, Device::Cpu)),
                ],
                0,
            );
            let (targets, mixed) = settings(0.0, 1.0).apply(&mut images, &labels, 2, &mut rng);
            assert!(mixed.cut.is_some());
            // Image 0 was zeros: its ones are the pasted box.
            let pasted = images.get(0).sum(Kind::Double).double_value(&[]) / 256.0;
            assert!(
                (pasted - (1.0 - mixed.lam)).abs() < 1e-9,
                "{pasted} vs {}",
                mixed.lam
            );
            let total = targets.sum(Kind::Double).double_value(&[]);
            assert!((total - 2.0).abs() < 1e-6);
        }
    }
}
