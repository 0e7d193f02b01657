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
    /// One image's shape: `[height, width, 1]` from IDX files (channels-last),
    /// `[features]` for flat examples.
    pub shape: Vec<usize>,
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
        let mut shape = images.dims[1..].to_vec();
        if shape.len() == 2 {
            // Grayscale: one channel, as Keras' `expand_dims(-1)`.
            shape.push(1);
        }
        let features = shape.iter().product();
        Ok(Self::new(images.data, labels.data, features, classes)?.with_shape(shape))
    }

    /// The same examples seen as images of `shape` (of `features` values).
    pub fn with_shape(mut self, shape: Vec<usize>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), self.features);
        self.shape = shape;
        self
    }

    /// Whether a model taking examples of `input` reads these: the same
    /// shape, or the same number of values where either side is flat.
    pub fn fits_input(&self, input: &[usize]) -> bool {
        let flat = input.len() == 1 || self.shape.len() == 1;
        input == self.shape.as_slice() || (flat && input.iter().product::<usize>() == self.features)
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
            shape: vec![features],
            classes,
        })
    }

    /// Pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * self.features..(i + 1) * self.features]
    }

    /// The first 16 hex digits of the SHA-256 of the examples' shape, labels
    /// and pixels: equal for the same examples in the same order, so a run
    /// can tell whether it is resumed on the data it trained on.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest as _, Sha256};
        let mut hash = Sha256::new();
        hash.update((self.len as u64).to_le_bytes());
        hash.update((self.features as u64).to_le_bytes());
        hash.update(&self.labels);
        hash.update(&self.images);
        hash.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The first `n` examples (all of them when `n >= len`).
    pub fn truncated(&self, n: usize) -> Self {
        self.rows(0..n.min(self.len))
    }

    /// Examples `range` (within `0..len`).
    pub fn rows(&self, range: std::ops::Range<usize>) -> Self {
        Self {
            images: self.images[range.start * self.features..range.end * self.features].to_vec(),
            labels: self.labels[range.clone()].to_vec(),
            len: range.len(),
            features: self.features,
            shape: self.shape.clone(),
            classes: self.classes,
        }
    }
}

/// A shape as a reader says it: `28x28x1`, or `784 values` when flat.
pub fn shape_text(shape: &[usize]) -> String {
    match shape {
        [n] => format!("{n} values"),
        dims => dims
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("x"),
    }
}

/// A data set's training and test splits, and the validation split held out
/// of the training set, if any.
#[derive(Debug, Clone)]
pub struct Splits {
    pub train: Dataset,
    pub test: Dataset,
    pub validation: Option<Dataset>,
}

impl Splits {
    /// Training and test splits, no validation split.
    pub fn new(train: Dataset, test: Dataset) -> Self {
        Self {
            train,
            test,
            validation: None,
        }
    }

    /// Holds out the last `fraction` of the training set as the validation
    /// split, as Keras' `validation_split` does: taken in file order, before
    /// any shuffling, and never trained on. At least one example must remain
    /// on each side.
    pub fn hold_out(mut self, fraction: f64) -> Result<Self, String> {
        let len = self.train.len;
        // Keras: split_at = floor(len * (1 - fraction)).
        let split_at = (len as f64 * (1.0 - fraction)).floor() as usize;
        if !(fraction > 0.0 && fraction < 1.0) || split_at == 0 || split_at >= len {
            return Err(format!(
                "a validation split of {fraction} leaves no examples on one side of {len} training examples"
            ));
        }
        self.validation = Some(self.train.rows(split_at..len));
        self.train = self.train.truncated(split_at);
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_validation_split_is_the_tail_of_the_training_set() {
        let labels: Vec<u8> = (0..10).collect();
        let images: Vec<u8> = (0..20).collect();
        let set = Dataset::new(images, labels, 2, 10).unwrap();
        let splits = Splits::new(set.clone(), set).hold_out(0.25).unwrap();
        // floor(10 * 0.75) = 7 examples left to train on, as Keras.
        assert_eq!(splits.train.labels, [0, 1, 2, 3, 4, 5, 6]);
        let validation = splits.validation.unwrap();
        assert_eq!(validation.labels, [7, 8, 9]);
        assert_eq!(validation.image(0), [14, 15]);
        let set = Dataset::new(vec![0; 4], vec![0, 1], 2, 2).unwrap();
        for bad in [0.0, 1.0, 1e-17, -0.5, f64::NAN] {
            let err = Splits::new(set.clone(), set.clone())
                .hold_out(bad)
                .unwrap_err();
            assert!(err.contains("leaves no examples"), "{err}");
        }
    }
}
