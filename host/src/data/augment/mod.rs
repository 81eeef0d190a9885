//! Training augmentation: a [`Recipe`] resolved from `[data.augment]` (a published preset plus
//! overrides) and applied per sample, every draw from a stream keyed by (seed, epoch, sample
//! index), so neither worker count, sharding nor a resume changes an image.
//!
//! Per sample, in this order: geometry (random resized crop, or padded random crop, or the
//! evaluation view) -> horizontal flip -> colour jitter -> RandAugment -> normalise -> random
//! erasing. Per batch, after collation: Mixup / CutMix ([`MixSettings`]).

use anyhow::{bail, Result};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::image::Image;
use crate::config::AugmentSection;

mod colour;
mod erasing;
mod geometric;
mod mix;
mod rand_augment;

pub use geometric::{centre_view, padded_crop_offset, random_resized_window};
pub use mix::{MixSettings, Mixed};
pub use rand_augment::RandAugment;

/// How a training image gets its geometry.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Geometry {
    /// As it is (in-memory datasets) or the evaluation view (image folders).
    Fixed,
    /// The evaluation view, then zero padding and a random crop back to the resolution.
    PaddedCrop {
        /// Padding on every side.
        pad: u32,
    },
    /// RandomResizedCrop to the resolution.
    ResizedCrop {
        /// Area fraction range.
        scale: [f64; 2],
        /// Aspect ratio range.
        ratio: [f64; 2],
    },
}

/// A resolved augmentation recipe (what `run.json` records).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recipe {
    /// The preset it came from.
    pub preset: String,
    /// Geometry.
    pub geometry: Geometry,
    /// Horizontal flip probability.
    pub flip: f64,
    /// Colour jitter strength (brightness, contrast, saturation).
    pub color_jitter: f64,
    /// RandAugment, if on.
    pub rand_augment: Option<RandAugment>,
    /// Random erasing probability.
    pub erasing: f64,
    /// Mixup / CutMix, if on.
    pub mix: Option<MixSettings>,
    /// Crop fraction of the evaluation view.
    pub eval_crop: f64,
}

fn probability(field: &str, value: f64) -> Result<f64> {
    if !(0.0..=1.0).contains(&value) {
        bail!("config field `data.augment.{field}` must be a probability in [0, 1], got {value}");
    }
    Ok(value)
}

fn range(field: &str, value: [f64; 2], upper: Option<f64>) -> Result<[f64; 2]> {
    let ok = value[0] > 0.0 && value[0] <= value[1] && upper.is_none_or(|u| value[1] <= u);
    if !ok || !value[1].is_finite() {
        bail!(
            "config field `data.augment.{field}` must be [low, high] with 0 < low <= high{}, got {value:?}",
            upper.map_or(String::new(), |u| format!(" <= {u}"))
        );
    }
    Ok(value)
}

impl Recipe {
    /// The recipe `section` configures.
    pub fn resolve(section: &AugmentSection) -> Result<Recipe> {
        let imagenet_crop = Geometry::ResizedCrop {
            scale: [0.08, 1.0],
            ratio: [3.0 / 4.0, 4.0 / 3.0],
        };
        let none = Recipe {
            preset: section.preset.clone(),
            geometry: Geometry::Fixed,
            flip: 0.0,
            color_jitter: 0.0,
            rand_augment: None,
            erasing: 0.0,
            mix: None,
            eval_crop: 1.0,
        };
        let mut recipe = match section.preset.as_str() {
            "none" => none,
            "cifar" => Recipe {
                geometry: Geometry::PaddedCrop { pad: 4 },
                flip: 0.5,
                ..none
            },
            "imagenet" => Recipe {
                geometry: imagenet_crop,
                flip: 0.5,
                color_jitter: 0.4,
                eval_crop: 0.875,
                ..none
            },
            "vit" | "autoformer" => Recipe {
                geometry: imagenet_crop,
                flip: 0.5,
                rand_augment: Some(RandAugment::parse("rand-m9-mstd0.5-inc1")?),
                erasing: 0.25,
                mix: Some(MixSettings {
                    mixup_alpha: 0.8,
                    cutmix_alpha: 1.0,
                    probability: 1.0,
                    switch_probability: 0.5,
                    label_smoothing: 0.1,
                }),
                eval_crop: 0.875,
                ..none
            },
            other => bail!(
                "config field `data.augment.preset`: unknown preset `{other}`; use none, cifar, imagenet, vit or autoformer"
            ),
        };
        if let Some(flip) = section.flip {
            recipe.flip = probability("flip", flip)?;
        }
        if let Some(pad) = section.pad {
            recipe.geometry = Geometry::PaddedCrop { pad };
        }
        if section.scale.is_some() || section.ratio.is_some() {
            let (mut scale, mut ratio) = match recipe.geometry {
                Geometry::ResizedCrop { scale, ratio } => (scale, ratio),
                _ => ([0.08, 1.0], [3.0 / 4.0, 4.0 / 3.0]),
            };
            if let Some(value) = section.scale {
                scale = range("scale", value, Some(1.0))?;
            }
            if let Some(value) = section.ratio {
                ratio = range("ratio", value, None)?;
            }
            recipe.geometry = Geometry::ResizedCrop { scale, ratio };
        }
        if let Some(strength) = section.color_jitter {
            if !(0.0..=1.0).contains(&strength) {
                bail!("config field `data.augment.color_jitter` must be in [0, 1], got {strength}");
            }
            recipe.color_jitter = strength;
        }
        if let Some(policy) = &section.rand_augment {
            recipe.rand_augment = if policy.is_empty() {
                None
            } else {
                Some(RandAugment::parse(policy).map_err(|e| {
                    anyhow::anyhow!("config field `data.augment.rand_augment`: {e}")
                })?)
            };
        }
        if let Some(p) = section.erasing {
            recipe.erasing = probability("erasing", p)?;
        }
        let mix_fields = [
            section.mixup,
            section.cutmix,
            section.mix_probability,
            section.switch_probability,
            section.label_smoothing,
        ];
        if mix_fields.iter().any(Option::is_some) {
            let mut mix = recipe.mix.clone().unwrap_or(MixSettings {
                mixup_alpha: 0.0,
                cutmix_alpha: 0.0,
                probability: 1.0,
                switch_probability: 0.5,
                label_smoothing: 0.0,
            });
            for (field, value, target) in [
                ("mixup", section.mixup, &mut mix.mixup_alpha),
                ("cutmix", section.cutmix, &mut mix.cutmix_alpha),
            ] {
                if let Some(alpha) = value {
                    if !(alpha.is_finite() && alpha >= 0.0) {
                        bail!("config field `data.augment.{field}` must be a Beta alpha >= 0 (0 = off), got {alpha}");
                    }
                    *target = alpha;
                }
            }
            if let Some(p) = section.mix_probability {
                mix.probability = probability("mix_probability", p)?;
            }
            if let Some(p) = section.switch_probability {
                mix.switch_probability = probability("switch_probability", p)?;
            }
            if let Some(s) = section.label_smoothing {
                mix.label_smoothing = probability("label_smoothing", s)?;
            }
            recipe.mix = mix.enabled().then_some(mix);
        }
        if let Some(crop) = section.eval_crop {
            if !(crop > 0.0 && crop <= 1.0) {
                bail!("config field `data.augment.eval_crop` must be in (0, 1], got {crop}");
            }
            recipe.eval_crop = crop;
        }
        Ok(recipe)
    }

    /// Whether training images are used as they are (no per-sample randomness, no mixing).
    pub fn is_identity(&self) -> bool {
        self.geometry == Geometry::Fixed
            && self.flip == 0.0
            && self.color_jitter == 0.0
            && self.rand_augment.is_none()
            && self.erasing == 0.0
            && self.mix.is_none()
    }

    /// The evaluation view of `image` at `size` (what evaluation, search and BN calibration see).
    pub fn eval_view(&self, image: &Image, size: u32) -> Image {
        if image.width == size && image.height == size {
            return image.clone();
        }
        centre_view(image, size, self.eval_crop)
    }

    /// The augmented `size x size` training view of `image`, normalised into `out` (CHW).
    pub fn train_view(
        &self,
        image: &Image,
        size: u32,
        mean: &[f32],
        std: &[f32],
        rng: &mut ChaCha8Rng,
        out: &mut [f32],
    ) {
        let mut view = match &self.geometry {
            Geometry::Fixed => self.eval_view(image, size),
            Geometry::PaddedCrop { pad } => {
                let base = self.eval_view(image, size);
                let (left, top) = padded_crop_offset(size, size, *pad, size, rng);
                base.crop_padded(left, top, size, size, 0)
            }
            Geometry::ResizedCrop { scale, ratio } => {
                let window = random_resized_window(image.width, image.height, *scale, *ratio, rng);
                image.resize_window(window, size, size)
            }
        };
        if self.flip > 0.0 && rng.gen::<f64>() < self.flip {
            view = view.flip_horizontal();
        }
        if self.color_jitter > 0.0 {
            let s = self.color_jitter as f32;
            colour::jitter(&mut view, [s, s, s], rng);
        }
        if let Some(policy) = &self.rand_augment {
            policy.apply(&mut view, rng);
        }
        view.normalise_into(mean, std, out);
        if self.erasing > 0.0 {
            let (c, s) = (view.channels as usize, size as usize);
            erasing::erase(out, c, s, s, self.erasing, rng);
        }
    }
}

/// The stream of sample `index`'s draws in `epoch`.
pub fn sample_rng(seed: u64, epoch: u64, index: u64) -> ChaCha8Rng {
    let mut rng = nas_sdk::rng::stream(seed, epoch, "augment");
    rng.set_stream(index);
    rng
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(preset: &str) -> AugmentSection {
        AugmentSection {
            preset: preset.into(),
            ..AugmentSection::default()
        }
    }

    #[test]
    fn presets_resolve_to_their_published_values() {
        assert!(Recipe::resolve(&section("none")).unwrap().is_identity());
        let cifar = Recipe::resolve(&section("cifar")).unwrap();
        assert_eq!(cifar.geometry, Geometry::PaddedCrop { pad: 4 });
        assert_eq!(cifar.flip, 0.5);
        let vit = Recipe::resolve(&section("autoformer")).unwrap();
        let mix = vit.mix.unwrap();
        assert_eq!(
            (mix.mixup_alpha, mix.cutmix_alpha, mix.label_smoothing),
            (0.8, 1.0, 0.1)
        );
        assert_eq!(vit.erasing, 0.25);
        let err = Recipe::resolve(&section("fancy")).unwrap_err().to_string();
        assert!(
            err.contains("`fancy`") && err.contains("data.augment.preset"),
            "{err}"
        );
        let mut bad = section("imagenet");
        bad.scale = Some([0.5, 2.0]);
        let err = Recipe::resolve(&bad).unwrap_err().to_string();
        assert!(err.contains("data.augment.scale"), "{err}");
        let mut off = section("vit");
        off.mixup = Some(0.0);
        off.cutmix = Some(0.0);
        assert!(Recipe::resolve(&off).unwrap().mix.is_none());
    }

    #[test]
    fn cifar_preset_equals_a_hand_computed_crop_and_flip() {
        let recipe = Recipe::resolve(&section("cifar")).unwrap();
        let mut image = Image::filled(8, 8, 1, 0);
        for (i, p) in image.pixels.iter_mut().enumerate() {
            *p = i as u8;
        }
        let (mean, std) = ([0.0f32], [1.0f32]);
        for index in 0..50 {
            let mut out = vec![0.0; 64];
            recipe.train_view(
                &image,
                8,
                &mean,
                &std,
                &mut sample_rng(9, 2, index),
                &mut out,
            );
            // Replay the same draws by hand: offsets, then the flip.
            let mut rng = sample_rng(9, 2, index);
            let (left, top) = padded_crop_offset(8, 8, 4, 8, &mut rng);
            let flip = rng.gen::<f64>() < 0.5;
            for y in 0..8i64 {
                for x in 0..8i64 {
                    let sx = if flip { 7 - x } else { x } + left;
                    let sy = y + top;
                    let inside = (0..8).contains(&sx) && (0..8).contains(&sy);
                    let expected = if inside {
                        (sy * 8 + sx) as f32 / 255.0
                    } else {
                        0.0
                    };
                    assert_eq!(
                        out[(y * 8 + x) as usize],
                        expected,
                        "sample {index} at ({x}, {y})"
                    );
                }
            }
        }
    }

    #[test]
    fn draws_are_keyed_by_seed_epoch_and_index() {
        let recipe = Recipe::resolve(&section("vit")).unwrap();
        let image = Image {
            width: 40,
            height: 30,
            channels: 3,
            pixels: (0..3600).map(|v| (v % 251) as u8).collect(),
        };
        let view = |seed, epoch, index| {
            let mut out = vec![0.0; 3 * 16 * 16];
            let (m, s) = ([0.5f32; 3], [0.25f32; 3]);
            recipe.train_view(
                &image,
                16,
                &m,
                &s,
                &mut sample_rng(seed, epoch, index),
                &mut out,
            );
            out
        };
        assert_eq!(view(1, 0, 7), view(1, 0, 7));
        assert_ne!(view(1, 0, 7), view(1, 0, 8));
        assert_ne!(view(1, 0, 7), view(1, 1, 7));
        assert_ne!(view(1, 0, 7), view(2, 0, 7));
    }
}
