//! Getting MNIST into memory: parsing, locating, downloading.

pub mod dataset;
pub mod download;
pub mod idx;
pub mod mnist;

pub use dataset::{Dataset, Mnist, CLASSES};
