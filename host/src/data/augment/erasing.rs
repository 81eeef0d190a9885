//! timm's `RandomErasing` in its `pixel` mode, on a normalised CHW image: with probability `p`,
//! one rectangle of 2%..33% of the area, aspect ratio log-uniform in 0.3..3.3, filled with
//! standard normal noise (the images are normalised, so that is noise of the data's scale).

use rand::Rng;

use crate::data::rand_distr_normal::sample_normal;

/// Erases one rectangle of `image` (`channels x height x width`, CHW) with probability `p`;
/// returns the rectangle `(top, left, height, width)` if one was erased.
pub fn erase(
    image: &mut [f32],
    channels: usize,
    height: usize,
    width: usize,
    p: f64,
    rng: &mut impl Rng,
) -> Option<(usize, usize, usize, usize)> {
    if rng.gen::<f64>() >= p {
        return None;
    }
    let area = (height * width) as f64;
    let log_aspect = [0.3f64.ln(), (1.0f64 / 0.3).ln()];
    for _ in 0..10 {
        let target = rng.gen_range(0.02..1.0 / 3.0) * area;
        let aspect = rng.gen_range(log_aspect[0]..log_aspect[1]).exp();
        let h = (target * aspect).sqrt().round() as usize;
        let w = (target / aspect).sqrt().round() as usize;
        if w < width && h < height && w > 0 && h > 0 {
            let top = rng.gen_range(0..=height - h);
            let left = rng.gen_range(0..=width - w);
            for c in 0..channels {
                for y in top..top + h {
                    let row = (c * height + y) * width;
                    for value in &mut image[row + left..row + left + w] {
                        *value = sample_normal(rng);
                    }
                }
            }
            return Some((top, left, h, w));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erases_one_rectangle_in_range_and_nothing_else() {
        let mut rng = nas_sdk::rng::stream(4, 0, "test");
        let mut erased_count = 0;
        for _ in 0..200 {
            let mut image = vec![100.0f32; 3 * 20 * 30];
            if let Some((top, left, h, w)) = erase(&mut image, 3, 20, 30, 0.5, &mut rng) {
                erased_count += 1;
                let share = (h * w) as f64 / 600.0;
                assert!((0.015..0.36).contains(&share), "{share}");
                for c in 0..3 {
                    for y in 0..20 {
                        for x in 0..30 {
                            let inside =
                                (top..top + h).contains(&y) && (left..left + w).contains(&x);
                            let value = image[(c * 20 + y) * 30 + x];
                            assert_eq!(value == 100.0, !inside);
                        }
                    }
                }
            }
        }
        assert!((60..140).contains(&erased_count), "{erased_count}");
    }
}
