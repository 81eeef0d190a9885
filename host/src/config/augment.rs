//! `[data.augment]`: training augmentation as a published preset plus overrides of its values,
//! and what the input pipeline does with an image it cannot read.

use serde::{Deserialize, Serialize};

/// `[data.augment]`. `preset` picks the recipe of a paper family; every other field, when set,
/// overrides that preset's value.
///
/// | preset | transforms |
/// |---|---|
/// | `none` | images as they are (image folders: the evaluation view) |
/// | `cifar` | pad 4 + random crop to the resolution + horizontal flip (NAS-Bench-201, SPOS, FairNAS, DYNAS) |
/// | `imagenet` | RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3) + flip + colour jitter 0.4 (OFA, BigNAS, AttentiveNAS) |
/// | `vit`, `autoformer` | RandomResizedCrop + flip + RandAugment `rand-m9-mstd0.5-inc1` + random erasing 0.25 + Mixup 0.8 / CutMix 1.0 (switch 0.5) with label smoothing 0.1 (DeiT, AutoFormer) |
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentSection {
    /// `none`, `cifar`, `imagenet`, `vit` or `autoformer`.
    pub preset: String,
    /// Probability of a horizontal flip.
    pub flip: Option<f64>,
    /// Zero padding before the random crop (`cifar`).
    pub pad: Option<u32>,
    /// RandomResizedCrop's area fraction range.
    pub scale: Option<[f64; 2]>,
    /// RandomResizedCrop's aspect ratio (width / height) range.
    pub ratio: Option<[f64; 2]>,
    /// Colour jitter strength for brightness, contrast and saturation (0 = off).
    pub color_jitter: Option<f64>,
    /// timm RandAugment policy, e.g. `rand-m9-mstd0.5-inc1` (empty = off).
    pub rand_augment: Option<String>,
    /// Probability of random erasing (0 = off).
    pub erasing: Option<f64>,
    /// Mixup's Beta alpha (0 = off).
    pub mixup: Option<f64>,
    /// CutMix's Beta alpha (0 = off).
    pub cutmix: Option<f64>,
    /// Probability that a batch is mixed.
    pub mix_probability: Option<f64>,
    /// With Mixup and CutMix both on: probability of CutMix.
    pub switch_probability: Option<f64>,
    /// Label smoothing of the mixed soft targets.
    pub label_smoothing: Option<f64>,
    /// Evaluation view of image folders: the shorter side is resized to `resolution /
    /// eval_crop`, then the centre is cropped (timm's `crop_pct`; 0.875 for the ImageNet-family
    /// presets, 1.0 otherwise).
    pub eval_crop: Option<f64>,
}

impl Default for AugmentSection {
    fn default() -> Self {
        AugmentSection {
            preset: "none".into(),
            flip: None,
            pad: None,
            scale: None,
            ratio: None,
            color_jitter: None,
            rand_augment: None,
            erasing: None,
            mixup: None,
            cutmix: None,
            mix_probability: None,
            switch_probability: None,
            label_smoothing: None,
            eval_crop: None,
        }
    }
}

/// `data.on_bad_image`: what a training run does with an image that cannot be read or decoded.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BadImagePolicy {
    /// Leave it out of its batch, warn once, and count it in `metrics.jsonl`.
    #[default]
    Skip,
    /// Stop the run, naming the file.
    Fail,
}
