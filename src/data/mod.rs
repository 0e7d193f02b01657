//! Labelled image sets in memory: the IDX format, verified downloads, the
//! catalogue of known data sets (MNIST, Fashion-MNIST, KMNIST) and where their
//! files come from.

pub mod catalog;
pub mod dataset;
pub mod download;
pub mod idx;
pub mod source;

pub use catalog::{DataSet, FASHION_MNIST, KMNIST, MNIST};
pub use dataset::{pixel, Dataset, Splits, PIXEL_SCALE};
