//! What every backend offers the trainer: train an epoch over a given example
//! order, evaluate, and exchange parameters with the host.

pub mod cpu;
pub mod gpu;

use crate::loss::LossKind;
use crate::model::{ModelSpec, Params};
use crate::optim::OptimizerSpec;

/// Loss sum and correct predictions over some samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Metrics {
    pub samples: u64,
    pub steps: u64,
    pub loss_sum: f64,
    pub correct: u64,
}

impl Metrics {
    /// Mean loss per sample.
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.samples.max(1) as f64
    }

    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.samples.max(1) as f64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

/// Counts a backend keeps of its own work (the GPU backend fills all of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub steps: u64,
    pub dispatches: u64,
    pub submits: u64,
    /// Times the host waited for the device.
    pub blocking_syncs: u64,
    pub bytes_to_device: u64,
    pub bytes_from_device: u64,
}

/// Time of one kernel launch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KernelTime {
    pub label: &'static str,
    pub ms: f64,
}

/// Time per kernel of one training step, and how it was measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Profile {
    pub method: &'static str,
    pub kernels: Vec<KernelTime>,
}

impl Counters {
    /// What was counted between `earlier` and `self`.
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            steps: self.steps - earlier.steps,
            dispatches: self.dispatches - earlier.dispatches,
            submits: self.submits - earlier.submits,
            blocking_syncs: self.blocking_syncs - earlier.blocking_syncs,
            bytes_to_device: self.bytes_to_device - earlier.bytes_to_device,
            bytes_from_device: self.bytes_from_device - earlier.bytes_from_device,
        }
    }
}

/// Settings shared by all backends.
#[derive(Debug, Clone, Copy)]
pub struct TrainSettings {
    pub batch_size: usize,
    pub optimizer: OptimizerSpec,
    pub loss: LossKind,
    /// Steps between progress reports (and, on the GPU, read-backs).
    pub report_every: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{0}")]
    Gpu(#[from] gpu::GpuError),
    #[error("parameters for a {found:?} network do not fit this {expected:?} network")]
    ShapeMismatch {
        expected: ModelSpec,
        found: ModelSpec,
    },
}

pub trait Backend {
    /// One line naming the backend and its device.
    fn describe(&self) -> String;

    /// Trains one step per `batch_size` slice of `order` (the last may be
    /// shorter), calling `report` with the epoch's running metrics every
    /// `report_every` steps.
    fn train_epoch(
        &mut self,
        order: &[u32],
        report: &mut dyn FnMut(&Metrics),
    ) -> Result<Metrics, BackendError>;

    fn evaluate(&mut self, split: Split) -> Result<Metrics, BackendError>;

    fn params(&mut self) -> Result<Params, BackendError>;

    /// Replaces the parameters (the optimizer state is kept).
    fn set_params(&mut self, params: &Params) -> Result<(), BackendError>;

    fn counters(&self) -> Counters;

    /// Time per kernel of one (real) training step, where the backend runs
    /// kernels; `None` for the CPU.
    fn profile_step(&mut self) -> Result<Option<Profile>, BackendError> {
        Ok(None)
    }
}

/// Fails unless `new` has the layer sizes `expected`.
pub fn check_same_shape(expected: &ModelSpec, new: &Params) -> Result<(), BackendError> {
    let found = new.spec();
    if *expected == found {
        Ok(())
    } else {
        Err(BackendError::ShapeMismatch {
            expected: expected.clone(),
            found,
        })
    }
}
