//! A labelled image set held as the raw `u8` bytes of the files: the backends turn
//! pixels into `f32 / 255` themselves, so the data set costs one byte per pixel.

use super::idx::{IdxArray, IdxProblem};

/// Number of MNIST classes (digits 0-9).
pub const CLASSES: usize = 10;

#[derive(Debug, Clone)]
pub struct Dataset {
    /// Row-major `len x features` pixels.
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub len: usize,
    /// Pixels per image, 784 for MNIST.
    pub features: usize,
    pub classes: usize,
}

impl Dataset {
    /// Pairs an image tensor (rank 3) with its label tensor (rank 1), checking that
    /// the counts agree and every label names a class.
    pub fn from_idx(images: IdxArray, labels: IdxArray) -> Result<Self, IdxProblem> {
        let len = images.dims[0];
        if labels.dims[0] != len {
            return Err(IdxProblem::CountMismatch {
                images: len,
                labels: labels.dims[0],
            });
        }
        Self::new(images.data, labels.data, images.dims[1..].iter().product())
    }

    /// Builds a data set from flattened images, checking shapes and labels.
    pub fn new(images: Vec<u8>, labels: Vec<u8>, features: usize) -> Result<Self, IdxProblem> {
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
            .find(|(_, &l)| l as usize >= CLASSES)
        {
            return Err(IdxProblem::LabelOutOfRange {
                index,
                label,
                classes: CLASSES,
            });
        }
        Ok(Self {
            images,
            labels,
            len,
            features,
            classes: CLASSES,
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

/// The training and test splits.
#[derive(Debug, Clone)]
pub struct Mnist {
    pub train: Dataset,
    pub test: Dataset,
}
