//! Training: the seeded order of every epoch, per-epoch history, what an
//! observer hears, and the [`Trainer`] that runs epochs on a device.

use std::sync::Arc;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::backend::{Counters, Metrics, Profile, Split};
use crate::data::Splits;
use crate::device::Device;
use crate::evaluate::{Error, Evaluator};
use crate::loss::LossKind;
use crate::model::{ModelSpec, Params};
use crate::optim::{OptimizerKind, OptimizerSpec};
use crate::plan::Program;

/// How a model is trained. `Default` is the book's: batch 128, Keras' RMSprop,
/// sparse cross-entropy, shuffled, seed 1.
#[derive(Debug, Clone, Copy, PartialEq)]
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
}

/// Hears about training as it happens (Keras' callbacks). Every method has a
/// default that does nothing; `()` is the observer that hears nothing.
pub trait Observer {
    /// Epoch `epoch` (1-based) of `steps` steps begins.
    fn epoch_begin(&mut self, _epoch: usize, _steps: u64) {}
    /// The epoch's running metrics, every `report_every` steps.
    fn progress(&mut self, _epoch: usize, _running: &Metrics) {}
    fn epoch_end(&mut self, _record: &EpochRecord) {}
}

impl Observer for () {}

/// The example order of every epoch: a seeded permutation, or `0..n` unshuffled.
/// Epoch `e`'s order depends only on the seed and `e`, so runs are reproducible.
pub struct EpochOrder {
    rng: ChaCha8Rng,
    order: Vec<u32>,
    shuffle: bool,
}

impl EpochOrder {
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

/// A model being trained on a device: the data set is loaded once, and each
/// epoch runs the plan's training step over a fresh example order.
pub struct Trainer {
    engine: Evaluator,
    config: TrainConfig,
    order: EpochOrder,
    epochs_done: usize,
}

impl Trainer {
    /// Opens `device` with the model (`spec`, starting from `params`) and the
    /// data set.
    pub fn new(
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
            Some((config.optimizer, config.loss)),
            config.report_every,
        )?;
        Ok(Self {
            engine,
            config,
            order,
            epochs_done: 0,
        })
    }

    /// Trains `epochs` more epochs.
    pub fn fit(&mut self, epochs: usize, observer: &mut dyn Observer) -> Result<History, Error> {
        let start = Instant::now();
        let mut history = History::default();
        for _ in 0..epochs {
            history.epochs.push(self.train_epoch(observer)?);
        }
        history.fit_seconds = start.elapsed().as_secs_f64();
        Ok(history)
    }

    /// Trains one epoch over the next example order; fails when the loss is
    /// no longer a number.
    pub fn train_epoch(&mut self, observer: &mut dyn Observer) -> Result<EpochRecord, Error> {
        let epoch = self.epochs_done + 1;
        let steps = self
            .engine
            .data()
            .train
            .len
            .div_ceil(self.config.batch_size) as u64;
        observer.epoch_begin(epoch, steps);
        let start = Instant::now();
        let order = self.order.next_epoch().to_vec();
        let metrics =
            self.engine
                .exec
                .run(Program::Train, Split::Train, Some(&order), &mut |m| {
                    observer.progress(epoch, m)
                })?;
        self.epochs_done = epoch;
        let record = EpochRecord {
            epoch,
            loss: metrics.loss(),
            accuracy: metrics.accuracy(),
            val_loss: None,
            val_accuracy: None,
            seconds: start.elapsed().as_secs_f64(),
        };
        observer.epoch_end(&record);
        if !record.loss.is_finite() {
            return Err(Error::Diverged {
                epoch,
                loss: record.loss,
            });
        }
        Ok(record)
    }

    /// One pass of the training step over the training examples `order`
    /// (indices into the training split), outside the epoch count.
    pub fn train_on(
        &mut self,
        order: &[u32],
        report: &mut dyn FnMut(&Metrics),
    ) -> Result<Metrics, Error> {
        Ok(self
            .engine
            .exec
            .run(Program::Train, Split::Train, Some(order), report)?)
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

    pub fn evaluate(&mut self, split: Split) -> Result<Metrics, Error> {
        self.engine.evaluate(split)
    }

    pub fn params(&mut self) -> Result<Params, Error> {
        self.engine.params()
    }

    pub fn describe(&self) -> &str {
        self.engine.describe()
    }

    pub fn counters(&self) -> Counters {
        self.engine.counters()
    }

    /// Time per kernel of one training step (GPU devices; `None` on the CPU).
    /// The step trains for real.
    pub fn profile_step(&mut self) -> Result<Option<Profile>, Error> {
        Ok(self.engine.exec.profile_step()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
