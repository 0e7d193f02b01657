//! Inputs for the unit tests: reproducible numbers and small data sets.

use crate::data::Dataset;

/// Deterministic pseudo-random numbers for test inputs (a 64-bit LCG; quality
/// is irrelevant, reproducibility is all).
pub(crate) struct Lcg(pub u64);

impl Lcg {
    pub fn next_u32(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }

    /// Uniform in [-1, 1).
    pub fn signed(&mut self) -> f32 {
        self.next_u32() as f32 / (1u64 << 30) as f32 - 1.0
    }

    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.signed()).collect()
    }
}

/// `len` examples of random pixels (`zero_fraction` of them zero, as MNIST's
/// are about 80%) and labels below `classes`.
pub(crate) fn synthetic(
    len: usize,
    features: usize,
    classes: usize,
    zero_fraction: f64,
    seed: u64,
) -> Dataset {
    let mut rng = Lcg(seed);
    let images = (0..len * features)
        .map(|_| {
            let keep = (rng.next_u32() as f64 / u32::MAX as f64) >= zero_fraction;
            let p = (rng.next_u32() % 255 + 1) as u8;
            if keep {
                p
            } else {
                0
            }
        })
        .collect();
    let labels = (0..len)
        .map(|_| (rng.next_u32() % classes as u32) as u8)
        .collect();
    Dataset::new(images, labels, features, classes).expect("a consistent data set")
}
