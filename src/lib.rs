//! gpu-mnist trains the multilayer perceptron of *Deep Learning with Python*
//! (chapter 2) on the GPU through wgpu compute shaders, or on the CPU, which
//! is also the reference the GPU is checked against.
//!
//! A model is a [`ModelSpec`] (layers, built like a Keras `Sequential`) and
//! its [`Params`]. A [`Trainer`] opens a [`Device`] with the model and a data
//! set ([`data::Splits`], e.g. from [`data::DataSet::load`]) and trains it;
//! an [`Evaluator`] evaluates and predicts. The library prints nothing:
//! progress reaches an [`Observer`].
//!
//! ```
//! use std::sync::Arc;
//! use gpu_mnist::data::{Dataset, Splits};
//! use gpu_mnist::{Activation, Device, Init, ModelSpec, Params, Split, TrainConfig, Trainer};
//!
//! // Four 2-pixel examples of two classes: bright left pixel or bright right pixel.
//! let images = vec![255, 0, 0, 255, 200, 10, 10, 200];
//! let set = Dataset::new(images, vec![0, 1, 0, 1], 2, 2)?;
//! let data = Arc::new(Splits::new(set.clone(), set));
//!
//! let spec = ModelSpec::sequential([2])
//!     .dense(8, Activation::Relu)
//!     .dense(2, Activation::Softmax);
//! let params = Params::init(&spec, Init::Glorot, 1);
//! let config = TrainConfig { batch_size: 4, ..TrainConfig::default() };
//! let mut trainer = Trainer::new(&Device::Cpu, &spec, &params, data, config)?;
//! let history = trainer.fit(3, &mut ())?;
//! assert_eq!(history.epochs.len(), 3);
//! let test = trainer.evaluate(Split::Test)?;
//! assert_eq!(test.samples, 4);
//! let probs = trainer.model().predict(&[255, 0])?;
//! assert!((probs[0].iter().sum::<f32>() - 1.0).abs() < 1e-5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod atomic_file;
mod backend;
#[doc(hidden)]
#[cfg(not(target_arch = "wasm32"))]
pub mod bench_support;
mod book;
pub mod checkpoint;
pub mod data;
mod device;
mod evaluate;
pub mod file_kind;
pub mod input_file;
mod loss;
mod model;
mod optim;
mod plan;
pub mod report;
mod train;

#[cfg(test)]
mod test_util;

/// The per-user cache directory: `$XDG_CACHE_HOME/gpu-mnist`, else
/// `$HOME/.cache/gpu-mnist` (downloaded data sets, kernel choices).
pub fn user_cache_dir() -> Option<std::path::PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))?;
    Some(base.join("gpu-mnist"))
}

pub use backend::gpu::context::AdapterSummary;
pub use backend::gpu::tune::cache::WARNING_TARGET as KERNEL_CACHE_LOG_TARGET;
pub use backend::gpu::tune::forget_choices as forget_kernel_choices;
pub use backend::gpu::tune::{
    remember_choices as remember_kernel_choices, remembered_choices as remembered_kernel_choices,
    set_measuring as set_kernel_measuring,
};
pub use backend::gpu::GpuError;
pub use backend::{Counters, DeviceError, KernelTime, Metrics, Profile, Split};
pub use backend::{KernelChoice, KernelTrial};
pub use book::BookModel;
#[cfg(not(target_arch = "wasm32"))]
pub use device::adapters;
pub use device::{adapters_async, Device, GpuApi};
pub use evaluate::{Error, Evaluator};
pub use loss::LossKind;
pub use model::{
    keras_shape, Activation, Init, Layer, ModelError, ModelSpec, Padding, Params, Tensor,
    TensorSpec,
};
pub use optim::{OptimizerKind, OptimizerSpec};
pub use train::{
    EarlyStopping, EpochOrder, EpochRecord, History, Observer, ObserverError, PartialEpoch,
    TrainConfig, TrainState, Trainer,
};
