//! The book's two MNIST networks (*Deep Learning with Python*, chapters 2
//! and 5), each with the batch size and loss the book trains it with: the
//! one owner of those defaults for the command line and the web page.

use crate::data::catalog::{CLASSES, FEATURES, SIDE};
use crate::loss::LossKind;
use crate::model::ModelSpec;
use crate::train::TrainConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookModel {
    /// Chapter 2: `Dense(512, relu)`, `Dense(10, softmax)`; batch 128,
    /// sparse categorical cross-entropy.
    Mlp,
    /// Chapter 5: three 3x3 convolutions with two 2x2 max-pools, `Dense(64,
    /// relu)`, `Dense(10, softmax)`; batch 64, categorical cross-entropy.
    Convnet,
}

impl BookModel {
    /// `mlp` or `convnet`.
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "mlp" => Some(Self::Mlp),
            "convnet" => Some(Self::Convnet),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Mlp => "mlp",
            Self::Convnet => "convnet",
        }
    }

    /// The MLP's hidden widths.
    pub const MLP_HIDDEN: [usize; 1] = [512];

    /// The network, for the catalogue's 28 x 28 images of 10 classes.
    pub fn spec(self) -> ModelSpec {
        match self {
            Self::Mlp => ModelSpec::mlp(FEATURES, &Self::MLP_HIDDEN, CLASSES),
            Self::Convnet => ModelSpec::convnet(SIDE, SIDE, CLASSES),
        }
    }

    pub fn batch_size(self) -> usize {
        match self {
            Self::Mlp => 128,
            Self::Convnet => 64,
        }
    }

    pub fn loss(self) -> LossKind {
        match self {
            Self::Mlp => LossKind::SparseCategorical,
            Self::Convnet => LossKind::Categorical,
        }
    }

    /// Keras' defaults otherwise (RMSprop, shuffled), seeded with `seed`.
    pub fn config(self, seed: u64) -> TrainConfig {
        TrainConfig {
            batch_size: self.batch_size(),
            loss: self.loss(),
            seed,
            ..TrainConfig::default()
        }
    }
}
