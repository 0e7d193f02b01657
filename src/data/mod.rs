//! Labelled image sets in memory: the IDX format, verified downloads, and MNIST's
//! files and mirrors.

pub mod dataset;
pub mod download;
pub mod idx;
pub mod mnist;

pub use dataset::{pixel, Dataset, Splits, PIXEL_SCALE};
