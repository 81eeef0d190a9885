//! Colour transforms on 8-bit images: the PIL `ImageEnhance` / `ImageOps` operations that
//! torchvision's `ColorJitter` and timm's RandAugment are made of.

use rand::{seq::SliceRandom, Rng};

use crate::data::image::Image;

/// Luma of an RGB pixel, as PIL's `convert("L")` (ITU-R 601-2).
fn luma(r: u8, g: u8, b: u8) -> f32 {
    (r as f32 * 299.0 + g as f32 * 587.0 + b as f32 * 114.0) / 1000.0
}

fn clamp_round(value: f32) -> u8 {
    value.round().clamp(0.0, 255.0) as u8
}

/// `degenerate + factor * (image - degenerate)` per byte: PIL's `Image.blend(degenerate, image,
/// factor)`, the core of every `ImageEnhance` class.
fn blend_towards(image: &mut Image, degenerate: impl Fn(usize) -> f32, factor: f32) {
    for (i, p) in image.pixels.iter_mut().enumerate() {
        let d = degenerate(i);
        *p = clamp_round(d + factor * (*p as f32 - d));
    }
}

/// Brightness: blend with black.
pub fn brightness(image: &mut Image, factor: f32) {
    blend_towards(image, |_| 0.0, factor);
}

/// Contrast: blend with the mean grey level of the image.
pub fn contrast(image: &mut Image, factor: f32) {
    let c = image.channels as usize;
    let pixels = image.pixels.len() / c;
    let total: f32 = if c == 3 {
        image
            .pixels
            .chunks_exact(3)
            .map(|p| luma(p[0], p[1], p[2]))
            .sum()
    } else {
        image.pixels.iter().map(|&p| p as f32).sum()
    };
    let mean = (total / pixels.max(1) as f32 + 0.5).floor();
    blend_towards(image, |_| mean, factor);
}

/// Saturation (PIL's `Color`): blend with the grey version of the image; grey images are left
/// as they are.
pub fn saturation(image: &mut Image, factor: f32) {
    if image.channels != 3 {
        return;
    }
    let grey: Vec<f32> = image
        .pixels
        .chunks_exact(3)
        .map(|p| luma(p[0], p[1], p[2]).round())
        .collect();
    blend_towards(image, |i| grey[i / 3], factor);
}

/// Sharpness: blend with PIL's 3x3 smoothing filter (centre weight 5, others 1); the border
/// pixels are kept.
pub fn sharpness(image: &mut Image, factor: f32) {
    let (w, h, c) = (
        image.width as usize,
        image.height as usize,
        image.channels as usize,
    );
    if w < 3 || h < 3 {
        return;
    }
    let source = image.pixels.clone();
    let mut smooth: Vec<f32> = source.iter().map(|&p| p as f32).collect();
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            for ch in 0..c {
                let mut sum = 0.0;
                for dy in [-1i64, 0, 1] {
                    for dx in [-1i64, 0, 1] {
                        let at = ((y as i64 + dy) as usize * w + (x as i64 + dx) as usize) * c + ch;
                        let weight = if dx == 0 && dy == 0 { 5.0 } else { 1.0 };
                        sum += weight * source[at] as f32;
                    }
                }
                smooth[(y * w + x) * c + ch] = (sum / 13.0).round();
            }
        }
    }
    blend_towards(image, |i| smooth[i], factor);
}

/// Every byte through `table`.
fn map(image: &mut Image, table: &[u8; 256]) {
    for p in image.pixels.iter_mut() {
        *p = table[*p as usize];
    }
}

/// Per channel, the darkest value to 0 and the lightest to 255 (PIL `autocontrast`, no cutoff).
pub fn autocontrast(image: &mut Image) {
    let c = image.channels as usize;
    for channel in 0..c {
        let values = image.pixels.iter().skip(channel).step_by(c);
        let (lo, hi) = values.fold((255u8, 0u8), |(lo, hi), &p| (lo.min(p), hi.max(p)));
        if hi <= lo {
            continue;
        }
        let scale = 255.0 / (hi - lo) as f32;
        for p in image.pixels.iter_mut().skip(channel).step_by(c) {
            *p = ((*p as f32 - lo as f32) * scale).clamp(0.0, 255.0) as u8;
        }
    }
}

/// Per channel histogram equalisation (PIL `equalize`).
pub fn equalize(image: &mut Image) {
    let c = image.channels as usize;
    for channel in 0..c {
        let mut histogram = [0usize; 256];
        for &p in image.pixels.iter().skip(channel).step_by(c) {
            histogram[p as usize] += 1;
        }
        let last_used = histogram.iter().rposition(|&n| n > 0).unwrap_or(0);
        let total: usize = histogram.iter().sum();
        let step = (total - histogram[last_used]) / 255;
        if step == 0 {
            continue;
        }
        let mut table = [0u8; 256];
        let mut running = step / 2;
        for (value, count) in histogram.iter().enumerate() {
            table[value] = (running / step).min(255) as u8;
            running += count;
        }
        for p in image.pixels.iter_mut().skip(channel).step_by(c) {
            *p = table[*p as usize];
        }
    }
}

/// `255 - p`.
pub fn invert(image: &mut Image) {
    map(image, &std::array::from_fn(|v| 255 - v as u8));
}

/// Keeps the top `bits` bits of every byte.
pub fn posterize(image: &mut Image, bits: u32) {
    let mask = !((1u32 << (8 - bits.min(8))) - 1) as u8;
    map(image, &std::array::from_fn(|v| v as u8 & mask));
}

/// Inverts every byte at or above `threshold`.
pub fn solarize(image: &mut Image, threshold: u32) {
    map(
        image,
        &std::array::from_fn(|v| {
            if v as u32 >= threshold {
                255 - v as u8
            } else {
                v as u8
            }
        }),
    );
}

/// Adds `amount` to every byte below 128 (timm's `solarize_add`).
pub fn solarize_add(image: &mut Image, amount: u32) {
    map(
        image,
        &std::array::from_fn(|v| {
            if v < 128 {
                (v as u32 + amount).min(255) as u8
            } else {
                v as u8
            }
        }),
    );
}

/// torchvision's `ColorJitter(brightness, contrast, saturation)`: each factor uniform in
/// `[max(0, 1 - s), 1 + s]`, applied in a random order.
pub fn jitter(image: &mut Image, strength: [f32; 3], rng: &mut impl Rng) {
    let mut order = [0usize, 1, 2];
    order.shuffle(rng);
    for op in order {
        let s = strength[op];
        if s <= 0.0 {
            continue;
        }
        let factor = rng.gen_range((1.0 - s).max(0.0)..=1.0 + s);
        match op {
            0 => brightness(image, factor),
            1 => contrast(image, factor),
            _ => saturation(image, factor),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey_ramp() -> Image {
        Image {
            width: 16,
            height: 16,
            channels: 1,
            pixels: (0..256).map(|v| (v / 2 + 32) as u8).collect(),
        }
    }

    #[test]
    fn enhancements_at_factor_one_are_the_identity() {
        let image = Image {
            width: 4,
            height: 4,
            channels: 3,
            pixels: (0..48).map(|v| (v * 5) as u8).collect(),
        };
        for op in [brightness, contrast, saturation, sharpness] {
            let mut copy = image.clone();
            op(&mut copy, 1.0);
            assert_eq!(copy, image);
        }
        let mut dark = image.clone();
        brightness(&mut dark, 0.0);
        assert!(dark.pixels.iter().all(|&p| p == 0));
        let mut grey = image.clone();
        saturation(&mut grey, 0.0);
        assert!(grey.pixels.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));
    }

    #[test]
    fn autocontrast_and_equalize_stretch_to_the_full_range() {
        let mut image = grey_ramp();
        autocontrast(&mut image);
        assert_eq!(*image.pixels.iter().min().unwrap(), 0);
        assert_eq!(*image.pixels.iter().max().unwrap(), 255);
        // Equalisation needs more pixels than grey levels to move anything (PIL's rule).
        let mut image = Image {
            width: 64,
            height: 64,
            channels: 1,
            pixels: (0..4096).map(|v| (v / 32 + 32) as u8).collect(),
        };
        equalize(&mut image);
        assert_eq!(*image.pixels.iter().min().unwrap(), 0);
        assert!(*image.pixels.iter().max().unwrap() >= 250);
    }

    #[test]
    fn lookup_operations_match_their_definitions() {
        let mut image = grey_ramp();
        invert(&mut image);
        assert_eq!(image.pixels[0], 255 - 32);
        let mut image = grey_ramp();
        posterize(&mut image, 2);
        assert!(image.pixels.iter().all(|p| p % 64 == 0));
        let mut image = grey_ramp();
        solarize(&mut image, 100);
        assert!(image.pixels.iter().all(|&p| p < 100 || p <= 255 - 100));
        let mut image = grey_ramp();
        solarize_add(&mut image, 50);
        assert_eq!(image.pixels[0], 82);
        assert_eq!(image.pixels[255], 159);
    }
}
