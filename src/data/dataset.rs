//! A labelled image set held as the raw `u8` bytes of the files: the backends turn
//! pixels into `f32` themselves (see [`pixel`]), so the data set costs one byte per
//! pixel.

use super::idx::{IdxArray, IdxProblem};

/// What a pixel `p` is multiplied by: `1 / 255` rounded to f32, the engine's
/// single owner of the 255, so that every device scales alike. A multiplication,
/// not a division: hardware divisions are not correctly rounded (WGSL allows
/// 2.5 ulp), a multiplication is, so the CPU and any GPU agree bit for bit.
pub const PIXEL_SCALE: f32 = 1.0 / 255.0;

/// Pixel `p` scaled into `[0, 1]`.
pub fn pixel(p: u8) -> f32 {
    f32::from(p) * PIXEL_SCALE
}

#[derive(Debug, Clone)]
pub struct Dataset {
    /// Row-major `len x features` pixels.
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub len: usize,
    /// Pixels per image.
    pub features: usize,
    /// Every label is below this.
    pub classes: usize,
}

impl Dataset {
    /// Pairs an image tensor (rank 3) with its label tensor (rank 1), checking that
    /// the counts agree and every label is below `classes`.
    pub fn from_idx(
        images: IdxArray,
        labels: IdxArray,
        classes: usize,
    ) -> Result<Self, IdxProblem> {
        let len = images.dims[0];
        if labels.dims[0] != len {
            return Err(IdxProblem::CountMismatch {
                images: len,
                labels: labels.dims[0],
            });
        }
        Self::new(
            images.data,
            labels.data,
            images.dims[1..].iter().product(),
            classes,
        )
    }

    /// Builds a data set from flattened images, checking shapes and that every
    /// label is below `classes`.
    pub fn new(
        images: Vec<u8>,
        labels: Vec<u8>,
        features: usize,
        classes: usize,
    ) -> Result<Self, IdxProblem> {
        let len = labels.len();
        if features == 0 || images.len() != len * features {
            return Err(IdxProblem::CountMismatch {
                images: images.len().checked_div(features).unwrap_or(0),
                labels: len,
            });
        }
        if let Some((index, &label)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| usize::from(l) >= classes)
        {
            return Err(IdxProblem::LabelOutOfRange {
                index,
                label,
                classes,
            });
        }
        Ok(Self {
            images,
            labels,
            len,
            features,
            classes,
        })
    }

    /// Pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * self.features..(i + 1) * self.features]
    }

    /// The first `n` examples (all of them when `n >= len`).
    pub fn truncated(&self, n: usize) -> Self {
        let n = n.min(self.len);
        Self {
            images: self.images[..n * self.features].to_vec(),
            labels: self.labels[..n].to_vec(),
            len: n,
            features: self.features,
            classes: self.classes,
        }
    }
}

/// A data set's training and test splits.
#[derive(Debug, Clone)]
pub struct Splits {
    pub train: Dataset,
    pub test: Dataset,
}
