//! Seeded random streams. Every random draw of a plugin should come from a stream keyed by the
//! run seed and the global step (and a purpose tag), so the same seed and config plan the same
//! steps, after a resume and on every data-parallel rank.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A random stream for `(seed, step, tag)`; different tags give independent streams.
///
/// ```
/// use rand::Rng;
/// let a: u32 = nas_sdk::rng::stream(7, 100, "uniform").gen();
/// let b: u32 = nas_sdk::rng::stream(7, 100, "uniform").gen();
/// assert_eq!(a, b);
/// ```
pub fn stream(seed: u64, step: u64, tag: &str) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&step.to_le_bytes());
    // FNV-1a of the tag: stable across platforms and releases, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in tag.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    key[16..24].copy_from_slice(&hash.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

/// The stream type returned by [`stream`].
pub type StepRng = ChaCha8Rng;

/// An arch with every decision drawn uniformly and independently from `rng`.
///
/// ```
/// use nas_sdk::{rng, Decision};
/// let decisions = vec![Decision::choice("d0", "cell", "op", &["a", "b", "c"])];
/// let arch = rng::uniform_arch(&decisions, &mut rng::stream(0, 0, "doc"));
/// assert!(arch.choices()[0] < 3);
/// ```
pub fn uniform_arch(decisions: &[crate::Decision], rng: &mut impl rand::Rng) -> crate::Arch {
    crate::Arch::new(
        decisions
            .iter()
            .map(|d| rng.gen_range(0..d.options.len() as u32))
            .collect(),
    )
}
