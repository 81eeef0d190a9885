//! RandAugment as timm configures it for DeiT and AutoFormer (`rand-m9-mstd0.5-inc1`): `ops`
//! operations drawn with replacement from the "increasing" set, each applied with probability
//! 0.5 at a magnitude drawn around `magnitude` (out of 10) with standard deviation `std`.

use anyhow::{bail, Result};
use rand::Rng;
use serde::Serialize;

use super::colour;
use crate::data::{image::Image, rand_distr_normal::standard_normal};

/// timm's fill for pixels that geometric operations uncover: the ImageNet mean, in bytes.
const FILL: [u8; 3] = [124, 116, 104];

/// A parsed RandAugment policy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RandAugment {
    /// Operations per image.
    pub ops: u32,
    /// Magnitude, 0..=10.
    pub magnitude: f64,
    /// Standard deviation of the per-operation magnitude (0: always `magnitude`).
    pub std: f64,
    /// Probability that each drawn operation is applied.
    pub probability: f64,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    AutoContrast,
    Equalize,
    Invert,
    Rotate,
    Posterize,
    Solarize,
    SolarizeAdd,
    Colour,
    Contrast,
    Brightness,
    Sharpness,
    ShearX,
    ShearY,
    TranslateX,
    TranslateY,
}

const OPS: [Op; 15] = [
    Op::AutoContrast,
    Op::Equalize,
    Op::Invert,
    Op::Rotate,
    Op::Posterize,
    Op::Solarize,
    Op::SolarizeAdd,
    Op::Colour,
    Op::Contrast,
    Op::Brightness,
    Op::Sharpness,
    Op::ShearX,
    Op::ShearY,
    Op::TranslateX,
    Op::TranslateY,
];

impl RandAugment {
    /// Parses timm's policy string: `rand-m<magnitude>[-n<ops>][-mstd<std>][-p<prob>][-inc1]`
    /// (`inc1` is the only operation set there is here and may be left out).
    ///
    /// ```
    /// # use nas_host::data::augment::RandAugment;
    /// let policy = RandAugment::parse("rand-m9-mstd0.5-inc1").unwrap();
    /// assert_eq!((policy.ops, policy.magnitude, policy.std), (2, 9.0, 0.5));
    /// ```
    pub fn parse(text: &str) -> Result<Self> {
        let mut parts = text.split('-');
        if parts.next() != Some("rand") {
            bail!("RandAugment policy `{text}` must start with `rand-` (e.g. \"rand-m9-mstd0.5-inc1\")");
        }
        let mut policy = RandAugment {
            ops: 2,
            magnitude: 10.0,
            std: 0.0,
            probability: 0.5,
        };
        for part in parts {
            let bad = || {
                anyhow::anyhow!("RandAugment policy `{text}`: cannot read `{part}` (known: m<magnitude>, n<ops>, mstd<std>, p<prob>, inc1)")
            };
            if let Some(v) = part.strip_prefix("mstd") {
                policy.std = v.parse().map_err(|_| bad())?;
            } else if let Some(v) = part.strip_prefix('m') {
                policy.magnitude = v.parse().map_err(|_| bad())?;
            } else if let Some(v) = part.strip_prefix('n') {
                policy.ops = v.parse().map_err(|_| bad())?;
            } else if let Some(v) = part.strip_prefix('p') {
                policy.probability = v.parse().map_err(|_| bad())?;
            } else if part != "inc1" {
                return Err(bad());
            }
        }
        if !(0.0..=10.0).contains(&policy.magnitude) || !(0.0..=1.0).contains(&policy.probability) {
            bail!("RandAugment policy `{text}`: magnitude must be in 0..=10 and p in 0..=1");
        }
        Ok(policy)
    }

    /// Applies the policy to `image`.
    pub fn apply(&self, image: &mut Image, rng: &mut impl Rng) {
        for _ in 0..self.ops {
            let op = OPS[rng.gen_range(0..OPS.len())];
            if rng.gen::<f64>() >= self.probability {
                continue;
            }
            let mut magnitude = self.magnitude;
            if self.std > 0.0 {
                magnitude += self.std * standard_normal(rng);
            }
            let level = magnitude.clamp(0.0, 10.0) / 10.0;
            apply_op(op, level, image, rng);
        }
    }
}

fn signed(value: f64, rng: &mut impl Rng) -> f64 {
    if rng.gen::<bool>() {
        -value
    } else {
        value
    }
}

/// One operation at `level` in [0, 1] (timm's level functions of the increasing set).
fn apply_op(op: Op, level: f64, image: &mut Image, rng: &mut impl Rng) {
    let enhance = |rng: &mut _| (1.0 + signed(level * 0.9, rng)) as f32;
    let (w, h) = (image.width as f64, image.height as f64);
    match op {
        Op::AutoContrast => colour::autocontrast(image),
        Op::Equalize => colour::equalize(image),
        Op::Invert => colour::invert(image),
        Op::Posterize => colour::posterize(image, 4 - (level * 4.0) as u32),
        Op::Solarize => colour::solarize(image, 256 - (level * 256.0) as u32),
        Op::SolarizeAdd => colour::solarize_add(image, (level * 110.0) as u32),
        Op::Colour => colour::saturation(image, enhance(rng)),
        Op::Contrast => colour::contrast(image, enhance(rng)),
        Op::Brightness => colour::brightness(image, enhance(rng)),
        Op::Sharpness => colour::sharpness(image, enhance(rng)),
        Op::Rotate => {
            let angle = signed(level * 30.0, rng).to_radians();
            let (sin, cos) = angle.sin_cos();
            // Output pixel -> input pixel: rotation about the centre.
            let (cx, cy) = (w / 2.0, h / 2.0);
            *image = affine(
                image,
                [
                    cos,
                    sin,
                    cx - cos * cx - sin * cy,
                    -sin,
                    cos,
                    cy + sin * cx - cos * cy,
                ],
            );
        }
        Op::ShearX => *image = affine(image, [1.0, signed(level * 0.3, rng), 0.0, 0.0, 1.0, 0.0]),
        Op::ShearY => *image = affine(image, [1.0, 0.0, 0.0, signed(level * 0.3, rng), 1.0, 0.0]),
        Op::TranslateX => {
            *image = affine(
                image,
                [1.0, 0.0, signed(level * 0.45, rng) * w, 0.0, 1.0, 0.0],
            )
        }
        Op::TranslateY => {
            *image = affine(
                image,
                [1.0, 0.0, 0.0, 0.0, 1.0, signed(level * 0.45, rng) * h],
            )
        }
    }
}

/// PIL's `Image.transform(AFFINE, [a, b, c, d, e, f])`: output pixel (x, y) takes the input at
/// (a x + b y + c, d x + e y + f), sampled bilinearly at pixel centres; outside is [`FILL`].
pub fn affine(image: &Image, m: [f64; 6]) -> Image {
    let (w, h, c) = (image.width, image.height, image.channels as usize);
    let mut out = Image::filled(w, h, image.channels, 0);
    let fill = |ch: usize| if c == 1 { FILL[1] } else { FILL[ch] };
    let sample = |x: i64, y: i64, ch: usize| -> f64 {
        if x < 0 || y < 0 || x >= w as i64 || y >= h as i64 {
            fill(ch) as f64
        } else {
            image.pixels[(y as usize * w as usize + x as usize) * c + ch] as f64
        }
    };
    for y in 0..h {
        for x in 0..w {
            let (ox, oy) = (x as f64 + 0.5, y as f64 + 0.5);
            let sx = m[0] * ox + m[1] * oy + m[2] - 0.5;
            let sy = m[3] * ox + m[4] * oy + m[5] - 0.5;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as i64, y0 as i64);
            let at = (y as usize * w as usize + x as usize) * c;
            for ch in 0..c {
                let inside = sx > -1.0 && sy > -1.0 && sx < w as f64 && sy < h as f64;
                out.pixels[at + ch] = if inside {
                    let top = sample(x0, y0, ch) * (1.0 - fx) + sample(x0 + 1, y0, ch) * fx;
                    let bottom =
                        sample(x0, y0 + 1, ch) * (1.0 - fx) + sample(x0 + 1, y0 + 1, ch) * fx;
                    (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8
                } else {
                    fill(ch)
                };
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_strings_parse_and_bad_ones_are_named() {
        let p = RandAugment::parse("rand-m7-n3-mstd1-p0.8").unwrap();
        assert_eq!(
            (p.ops, p.magnitude, p.std, p.probability),
            (3, 7.0, 1.0, 0.8)
        );
        let err = RandAugment::parse("rand-m9-x2").unwrap_err().to_string();
        assert!(err.contains("`x2`"), "{err}");
        assert!(RandAugment::parse("auto-m9").is_err());
    }

    #[test]
    fn identity_affine_is_exact_and_translation_moves_pixels() {
        let image = Image {
            width: 8,
            height: 6,
            channels: 3,
            pixels: (0..144).map(|v| v as u8).collect(),
        };
        assert_eq!(affine(&image, [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]), image);
        let moved = affine(&image, [1.0, 0.0, 2.0, 0.0, 1.0, 0.0]);
        assert_eq!(moved.at(0, 0, 0), image.at(2, 0, 0));
        assert_eq!(moved.at(7, 3, 1), FILL[1]);
    }

    #[test]
    fn the_policy_keeps_the_shape_and_is_seeded() {
        let policy = RandAugment::parse("rand-m9-mstd0.5-inc1").unwrap();
        let image = Image {
            width: 12,
            height: 10,
            channels: 3,
            pixels: (0..360).map(|v| (v * 7 % 256) as u8).collect(),
        };
        let run = |seed| {
            let mut copy = image.clone();
            let mut rng = nas_sdk::rng::stream(seed, 0, "test");
            for _ in 0..20 {
                policy.apply(&mut copy, &mut rng);
            }
            copy
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        assert_eq!(run(1).pixels.len(), 360);
    }
}
