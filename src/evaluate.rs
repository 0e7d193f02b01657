//! A model on a device for evaluation and prediction, and the errors of the
//! library's sessions.

#[cfg(not(target_arch = "wasm32"))]
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;

use crate::backend::cpu::CpuExecutor;
use crate::backend::gpu::GpuExecutor;
#[cfg(not(target_arch = "wasm32"))]
use crate::backend::host::Driver;
use crate::backend::{Counters, DeviceError, Executor, Metrics, RunSettings, Split};
use crate::data::Splits;
use crate::device::{Device, Opened};
use crate::loss::LossKind;
use crate::model::{ModelError, ModelSpec, Params};
use crate::optim::OptimizerSpec;
use crate::plan::{Buf, Plan, Program};

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Model(#[from] ModelError),
    #[error("{0}")]
    Device(#[from] DeviceError),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "training diverged at epoch {epoch}, step {step}: the loss or a parameter is no longer a finite number (loss {loss}); try a smaller learning rate"
    )]
    Diverged { epoch: usize, step: u64, loss: f64 },
    /// An observer asked to stop (see [`crate::Observer::stop`]) before the
    /// epoch's last step (`step` 0: before the epoch began);
    /// [`crate::Trainer::state`] holds the partial epoch.
    #[error("interrupted at epoch {epoch}, step {step} of {steps}")]
    Interrupted { epoch: usize, step: u64, steps: u64 },
    /// [`crate::Observer::after_epoch`] failed; its error, unchanged.
    #[error("{0}")]
    Observer(crate::train::ObserverError),
}

impl From<crate::backend::gpu::GpuError> for Error {
    fn from(e: crate::backend::gpu::GpuError) -> Self {
        Error::Device(e.into())
    }
}

/// A trained (or loaded) model on a device, with the data set it is measured on.
pub struct Evaluator {
    pub(crate) exec: Box<dyn Executor>,
    spec: ModelSpec,
    data: Arc<Splits>,
    description: String,
    /// Slots of optimizer state the plan keeps (0 outside training).
    state_slots: usize,
}

impl Evaluator {
    /// Opens `device` with the model `spec` holding `params`, evaluating in
    /// batches of `batch_size`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(
        device: &Device,
        spec: &ModelSpec,
        params: &Params,
        data: Arc<Splits>,
        batch_size: usize,
    ) -> Result<Self, Error> {
        pollster::block_on(Self::new_async(device, spec, params, data, batch_size))
    }

    /// [`Self::new`], awaited.
    pub async fn new_async(
        device: &Device,
        spec: &ModelSpec,
        params: &Params,
        data: Arc<Splits>,
        batch_size: usize,
    ) -> Result<Self, Error> {
        let report_every = crate::train::TrainConfig::default().report_every;
        Self::open(device, spec, params, data, batch_size, None, report_every).await
    }

    /// Opens a device with the plan of `spec`, for training when `training`
    /// names the optimizer and loss.
    pub(crate) async fn open(
        device: &Device,
        spec: &ModelSpec,
        params: &Params,
        data: Arc<Splits>,
        batch_size: usize,
        training: Option<(OptimizerSpec, LossKind, u64)>,
        report_every: usize,
    ) -> Result<Self, Error> {
        spec.validate()?;
        check_fits(spec, params, &data)?;
        if batch_size == 0 {
            return Err(Error::Invalid("the batch size must be at least 1".into()));
        }
        // One activation buffer of a batch through the widest layer, bounded
        // as the parameters are: past that the host allocation (or a GPU
        // buffer) fails by aborting, not with an error.
        let (optimizer, loss, seed) = match training {
            Some((optimizer, loss, seed)) => (Some(optimizer), loss, seed),
            None => (None, LossKind::SparseCategorical, 0),
        };
        let slots = optimizer.map_or(0, |o| o.state_slots());
        let plan = Plan::new(spec, batch_size, loss, slots);
        let widest = plan
            .batch_buffers()
            .into_iter()
            .map(|buf| plan.len(buf))
            .max()
            .unwrap_or(0);
        if widest as u128 > crate::model::MAX_PARAMETERS {
            return Err(Error::Invalid(format!(
                "a batch of {batch_size} needs an activation buffer of {widest} values, over 1 GiB: use a smaller batch size"
            )));
        }
        let settings = RunSettings {
            optimizer,
            report_every,
            seed,
        };
        let (exec, why) = executor(device, plan, data.clone(), settings, &params.values()).await?;
        let description = match why {
            Some(why) => format!("{}, chosen by auto: {why}", exec.describe()),
            None => exec.describe(),
        };
        Ok(Self {
            exec,
            spec: spec.clone(),
            data,
            description,
            state_slots: slots,
        })
    }

    /// The device, and why it was chosen.
    pub fn describe(&self) -> &str {
        &self.description
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    pub fn data(&self) -> &Splits {
        &self.data
    }

    /// What blocking calls drive the device with.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn driver(&self) -> Driver {
        self.exec.driver()
    }

    /// Loss and accuracy over a whole split.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn evaluate(&mut self, split: Split) -> Result<Metrics, Error> {
        block(self.driver(), self.evaluate_async(split))
    }

    /// [`Self::evaluate`], awaited.
    pub async fn evaluate_async(&mut self, split: Split) -> Result<Metrics, Error> {
        let mut go_on = |_: &Metrics| ControlFlow::Continue(());
        Ok(self
            .exec
            .run(Program::Eval, split, None, &mut go_on)
            .await?)
    }

    /// Class probabilities of each image (rows of the model's input, `u8`
    /// like the data set), computed on the device a batch at a time.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn predict(&mut self, images: &[u8]) -> Result<Vec<Vec<f32>>, Error> {
        block(self.driver(), self.predict_async(images))
    }

    /// [`Self::predict`], awaited.
    pub async fn predict_async(&mut self, images: &[u8]) -> Result<Vec<Vec<f32>>, Error> {
        let features = self.spec.input_len();
        if images.is_empty() || !images.len().is_multiple_of(features) {
            return Err(Error::Invalid(format!(
                "{} bytes are not whole images of {features} pixels",
                images.len()
            )));
        }
        let probs = self.exec.predict(images).await?;
        Ok(probs
            .chunks(self.spec.classes())
            .map(<[f32]>::to_vec)
            .collect())
    }

    /// The current parameters, read from the device.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn params(&mut self) -> Result<Params, Error> {
        block(self.driver(), self.params_async())
    }

    /// [`Self::params`], awaited.
    pub async fn params_async(&mut self) -> Result<Params, Error> {
        let mut tensors = Vec::new();
        for t in 0..self.spec.param_shapes().len() {
            tensors.push(self.exec.read(Buf::Param(t)).await?);
        }
        Ok(Params::from_values(&self.spec, tensors))
    }

    /// Replaces the parameters (the optimizer state is kept).
    pub fn set_params(&mut self, params: &Params) -> Result<(), Error> {
        check_params(&self.spec, params)?;
        for (t, values) in params.values().iter().enumerate() {
            self.exec.write(Buf::Param(t), values)?;
        }
        Ok(())
    }

    pub fn counters(&self) -> Counters {
        self.exec.counters()
    }

    /// Slots of per-parameter optimizer state the plan keeps.
    pub(crate) fn state_slots(&self) -> usize {
        self.state_slots
    }

    /// Optimizer state slot `slot`, read from the device.
    pub(crate) async fn state(&mut self, slot: usize) -> Result<Params, Error> {
        let mut tensors = Vec::new();
        for tensor in 0..self.spec.param_shapes().len() {
            tensors.push(self.exec.read(Buf::State { slot, tensor }).await?);
        }
        Ok(Params::from_values(&self.spec, tensors))
    }

    /// Overwrites optimizer state slot `slot`.
    pub(crate) fn set_state(&mut self, slot: usize, values: &Params) -> Result<(), Error> {
        check_params(&self.spec, values)?;
        for (tensor, values) in values.values().iter().enumerate() {
            self.exec.write(Buf::State { slot, tensor }, values)?;
        }
        Ok(())
    }

    /// The kernel chosen for each product of the model on this device (GPU
    /// devices choose by measurement; empty on the CPU).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn kernel_choices(&mut self) -> Result<Vec<crate::KernelChoice>, Error> {
        block(self.driver(), self.kernel_choices_async())
    }

    /// [`Self::kernel_choices`], awaited.
    pub async fn kernel_choices_async(&mut self) -> Result<Vec<crate::KernelChoice>, Error> {
        Ok(self.exec.kernel_choices().await?)
    }
}

/// Runs a native caller's `future` to completion on `driver`'s device.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn block<T>(
    driver: Driver,
    future: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    driver.block_on(future)?
}

/// Opens `device` with `plan`; for `Device::Auto`, also says why it chose it.
pub(crate) async fn executor(
    device: &Device,
    plan: Plan,
    data: Arc<Splits>,
    settings: RunSettings,
    params: &[&[f32]],
) -> Result<(Box<dyn Executor>, Option<String>), Error> {
    let (opened, why) = device.open().await?;
    let exec: Box<dyn Executor> = match opened {
        Opened::Cpu => Box::new(CpuExecutor::new(plan, data, settings, params)),
        Opened::Gpu(ctx) => Box::new(GpuExecutor::new(*ctx, plan, &data, settings, params)?),
    };
    Ok((exec, why))
}

/// Fails unless the parameters have the model's tensor names and shapes.
fn check_params(spec: &ModelSpec, params: &Params) -> Result<(), Error> {
    let (expected, given) = (spec.param_shapes(), params.shapes());
    if given != expected {
        let list = |tensors: &[crate::model::TensorSpec]| {
            tensors
                .iter()
                .map(|t| format!("{} {:?}", t.name, t.shape))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(Error::Invalid(format!(
            "parameters {} do not fit the model's {}",
            list(&given),
            list(&expected)
        )));
    }
    Ok(())
}

/// Fails unless the parameters have the model's shapes and the data set's
/// examples and classes fit the model.
fn check_fits(spec: &ModelSpec, params: &Params, data: &Splits) -> Result<(), Error> {
    check_params(spec, params)?;
    for (split, set) in Split::ALL
        .into_iter()
        .filter_map(|split| Some((split, split.of(data)?)))
    {
        let name = split.name();
        if !set.fits_input(&spec.input_shape) {
            return Err(Error::Invalid(format!(
                "the {name} images are {} each; the model takes {}",
                crate::data::shape_text(&set.shape),
                crate::data::shape_text(&spec.input_shape)
            )));
        }
        if set.classes != spec.classes() {
            return Err(Error::Invalid(format!(
                "the {name} set has {} classes; the model's last layer has {} units",
                set.classes,
                spec.classes()
            )));
        }
    }
    Ok(())
}
