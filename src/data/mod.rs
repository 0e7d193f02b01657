//! Labelled image sets in memory: the IDX format, verified downloads, the
//! catalogue of known data sets (MNIST, Fashion-MNIST, KMNIST), where their
//! files come from, and (feature `image`) a user's own digit pictures.

pub mod catalog;
pub mod dataset;
#[cfg(feature = "image")]
pub mod digit_image;
#[cfg(feature = "native")]
pub mod download;
pub mod idx;
#[cfg(feature = "image")]
mod jpeg;
#[cfg(feature = "native")]
pub mod source;
pub mod verify;

pub use catalog::{DataSet, FASHION_MNIST, KMNIST, MNIST};
pub use dataset::{pixel, shape_text, Dataset, Splits, PIXEL_SCALE};
