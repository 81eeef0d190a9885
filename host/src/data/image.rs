//! An 8-bit image (rows of interleaved channels) and the pixel operations every transform is
//! built from: crop with padding, resize of a window, mirror, normalise into a CHW float buffer.

use fast_image_resize::{
    images::{Image as ResizeImage, ImageRef},
    FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer,
};

/// An 8-bit image: `height` rows of `width` pixels of `channels` (1 = grey, 3 = RGB) bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Pixels per row.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Bytes per pixel: 1 or 3.
    pub channels: u8,
    /// `height * width * channels` bytes, row-major, channels interleaved (HWC).
    pub pixels: Vec<u8>,
}

/// A window of an image in pixel coordinates; may reach outside it (padding).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    /// Left edge.
    pub left: f64,
    /// Top edge.
    pub top: f64,
    /// Width.
    pub width: f64,
    /// Height.
    pub height: f64,
}

impl Image {
    /// An image of one colour.
    pub fn filled(width: u32, height: u32, channels: u8, value: u8) -> Self {
        Image {
            width,
            height,
            channels,
            pixels: vec![value; (width * height) as usize * channels as usize],
        }
    }

    /// The byte of channel `c` at (`x`, `y`).
    pub fn at(&self, x: u32, y: u32, c: u8) -> u8 {
        self.pixels[self.offset(x, y) + c as usize]
    }

    fn offset(&self, x: u32, y: u32) -> usize {
        ((y * self.width + x) as usize) * self.channels as usize
    }

    /// The `width x height` window whose top-left corner is (`left`, `top`); pixels outside the
    /// image are `fill` (the zero padding of torchvision's `RandomCrop(padding=..)`).
    pub fn crop_padded(&self, left: i64, top: i64, width: u32, height: u32, fill: u8) -> Image {
        let mut out = Image::filled(width, height, self.channels, fill);
        let c = self.channels as usize;
        for row in 0..height as i64 {
            let y = top + row;
            if y < 0 || y >= self.height as i64 {
                continue;
            }
            // Columns of the window that fall inside the image.
            let first = (-left).max(0);
            let last = (self.width as i64 - left).min(width as i64);
            if first >= last {
                continue;
            }
            let src = self.offset((left + first) as u32, y as u32);
            let dst = out.offset(first as u32, row as u32);
            let len = (last - first) as usize * c;
            out.pixels[dst..dst + len].copy_from_slice(&self.pixels[src..src + len]);
        }
        out
    }

    /// The window `window` (whole pixels, inside the image) resized to `width x height` with a
    /// bilinear filter that widens when shrinking (antialiased, as PIL's resize). As
    /// torchvision's crop-then-resize, no pixel outside the window contributes.
    pub fn resize_window(&self, window: Window, width: u32, height: u32) -> Image {
        let whole = window.left == 0.0
            && window.top == 0.0
            && window.width == self.width as f64
            && window.height == self.height as f64;
        if !whole {
            let cropped = self.crop_padded(
                window.left.round() as i64,
                window.top.round() as i64,
                window.width.round().max(1.0) as u32,
                window.height.round().max(1.0) as u32,
                0,
            );
            return cropped.resize(width, height);
        }
        self.resize(width, height)
    }

    /// The whole image resized to `width x height`.
    pub fn resize(&self, width: u32, height: u32) -> Image {
        if width == self.width && height == self.height {
            return self.clone();
        }
        let pixel_type = if self.channels == 1 {
            PixelType::U8
        } else {
            PixelType::U8x3
        };
        let source = ImageRef::new(self.width, self.height, &self.pixels, pixel_type)
            .expect("pixel buffer matches its dimensions");
        let mut target = ResizeImage::new(width, height, pixel_type);
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        Resizer::new()
            .resize(&source, &mut target, &options)
            .expect("same pixel type on both sides and a window inside the image");
        Image {
            width,
            height,
            channels: self.channels,
            pixels: target.into_vec(),
        }
    }

    /// The mirror image (left and right swapped).
    pub fn flip_horizontal(&self) -> Image {
        let c = self.channels as usize;
        let mut out = self.clone();
        for y in 0..self.height {
            for x in 0..self.width {
                let src = self.offset(x, y);
                let dst = self.offset(self.width - 1 - x, y);
                out.pixels[dst..dst + c].copy_from_slice(&self.pixels[src..src + c]);
            }
        }
        out
    }

    /// Pixels scaled to [0, 1] and normalised per channel, `(x / 255 - mean) / std`, written
    /// channel-major (CHW) into `out`.
    pub fn normalise_into(&self, mean: &[f32], std: &[f32], out: &mut [f32]) {
        let c = self.channels as usize;
        let plane = (self.width * self.height) as usize;
        debug_assert_eq!(out.len(), plane * c);
        for channel in 0..c {
            let (m, s) = (mean[channel], std[channel]);
            let dst = &mut out[channel * plane..(channel + 1) * plane];
            for (i, value) in dst.iter_mut().enumerate() {
                *value = (self.pixels[i * c + channel] as f32 / 255.0 - m) / s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(width: u32, height: u32) -> Image {
        let mut image = Image::filled(width, height, 3, 0);
        for y in 0..height {
            for x in 0..width {
                let at = image.offset(x, y);
                image.pixels[at] = x as u8;
                image.pixels[at + 1] = y as u8;
                image.pixels[at + 2] = (x + y) as u8;
            }
        }
        image
    }

    #[test]
    fn flip_is_an_exact_mirror_and_its_own_inverse() {
        let image = ramp(5, 3);
        let flipped = image.flip_horizontal();
        for y in 0..3 {
            for x in 0..5 {
                for c in 0..3 {
                    assert_eq!(flipped.at(x, y, c), image.at(4 - x, y, c));
                }
            }
        }
        assert_eq!(flipped.flip_horizontal(), image);
    }

    #[test]
    fn padded_crop_copies_the_window_and_fills_outside() {
        let image = ramp(6, 4);
        let crop = image.crop_padded(-2, 1, 5, 4, 0);
        assert_eq!((crop.width, crop.height), (5, 4));
        for y in 0..4u32 {
            for x in 0..5u32 {
                let (sx, sy) = (x as i64 - 2, y as i64 + 1);
                let inside = (0..6).contains(&sx) && (0..4).contains(&sy);
                let expected = if inside {
                    image.at(sx as u32, sy as u32, 0)
                } else {
                    0
                };
                assert_eq!(crop.at(x, y, 0), expected, "({x}, {y})");
            }
        }
    }

    #[test]
    fn resizing_keeps_a_uniform_colour_and_shrinks_a_window() {
        let image = Image::filled(40, 30, 3, 77);
        let small = image.resize(7, 5);
        assert!(small.pixels.iter().all(|&p| p == 77));
        let ramp = ramp(64, 64);
        let window = ramp.resize_window(
            Window {
                left: 32.0,
                top: 0.0,
                width: 32.0,
                height: 32.0,
            },
            16,
            16,
        );
        // The red channel of the right half runs from 32 to 63.
        assert!(window.at(0, 0, 0) >= 32 && window.at(15, 0, 0) >= 60);
    }

    #[test]
    fn normalisation_is_channel_major() {
        let image = ramp(2, 2);
        let mut out = vec![0.0; 12];
        image.normalise_into(&[0.0; 3], &[1.0; 3], &mut out);
        // Channel 0 (x) of pixel (1, 0), channel 1 (y) of pixel (0, 1).
        assert!((out[1] - 1.0 / 255.0).abs() < 1e-7);
        assert!((out[4 + 2] - 1.0 / 255.0).abs() < 1e-7);
    }
}
