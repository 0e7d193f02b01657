//! Devices that execute a [`Plan`](crate::plan::Plan): the CPU and wgpu. Each
//! turns the plan's ops into its own work once, at construction, and then
//! runs steps over an example order.

pub(crate) mod cpu;
pub(crate) mod gpu;
pub(crate) mod host;

#[cfg(test)]
mod conformance;

use crate::optim::OptimizerSpec;
use crate::plan::{Buf, Program};
#[cfg(not(target_arch = "wasm32"))]
use host::Driver;
use host::LocalFuture;
use std::ops::ControlFlow;

/// Loss sum and correct predictions over some samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    pub samples: u64,
    pub steps: u64,
    pub loss_sum: f64,
    pub correct: u64,
}

impl Metrics {
    /// These metrics followed by `later`'s.
    pub fn merged(&self, later: &Metrics) -> Metrics {
        Metrics {
            samples: self.samples + later.samples,
            steps: self.steps + later.steps,
            loss_sum: self.loss_sum + later.loss_sum,
            correct: self.correct + later.correct,
        }
    }

    /// Mean loss per sample.
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.samples.max(1) as f64
    }

    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.samples.max(1) as f64
    }

    /// Adds one step of `rows` samples.
    pub(crate) fn add_step(&mut self, rows: usize, loss_sum: f64, correct: u64) {
        self.samples += rows as u64;
        self.steps += 1;
        self.loss_sum += loss_sum;
        self.correct += correct;
    }
}

/// Which of the data set's splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Test,
    /// Held out of the training set ([`crate::data::Splits::hold_out`]).
    Validation,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Test, Split::Validation];

    /// The split's examples, if the data set has it.
    pub fn of(self, data: &crate::data::Splits) -> Option<&crate::data::Dataset> {
        match self {
            Split::Train => Some(&data.train),
            Split::Test => Some(&data.test),
            Split::Validation => data.validation.as_ref(),
        }
    }

    /// [`Self::of`], or an error naming the missing split.
    pub(crate) fn in_data(
        self,
        data: &crate::data::Splits,
    ) -> Result<&crate::data::Dataset, DeviceError> {
        self.of(data).ok_or_else(|| {
            DeviceError::Invalid(format!("the data set has no {} split", self.name()))
        })
    }

    /// "training", "test" or "validation", for messages.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "training",
            Split::Test => "test",
            Split::Validation => "validation",
        }
    }
}

/// Counts a device keeps of its own work (the wgpu device fills all of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Training steps (optimizer updates) taken.
    pub steps: u64,
    pub dispatches: u64,
    pub submits: u64,
    /// Times the host waited for the device.
    pub blocking_syncs: u64,
    pub bytes_to_device: u64,
    pub bytes_from_device: u64,
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

/// Time of one kernel launch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KernelTime {
    pub label: String,
    pub ms: f64,
}

/// Time per kernel of one training step, and how it was measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Profile {
    pub method: &'static str,
    pub kernels: Vec<KernelTime>,
}

pub use gpu::tune::{Choice as KernelChoice, Trial as KernelTrial};

/// What a device is asked to run besides the plan.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunSettings {
    /// `None` for a model that is only evaluated.
    pub optimizer: Option<OptimizerSpec>,
    /// Steps between progress reports (and, on the GPU, read-backs).
    pub report_every: usize,
    /// The run's seed, which dropout masks are drawn from.
    pub seed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("{0}")]
    Gpu(#[from] gpu::GpuError),
    #[error("{0}")]
    Invalid(String),
}

/// Fails unless every index of `order` names one of `len` examples.
pub(crate) fn check_order(order: &[u32], len: usize) -> Result<(), DeviceError> {
    match order.iter().find(|&&i| i as usize >= len) {
        Some(bad) => Err(DeviceError::Invalid(format!(
            "example index {bad} is out of range: the split has {len} examples"
        ))),
        None => Ok(()),
    }
}

/// A device with a plan, the data set and the parameters loaded. What waits
/// for the device is a future (see [`host`]); the rest returns at once.
pub(crate) trait Executor {
    /// One line naming the device.
    fn describe(&self) -> String;

    /// What a blocking caller drives the device's futures with.
    #[cfg(not(target_arch = "wasm32"))]
    fn driver(&self) -> Driver;

    /// Runs `program` over the examples `order` of `split` (`None`: all of
    /// them in file order), one step per `plan.batch` slice, calling `report`
    /// with the running metrics every `report_every` steps and after the last
    /// (the GPU submits and reads back that often, so no submit runs long
    /// enough to trip an OS watchdog, and a browser gets its event loop back
    /// that often). When `report` breaks, no further steps are started (on
    /// the GPU, the window already submitted completes); the metrics returned
    /// count the steps run.
    fn run<'a>(
        &'a mut self,
        program: Program,
        split: Split,
        order: Option<&'a [u32]>,
        report: &'a mut dyn FnMut(&Metrics) -> ControlFlow<()>,
    ) -> LocalFuture<'a, Result<Metrics, DeviceError>>;

    /// Class probabilities (rows x classes) of `images` (rows x features, u8).
    fn predict<'a>(
        &'a mut self,
        images: &'a [u8],
    ) -> LocalFuture<'a, Result<Vec<f32>, DeviceError>>;

    /// Reads a parameter-sized buffer (or any buffer, for tests).
    fn read(&mut self, buf: Buf) -> LocalFuture<'_, Result<Vec<f32>, DeviceError>>;

    /// Overwrites a buffer from the start.
    fn write(&mut self, buf: Buf, values: &[f32]) -> Result<(), DeviceError>;

    fn counters(&self) -> Counters;

    /// Sets the optimizer updates taken so far (Adam's bias correction
    /// counts from there), when training resumes.
    fn set_steps(&mut self, steps: u64);

    /// The kernel chosen for each product the plan computes, with every
    /// candidate's time, where the device chooses by measurement.
    fn kernel_choices(&mut self) -> LocalFuture<'_, Result<Vec<KernelChoice>, DeviceError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    /// Time per kernel (per op on the CPU) of real training steps; `None`
    /// where the device cannot time them.
    fn profile_step(&mut self) -> LocalFuture<'_, Result<Option<Profile>, DeviceError>> {
        Box::pin(std::future::ready(Ok(None)))
    }
}
