//! Training: the seeded order of every epoch, per-epoch history, what an
//! observer hears, and the [`Trainer`] that runs epochs on a device.

use std::ops::ControlFlow;
use std::sync::Arc;
use web_time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::backend::{Counters, Metrics, Profile, Split};
use crate::data::Splits;
use crate::device::Device;
#[cfg(not(target_arch = "wasm32"))]
use crate::evaluate::block;
use crate::evaluate::{Error, Evaluator};

mod early_stopping;

use crate::loss::LossKind;
use crate::model::{ModelSpec, Params};
use crate::optim::{OptimizerKind, OptimizerSpec};
use crate::plan::Program;
pub(crate) use early_stopping::Counters as EarlyStoppingCounters;
pub use early_stopping::EarlyStopping;

/// How a model is trained. `Default` is the book's: batch 128, Keras' RMSprop,
/// sparse cross-entropy, shuffled, seed 1.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub batch_size: usize,
    pub optimizer: OptimizerSpec,
    pub loss: LossKind,
    /// Shuffle the examples every epoch (else keep the file order).
    pub shuffle: bool,
    /// Seeds the shuffling (initialise parameters with the same seed through
    /// [`Params::init`] for a fully seeded run).
    pub seed: u64,
    /// Steps between progress reports (the GPU reads metrics back this often).
    pub report_every: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            batch_size: 128,
            optimizer: OptimizerSpec::keras_default(OptimizerKind::Rmsprop),
            loss: LossKind::SparseCategorical,
            shuffle: true,
            seed: 1,
            report_every: 50,
        }
    }
}

/// One epoch's metrics: training, and validation when a validation split is
/// held out (Keras' `val_loss`, `val_accuracy`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct History {
    pub epochs: Vec<EpochRecord>,
    pub fit_seconds: f64,
    /// With early stopping: the epoch whose weights the model was left with.
    pub best_epoch: Option<usize>,
    /// Early stopping's patience ran out (the fit ended at that epoch).
    #[serde(default)]
    pub stopped_early: bool,
}

/// What an [`Observer`] failed with: any error, handed back unchanged inside
/// [`Error::Observer`].
pub type ObserverError = Box<dyn std::error::Error + Send + Sync>;

/// Hears about training as it happens (Keras' callbacks). Every method has a
/// default that does nothing; `()` is the observer that hears nothing.
pub trait Observer {
    /// Epoch `epoch` (1-based) of `steps` steps begins.
    fn epoch_begin(&mut self, _epoch: usize, _steps: u64) {}
    /// The epoch's running metrics, every `report_every` steps.
    fn progress(&mut self, _epoch: usize, _running: &Metrics) {}
    fn epoch_end(&mut self, _record: &EpochRecord) {}
    /// Called by [`Trainer::fit_with`] once an epoch is counted (and early
    /// stopping has taken it into account), with the trainer at hand: the place to keep what
    /// a run saves (histories, checkpoints, Keras' `ModelCheckpoint`). An
    /// error ends the fit there as [`Error::Observer`].
    fn after_epoch(
        &mut self,
        _trainer: &mut Trainer,
        _record: &EpochRecord,
    ) -> Result<(), ObserverError> {
        Ok(())
    }
    /// Asked at every progress report, and by [`Trainer::fit_with`] between
    /// epochs (an epoch may end before its first report): true stops
    /// training there (with [`Error::Interrupted`]; a partial epoch can be
    /// saved and resumed).
    fn stop(&mut self) -> bool {
        false
    }
}

impl Observer for () {}

impl<O: Observer + ?Sized> Observer for &mut O {
    fn epoch_begin(&mut self, epoch: usize, steps: u64) {
        (**self).epoch_begin(epoch, steps);
    }
    fn progress(&mut self, epoch: usize, running: &Metrics) {
        (**self).progress(epoch, running);
    }
    fn epoch_end(&mut self, record: &EpochRecord) {
        (**self).epoch_end(record);
    }
    fn after_epoch(
        &mut self,
        trainer: &mut Trainer,
        record: &EpochRecord,
    ) -> Result<(), ObserverError> {
        (**self).after_epoch(trainer, record)
    }
    fn stop(&mut self) -> bool {
        (**self).stop()
    }
}

/// Two observers as one, as Keras takes a list of callbacks (nest pairs for
/// more): both hear everything, the first first; either can stop the run;
/// the first `after_epoch` error ends it.
impl<A: Observer, B: Observer> Observer for (A, B) {
    fn epoch_begin(&mut self, epoch: usize, steps: u64) {
        self.0.epoch_begin(epoch, steps);
        self.1.epoch_begin(epoch, steps);
    }
    fn progress(&mut self, epoch: usize, running: &Metrics) {
        self.0.progress(epoch, running);
        self.1.progress(epoch, running);
    }
    fn epoch_end(&mut self, record: &EpochRecord) {
        self.0.epoch_end(record);
        self.1.epoch_end(record);
    }
    fn after_epoch(
        &mut self,
        trainer: &mut Trainer,
        record: &EpochRecord,
    ) -> Result<(), ObserverError> {
        self.0.after_epoch(trainer, record)?;
        self.1.after_epoch(trainer, record)
    }
    fn stop(&mut self) -> bool {
        // Both asked, so each sees every report.
        let first = self.0.stop();
        self.1.stop() || first
    }
}

/// The example order of every epoch: a seeded permutation, or `0..n` unshuffled.
/// Epoch `e`'s order depends only on the seed and `e`, so runs are reproducible.
pub struct EpochOrder {
    rng: ChaCha8Rng,
    order: Vec<u32>,
    shuffle: bool,
}

impl EpochOrder {
    /// The shuffling generator's position (ChaCha8's word position), which
    /// [`Self::seek`] restores, so a resumed run shuffles as an unbroken one.
    pub fn position(&self) -> u128 {
        self.rng.get_word_pos()
    }

    pub fn seek(&mut self, position: u128) {
        self.rng.set_word_pos(position);
    }

    pub fn new(len: usize, shuffle: bool, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // A stream of its own, so the order never reuses the initialiser's numbers.
        rng.set_stream(1);
        Self {
            rng,
            order: (0..len as u32).collect(),
            shuffle,
        }
    }

    /// The order for the next epoch.
    pub fn next_epoch(&mut self) -> &[u32] {
        if self.shuffle {
            // Shuffling the identity each time keeps an epoch independent of the last.
            for (i, v) in self.order.iter_mut().enumerate() {
                *v = i as u32;
            }
            self.order.shuffle(&mut self.rng);
        }
        &self.order
    }
}

/// Everything a run needs to continue exactly where it stopped: parameters,
/// optimizer state and step count, epochs done, the shuffling generator's
/// position, and the history so far (see `checkpoint::save_state`).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainState {
    pub params: Params,
    /// The optimizer's per-parameter state (velocity, RMS average, Adam's
    /// moments), one parameter-shaped set per slot the optimizer uses.
    pub slots: Vec<Params>,
    /// Optimizer updates taken.
    pub steps: u64,
    pub epochs_done: usize,
    pub order_position: u128,
    pub history: Vec<EpochRecord>,
    /// The epoch under way when training was interrupted.
    pub partial: Option<PartialEpoch>,
    /// Early stopping's state, when the run stops early.
    pub early_stopping: Option<EarlyStopping>,
    /// The weights training goes on from, when they are not `params`: at the
    /// end of a fit, early stopping left the best epoch's weights as the
    /// model, and the run continues from its last epoch's.
    pub continue_from: Option<Params>,
}

impl TrainState {
    /// Whether the counts agree with each other and with a training set of
    /// `len` examples taken `per_epoch` steps an epoch: a damaged or edited
    /// file is refused rather than resumed into something no run was.
    fn check(&self, per_epoch: u64, len: usize, shuffle: bool) -> Result<(), String> {
        let partial_steps = self.partial.map_or(0, |p| p.metrics.steps);
        if let Some(partial) = &self.partial {
            if partial.epoch != self.epochs_done + 1 || partial_steps >= per_epoch {
                return Err(format!(
                    "an interrupted epoch {} at step {partial_steps} of {per_epoch} after {} whole epochs",
                    partial.epoch, self.epochs_done
                ));
            }
            if partial.order_position > self.order_position {
                return Err(
                    "the interrupted epoch's shuffle position is ahead of the run's".into(),
                );
            }
        }
        let expected = (self.epochs_done as u64)
            .checked_mul(per_epoch)
            .and_then(|s| s.checked_add(partial_steps));
        if expected != Some(self.steps) {
            let made = (self.epochs_done as u64)
                .saturating_mul(per_epoch)
                .saturating_add(partial_steps);
            return Err(format!(
                "{} steps taken, where {} whole epoch(s) of {per_epoch} steps and {partial_steps} more make {made}",
                self.steps, self.epochs_done
            ));
        }
        // rand 0.9's shuffle draws one 32-bit word per example, and now and
        // then one more: never twice as many (a rand upgrade that changed this
        // would change every shuffled order anyway). Unshuffled runs draw none.
        let epochs = self.epochs_done as u128 + 1;
        let most = if shuffle { epochs * 2 * len as u128 } else { 0 };
        if self.order_position > most {
            return Err(format!(
                "the shuffle position {} is beyond what {epochs} epochs can reach",
                self.order_position
            ));
        }
        // Early stopping looks at every epoch: it waited for those since
        // its best.
        if let Some(stopping) = &self.early_stopping {
            let counted = match &stopping.best {
                Some(best) => best.epoch + stopping.waited,
                None => stopping.waited,
            };
            let best_ok = stopping.best.as_ref().is_none_or(|b| b.epoch >= 1);
            if counted != self.epochs_done || !best_ok {
                return Err(format!(
                    "early stopping's best epoch {} and {} epochs waited do not add up to the {} epochs done",
                    stopping.best.as_ref().map_or(0, |b| b.epoch),
                    stopping.waited,
                    self.epochs_done
                ));
            }
        }
        Ok(())
    }
}

/// Where an interrupted epoch stopped, to finish it as if it never had.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PartialEpoch {
    /// 1-based.
    pub epoch: usize,
    /// The shuffling generator's position before the epoch's order was drawn.
    pub order_position: u128,
    /// The metrics of the steps done (`metrics.steps` of them).
    pub metrics: Metrics,
}

/// A model being trained on a device: the data set is loaded once, and each
/// epoch runs the plan's training step over a fresh example order, then
/// evaluates the validation split if there is one.
pub struct Trainer {
    engine: Evaluator,
    config: TrainConfig,
    order: EpochOrder,
    epochs_done: usize,
    partial: Option<PartialEpoch>,
    early_stopping: Option<EarlyStopping>,
    /// See [`TrainState::continue_from`].
    continue_from: Option<Params>,
}

impl Trainer {
    /// Opens `device` with the model (`spec`, starting from `params`) and the
    /// data set.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(
        device: &Device,
        spec: &ModelSpec,
        params: &Params,
        data: Arc<Splits>,
        config: TrainConfig,
    ) -> Result<Self, Error> {
        pollster::block_on(Self::new_async(device, spec, params, data, config))
    }

    /// [`Self::new`], awaited.
    pub async fn new_async(
        device: &Device,
        spec: &ModelSpec,
        params: &Params,
        data: Arc<Splits>,
        config: TrainConfig,
    ) -> Result<Self, Error> {
        if config.batch_size == 0 || config.report_every == 0 {
            return Err(Error::Invalid(
                "the batch size and the report interval must be at least 1".into(),
            ));
        }
        let order = EpochOrder::new(data.train.len, config.shuffle, config.seed);
        let engine = Evaluator::open(
            device,
            spec,
            params,
            data,
            config.batch_size,
            Some((config.optimizer, config.loss, config.seed)),
            config.report_every,
        )
        .await?;
        Ok(Self {
            engine,
            config,
            order,
            epochs_done: 0,
            partial: None,
            early_stopping: None,
            continue_from: None,
        })
    }

    /// Opens a run saved by [`Self::state`] to continue it: the same
    /// parameters, optimizer state, step count and shuffling position.
    /// `config` must be the run's (the caller checks it against the saved one).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn resume(
        device: &Device,
        spec: &ModelSpec,
        state: &TrainState,
        data: Arc<Splits>,
        config: TrainConfig,
    ) -> Result<Self, Error> {
        pollster::block_on(Self::resume_async(device, spec, state, data, config))
    }

    /// [`Self::resume`], awaited.
    pub async fn resume_async(
        device: &Device,
        spec: &ModelSpec,
        state: &TrainState,
        data: Arc<Splits>,
        config: TrainConfig,
    ) -> Result<Self, Error> {
        let per_epoch = data.train.len.div_ceil(config.batch_size.max(1)) as u64;
        state
            .check(per_epoch, data.train.len, config.shuffle)
            .map_err(|why| Error::Invalid(format!("the saved run state is inconsistent: {why}")))?;
        let mut trainer = Self::new_async(device, spec, &state.params, data, config).await?;
        let slots = trainer.engine.state_slots();
        if state.slots.len() != slots {
            return Err(Error::Invalid(format!(
                "the saved optimizer state has {} slots; {:?} keeps {slots}",
                state.slots.len(),
                config.optimizer.kind
            )));
        }
        for (slot, values) in state.slots.iter().enumerate() {
            trainer.engine.set_state(slot, values)?;
        }
        trainer.engine.exec.set_steps(state.steps);
        trainer.epochs_done = state.epochs_done;
        trainer.order.seek(state.order_position);
        trainer.partial = state.partial;
        trainer.early_stopping = state.early_stopping.clone();
        trainer.continue_from = state.continue_from.clone();
        Ok(trainer)
    }

    /// The run's state, to save and resume (`history`: the epochs so far).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn state(&mut self, history: &[EpochRecord]) -> Result<TrainState, Error> {
        block(self.engine.driver(), self.state_async(history))
    }

    /// [`Self::state`], awaited.
    pub async fn state_async(&mut self, history: &[EpochRecord]) -> Result<TrainState, Error> {
        let mut slots = Vec::new();
        for slot in 0..self.engine.state_slots() {
            slots.push(self.engine.state(slot).await?);
        }
        Ok(TrainState {
            params: self.params_async().await?,
            slots,
            steps: self.counters().steps,
            epochs_done: self.epochs_done,
            order_position: self.order.position(),
            history: history.to_vec(),
            partial: self.partial,
            early_stopping: self.early_stopping.clone(),
            continue_from: self.continue_from.clone(),
        })
    }

    /// Trains `epochs` more epochs.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn fit(&mut self, epochs: usize, observer: &mut dyn Observer) -> Result<History, Error> {
        self.fit_with(epochs, None, observer)
    }

    /// Trains up to `epochs` more epochs, stopping early as `early_stopping`
    /// says. A run resumed with early stopping of the same patience goes on
    /// with the saved one's state (best epoch, weights, epochs waited), so it
    /// stops and restores where the straight run would have.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn fit_with(
        &mut self,
        epochs: usize,
        early_stopping: Option<EarlyStopping>,
        observer: &mut dyn Observer,
    ) -> Result<History, Error> {
        let driver = self.engine.driver();
        block(driver, self.fit_async(epochs, early_stopping, observer))
    }

    /// [`Self::fit_with`], awaited: in a browser, the page's event loop runs
    /// at each read-back. [`Observer::after_epoch`] must not block there.
    pub async fn fit_async(
        &mut self,
        epochs: usize,
        early_stopping: Option<EarlyStopping>,
        observer: &mut dyn Observer,
    ) -> Result<History, Error> {
        let start = Instant::now();
        let mut history = History::default();
        self.early_stopping = match (early_stopping, self.early_stopping.take()) {
            (Some(asked), Some(saved)) if saved.patience == asked.patience => Some(saved),
            (asked, _) => asked,
        };
        for done in 0..epochs {
            // A stop asked at an epoch's last read-back, or between epochs,
            // ends the fit before the next one.
            if done > 0 && observer.stop() {
                return Err(Error::Interrupted {
                    epoch: self.epochs_done + 1,
                    step: 0,
                    steps: self.steps_per_epoch(),
                });
            }
            // Resumed after its patience ran out: the straight run stopped.
            if self.early_stopping.as_ref().is_some_and(|s| s.exhausted()) {
                history.stopped_early = true;
                break;
            }
            let record = self.train_epoch_async(observer).await?;
            if let Some(mut stopping) = self.early_stopping.take() {
                let updated = stopping.update(&record, self).await;
                self.early_stopping = Some(stopping);
                updated?;
            }
            observer
                .after_epoch(self, &record)
                .map_err(Error::Observer)?;
            history.epochs.push(record);
            if self.early_stopping.as_ref().is_some_and(|s| s.exhausted()) {
                history.stopped_early = true;
                break;
            }
        }
        history.best_epoch = self.restore_best().await?;
        history.fit_seconds = start.elapsed().as_secs_f64();
        Ok(history)
    }

    /// Training goes on from the last epoch's weights, not the best epoch's
    /// that early stopping left as the model at the end of a fit.
    fn go_on_from_the_last_epoch(&mut self) -> Result<(), Error> {
        if let Some(last) = self.continue_from.take() {
            self.model().set_params(&last)?;
        }
        Ok(())
    }

    /// Early stopping's end of a fit: the best epoch's weights become the
    /// model's, the last epoch's kept to go on from; returns that epoch.
    async fn restore_best(&mut self) -> Result<Option<usize>, Error> {
        let Some(best) = self.early_stopping.as_ref().and_then(|s| s.best.as_ref()) else {
            return Ok(None);
        };
        let (epoch, params) = (best.epoch, best.params.clone());
        // Unless a fit without epochs left it so already.
        if epoch != self.epochs_done && self.continue_from.is_none() {
            self.continue_from = Some(self.params_async().await?);
            self.model().set_params(&params)?;
        }
        Ok(Some(epoch))
    }

    /// Trains one epoch over the next example order (or the rest of an
    /// interrupted one). Stops at the read-back where the loss stops being a
    /// number ([`Error::Diverged`]), or where `observer` asks to
    /// ([`Error::Interrupted`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn train_epoch(&mut self, observer: &mut dyn Observer) -> Result<EpochRecord, Error> {
        block(self.engine.driver(), self.train_epoch_async(observer))
    }

    /// [`Self::train_epoch`], awaited.
    pub async fn train_epoch_async(
        &mut self,
        observer: &mut dyn Observer,
    ) -> Result<EpochRecord, Error> {
        self.go_on_from_the_last_epoch()?;
        let epoch = self.epochs_done + 1;
        let batch = self.config.batch_size;
        let steps = self.steps_per_epoch();
        let (order_position, before) = match self.partial.take() {
            Some(p) if p.epoch == epoch => (p.order_position, p.metrics),
            _ => (self.order.position(), Metrics::default()),
        };
        self.order.seek(order_position);
        let order = self.order.next_epoch().to_vec();
        let rest = &order[(before.steps as usize * batch).min(order.len())..];
        observer.epoch_begin(epoch, steps);
        let start = Instant::now();
        let (mut diverged, mut stopped) = (false, false);
        let mut report = |m: &Metrics| {
            observer.progress(epoch, &before.merged(m));
            diverged = !m.loss_sum.is_finite();
            stopped = !diverged && observer.stop();
            if diverged || stopped {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let metrics = self
            .engine
            .exec
            .run(Program::Train, Split::Train, Some(rest), &mut report)
            .await?;
        let metrics = before.merged(&metrics);
        if diverged {
            return Err(Error::Diverged {
                epoch,
                step: metrics.steps,
                loss: metrics.loss(),
            });
        }
        if stopped && metrics.steps < steps {
            self.partial = Some(PartialEpoch {
                epoch,
                order_position,
                metrics,
            });
            return Err(Error::Interrupted {
                epoch,
                step: metrics.steps,
                steps,
            });
        }
        self.epochs_done = epoch;
        let validation = match self.engine.data().validation {
            Some(_) => Some(self.engine.evaluate_async(Split::Validation).await?),
            None => None,
        };
        let record = EpochRecord {
            epoch,
            loss: metrics.loss(),
            accuracy: metrics.accuracy(),
            val_loss: validation.map(|m| m.loss()),
            val_accuracy: validation.map(|m| m.accuracy()),
            seconds: start.elapsed().as_secs_f64(),
        };
        observer.epoch_end(&record);
        Ok(record)
    }

    fn steps_per_epoch(&self) -> u64 {
        self.engine
            .data()
            .train
            .len
            .div_ceil(self.config.batch_size) as u64
    }

    /// One pass of the training step over the training examples `order`
    /// (indices into the training split), outside the epoch count.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn train_on(
        &mut self,
        order: &[u32],
        report: &mut dyn FnMut(&Metrics),
    ) -> Result<Metrics, Error> {
        self.go_on_from_the_last_epoch()?;
        let mut go_on = |m: &Metrics| {
            report(m);
            ControlFlow::Continue(())
        };
        let driver = self.engine.driver();
        let run = self
            .engine
            .exec
            .run(Program::Train, Split::Train, Some(order), &mut go_on);
        block(driver, async { Ok(run.await?) })
    }

    /// Epochs trained so far.
    pub fn epochs_done(&self) -> usize {
        self.epochs_done
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Evaluation, prediction and parameters of the model being trained.
    pub fn model(&mut self) -> &mut Evaluator {
        &mut self.engine
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn evaluate(&mut self, split: Split) -> Result<Metrics, Error> {
        self.engine.evaluate(split)
    }

    /// [`Self::evaluate`], awaited.
    pub async fn evaluate_async(&mut self, split: Split) -> Result<Metrics, Error> {
        self.engine.evaluate_async(split).await
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn params(&mut self) -> Result<Params, Error> {
        self.engine.params()
    }

    /// [`Self::params`], awaited.
    pub async fn params_async(&mut self) -> Result<Params, Error> {
        self.engine.params_async().await
    }

    pub fn describe(&self) -> &str {
        self.engine.describe()
    }

    pub fn counters(&self) -> Counters {
        self.engine.counters()
    }

    /// Time per kernel (op) of a training step: on a GPU each kernel of one
    /// step, timed on the device; on the CPU each op's host time, the mean of
    /// 10 steps. The steps train for real.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile_step(&mut self) -> Result<Option<Profile>, Error> {
        block(self.engine.driver(), self.profile_step_async())
    }

    /// [`Self::profile_step`], awaited.
    pub async fn profile_step_async(&mut self) -> Result<Option<Profile>, Error> {
        Ok(self.engine.exec.profile_step().await?)
    }
}

// Blocking, native: the browser runs the conformance suite only.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    /// Early stopping's counters must agree with the epochs done: its best
    /// epoch plus the epochs waited since.
    #[test]
    fn early_stopping_counters_that_do_not_add_up_are_refused() {
        let spec = ModelSpec::mlp(4, &[3], 2);
        let params = Params::init(&spec, crate::Init::Glorot, 1);
        let stopping = |best: Option<usize>, waited| {
            let counters = early_stopping::Counters {
                patience: 5,
                waited,
                best: best.map(|epoch| (epoch, 0.5)),
            };
            EarlyStopping::from_saved(counters, best.map(|_| params.clone())).unwrap()
        };
        let state = |early_stopping| TrainState {
            params: params.clone(),
            slots: Vec::new(),
            steps: 30,
            epochs_done: 3,
            order_position: 0,
            history: Vec::new(),
            partial: None,
            early_stopping: Some(early_stopping),
            continue_from: None,
        };
        assert_eq!(state(stopping(Some(2), 1)).check(10, 100, false), Ok(()));
        for (best, waited) in [(Some(2), 0), (Some(3), 1), (None, 0), (Some(0), 3)] {
            let err = state(stopping(best, waited))
                .check(10, 100, false)
                .unwrap_err();
            assert!(err.starts_with("early stopping's best epoch"), "{err}");
        }
    }

    #[test]
    fn epoch_orders_are_seeded_permutations() {
        let mut a = EpochOrder::new(100, true, 5);
        let first = a.next_epoch().to_vec();
        let second = a.next_epoch().to_vec();
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<u32>>());
        assert_ne!(first, second, "each epoch has its own order");
        let mut b = EpochOrder::new(100, true, 5);
        assert_eq!(b.next_epoch(), &first[..]);
        assert_eq!(b.next_epoch(), &second[..]);
        assert_ne!(EpochOrder::new(100, true, 6).next_epoch(), &first[..]);
        let mut plain = EpochOrder::new(5, false, 5);
        assert_eq!(plain.next_epoch(), &[0, 1, 2, 3, 4]);
    }

    /// Records what `after_epoch` saw, and fails at epoch `fail_at`.
    struct Recorder {
        seen: Vec<(usize, usize)>,
        fail_at: usize,
    }

    impl Observer for Recorder {
        fn after_epoch(
            &mut self,
            trainer: &mut Trainer,
            record: &EpochRecord,
        ) -> Result<(), ObserverError> {
            self.seen.push((record.epoch, trainer.epochs_done()));
            if record.epoch == self.fail_at {
                return Err(format!("cannot write epoch {}", record.epoch).into());
            }
            Ok(())
        }
    }

    fn small_trainer() -> Trainer {
        use crate::test_util::synthetic;
        let data = Splits::new(synthetic(64, 12, 3, 0.3, 1), synthetic(16, 12, 3, 0.3, 2));
        let spec = ModelSpec::mlp(12, &[8], 3);
        let params = Params::init(&spec, crate::model::Init::Glorot, 1);
        let config = TrainConfig {
            batch_size: 16,
            ..TrainConfig::default()
        };
        Trainer::new(&Device::Cpu, &spec, &params, Arc::new(data), config).unwrap()
    }

    #[test]
    fn after_epoch_sees_each_counted_epoch_and_its_error_ends_the_fit() {
        let mut trainer = small_trainer();
        let mut recorder = Recorder {
            seen: Vec::new(),
            fail_at: 0,
        };
        let history = trainer.fit(3, &mut recorder).unwrap();
        assert_eq!(recorder.seen, [(1, 1), (2, 2), (3, 3)]);
        assert_eq!(history.epochs.len(), 3);
        assert!(!history.stopped_early);

        let mut failing = Recorder {
            seen: Vec::new(),
            fail_at: 5,
        };
        match trainer.fit(4, &mut failing) {
            Err(Error::Observer(e)) => assert_eq!(e.to_string(), "cannot write epoch 5"),
            other => panic!("expected the observer's error, got {other:?}"),
        }
        assert_eq!(
            failing.seen,
            [(4, 4), (5, 5)],
            "the fit ends at the failure"
        );
        assert_eq!(trainer.epochs_done(), 5);
    }

    #[test]
    fn a_pair_of_observers_both_hear_and_the_first_error_ends_the_fit() {
        let mut trainer = small_trainer();
        let (mut first, mut second) = (
            Recorder {
                seen: Vec::new(),
                fail_at: 2,
            },
            Recorder {
                seen: Vec::new(),
                fail_at: 0,
            },
        );
        let result = trainer.fit(3, &mut (&mut first, &mut second));
        assert!(matches!(result, Err(Error::Observer(_))), "{result:?}");
        assert_eq!(first.seen, [(1, 1), (2, 2)]);
        assert_eq!(second.seen, [(1, 1)], "not called after the first failed");
    }
}
