//! Labelled image sets in memory: the IDX format, verified downloads, MNIST's
//! files and mirrors, and (feature `image`) a user's own digit pictures.

pub mod dataset;
#[cfg(feature = "image")]
pub mod digit_image;
pub mod download;
pub mod idx;
pub mod mnist;

pub use dataset::{pixel, Dataset, Splits, PIXEL_SCALE};
