//! The epoch loop every backend shares: seeded shuffling, progress, per-epoch
//! history, and a guard that stops a run whose loss stopped being a number.

use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::backend::{Backend, BackendError, Metrics};

#[derive(Debug, Clone, Copy)]
pub struct FitConfig {
    pub epochs: usize,
    pub shuffle: bool,
    pub seed: u64,
    /// Show a progress bar and print a line per epoch.
    pub verbose: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct History {
    pub epochs: Vec<EpochRecord>,
    pub fit_seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Backend(#[from] BackendError),
    #[error("training diverged: the loss is {loss} after epoch {epoch}; try a smaller --lr")]
    Diverged { epoch: usize, loss: f64 },
}

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

fn progress_bar(steps: u64, verbose: bool) -> indicatif::ProgressBar {
    if !verbose {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(steps);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{pos}/{len} [{bar:30}] {elapsed_precise} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar
}

/// Trains `config.epochs` epochs over `train_len` examples.
pub fn fit(
    backend: &mut dyn Backend,
    train_len: usize,
    batch_size: usize,
    config: &FitConfig,
) -> Result<History, TrainError> {
    let mut order = EpochOrder::new(train_len, config.shuffle, config.seed);
    let steps = train_len.div_ceil(batch_size) as u64;
    let mut history = History::default();
    let fit_start = Instant::now();
    for epoch in 1..=config.epochs {
        let bar = progress_bar(steps, config.verbose);
        let start = Instant::now();
        let metrics = backend.train_epoch(order.next_epoch(), &mut |m: &Metrics| {
            bar.set_position(m.steps);
            bar.set_message(format!(
                "loss: {:.4} - accuracy: {:.4}",
                m.loss(),
                m.accuracy()
            ));
        })?;
        bar.finish_and_clear();
        let record = EpochRecord {
            epoch,
            loss: metrics.loss(),
            accuracy: metrics.accuracy(),
            seconds: start.elapsed().as_secs_f64(),
        };
        if config.verbose {
            println!(
                "Epoch {epoch}/{}: {steps}/{steps} - {:.2}s - loss: {:.4} - accuracy: {:.4}",
                config.epochs, record.seconds, record.loss, record.accuracy
            );
        }
        if !record.loss.is_finite() {
            return Err(TrainError::Diverged {
                epoch,
                loss: record.loss,
            });
        }
        history.epochs.push(record);
    }
    history.fit_seconds = fit_start.elapsed().as_secs_f64();
    Ok(history)
}
