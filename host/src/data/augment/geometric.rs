//! Geometric training transforms: torchvision's `RandomResizedCrop`, `RandomCrop(padding=..)` and
//! `RandomHorizontalFlip`, and the evaluation view (resize the shorter side, centre crop).

use rand::Rng;

use crate::data::image::{Image, Window};

/// `RandomResizedCrop`'s window: 10 tries at an area fraction in `scale` and an aspect ratio
/// (width / height) log-uniform in `ratio` that fit in the image, else the centre crop of the
/// largest window whose ratio is clamped into `ratio` (torchvision's fallback).
pub fn random_resized_window(
    width: u32,
    height: u32,
    scale: [f64; 2],
    ratio: [f64; 2],
    rng: &mut impl Rng,
) -> Window {
    let (w, h) = (width as f64, height as f64);
    let area = w * h;
    let log_ratio = [ratio[0].ln(), ratio[1].ln()];
    for _ in 0..10 {
        let target_area = area * rng.gen_range(scale[0]..=scale[1]);
        let aspect = rng.gen_range(log_ratio[0]..=log_ratio[1]).exp();
        let crop_w = (target_area * aspect).sqrt().round();
        let crop_h = (target_area / aspect).sqrt().round();
        if crop_w > 0.0 && crop_w <= w && crop_h > 0.0 && crop_h <= h {
            let top = rng.gen_range(0..=(h - crop_h) as u32) as f64;
            let left = rng.gen_range(0..=(w - crop_w) as u32) as f64;
            return Window {
                left,
                top,
                width: crop_w,
                height: crop_h,
            };
        }
    }
    let in_ratio = w / h;
    let (crop_w, crop_h) = if in_ratio < ratio[0] {
        (w, (w / ratio[0]).round())
    } else if in_ratio > ratio[1] {
        ((h * ratio[1]).round(), h)
    } else {
        (w, h)
    };
    Window {
        left: ((w - crop_w) / 2.0).floor(),
        top: ((h - crop_h) / 2.0).floor(),
        width: crop_w,
        height: crop_h,
    }
}

/// `RandomCrop(size, padding=pad)`: the image padded by `pad` zero pixels on every side, then a
/// `size x size` window at a uniform offset. Returns the window's top-left corner in the
/// unpadded image's coordinates (may be negative).
pub fn padded_crop_offset(
    width: u32,
    height: u32,
    pad: u32,
    size: u32,
    rng: &mut impl Rng,
) -> (i64, i64) {
    let span_x = (width + 2 * pad).saturating_sub(size);
    let span_y = (height + 2 * pad).saturating_sub(size);
    let left = rng.gen_range(0..=span_x) as i64 - pad as i64;
    let top = rng.gen_range(0..=span_y) as i64 - pad as i64;
    (left, top)
}

/// The evaluation view, as torchvision's `Resize(int(size / crop_fraction))` then
/// `CenterCrop(size)`: the shorter side resized to `size / crop_fraction` (aspect kept), then the
/// centre `size x size` crop (timm's `crop_pct`; 1.0 resizes the shorter side to `size`).
pub fn centre_view(image: &Image, size: u32, crop_fraction: f64) -> Image {
    let short = ((size as f64 / crop_fraction).floor() as u32).max(size);
    let (w, h) = (image.width, image.height);
    let (rw, rh) = if w <= h {
        (short, ((short as u64 * h as u64) / w as u64) as u32)
    } else {
        (((short as u64 * w as u64) / h as u64) as u32, short)
    };
    let resized = image.resize(rw.max(size), rh.max(size));
    let left = ((resized.width - size) as f64 / 2.0).round() as i64;
    let top = ((resized.height - size) as f64 / 2.0).round() as i64;
    resized.crop_padded(left, top, size, size, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_resized_windows_stay_in_bounds_and_in_their_ranges() {
        let mut rng = nas_sdk::rng::stream(1, 0, "test");
        let (scale, ratio) = ([0.08, 1.0], [3.0 / 4.0, 4.0 / 3.0]);
        for (width, height) in [(500u32, 375u32), (224, 224), (37, 640)] {
            let mut fell_back = 0;
            for _ in 0..2000 {
                let w = random_resized_window(width, height, scale, ratio, &mut rng);
                assert!(w.left >= 0.0 && w.top >= 0.0);
                assert!(w.left + w.width <= width as f64 && w.top + w.height <= height as f64);
                let area = w.width * w.height / (width as f64 * height as f64);
                let aspect = w.width / w.height;
                // Rounding to whole pixels moves area and ratio a little off their ranges.
                let slack = 2.0 / w.width.min(w.height);
                let centred = w.left == ((width as f64 - w.width) / 2.0).floor()
                    && w.top == ((height as f64 - w.height) / 2.0).floor();
                let in_range = area >= scale[0] * (1.0 - 2.0 * slack)
                    && area <= scale[1]
                    && aspect >= ratio[0] * (1.0 - slack)
                    && aspect <= ratio[1] * (1.0 + slack);
                if !in_range {
                    assert!(
                        centred,
                        "{w:?} of {width}x{height} is neither in range nor centred"
                    );
                    fell_back += 1;
                }
            }
            assert_eq!(fell_back, 0);
        }
    }

    #[test]
    fn a_strip_no_window_fits_falls_back_to_the_centre() {
        // A 37x640 strip fits no window of ratio >= 3/4 at scale >= 0.08: always the fallback,
        // the full width and the height of the clamped ratio, centred.
        let mut rng = nas_sdk::rng::stream(7, 0, "test");
        for _ in 0..100 {
            let w = random_resized_window(37, 640, [0.08, 1.0], [0.75, 4.0 / 3.0], &mut rng);
            let expected = Window {
                left: 0.0,
                top: 295.0,
                width: 37.0,
                height: 49.0,
            };
            assert_eq!(w, expected);
        }
    }

    #[test]
    fn fallback_is_torchvisions_centre_crop() {
        // No window of ratio in [1, 1] and scale in [0.9, 1] fits a 10x100 image: the fallback
        // is the centre crop of the widest window with the clamped ratio.
        let mut rng = nas_sdk::rng::stream(2, 0, "test");
        let w = random_resized_window(10, 100, [0.9, 1.0], [1.0, 1.0], &mut rng);
        assert_eq!(
            w,
            Window {
                left: 0.0,
                top: 45.0,
                width: 10.0,
                height: 10.0
            }
        );
    }

    #[test]
    fn padded_crop_offsets_cover_the_padding_and_no_more() {
        let mut rng = nas_sdk::rng::stream(3, 0, "test");
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..5000 {
            let (left, top) = padded_crop_offset(32, 32, 4, 32, &mut rng);
            assert!((-4..=4).contains(&left) && (-4..=4).contains(&top));
            seen.insert((left, top));
        }
        assert_eq!(seen.len(), 81);
    }

    #[test]
    fn centre_view_keeps_the_middle() {
        // A 60x40 image whose middle 40x40 is white and whose sides are black.
        let mut image = Image::filled(60, 40, 1, 0);
        for y in 0..40 {
            for x in 10..50 {
                image.pixels[y * 60 + x] = 255;
            }
        }
        let view = centre_view(&image, 20, 1.0);
        assert_eq!((view.width, view.height), (20, 20));
        // Resized to 30x20 first, so the white middle is columns 5..25, cropped to 0..20; only
        // the outermost columns see the black through the filter.
        for y in 0..20 {
            for x in 1..19 {
                assert_eq!(view.pixels[y * 20 + x], 255, "({x}, {y})");
            }
        }
        let tighter = centre_view(&image, 20, 0.5);
        assert!(tighter.pixels.iter().all(|&p| p == 255));
    }
}
