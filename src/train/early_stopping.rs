//! Keras' `EarlyStopping(monitor="val_loss", patience,
//! restore_best_weights=True)`, whose state is part of a run's: a resumed
//! run stops where the straight run would have and restores the same epoch.

use crate::model::Params;
use crate::train::{EpochRecord, Trainer};
use crate::Error;

/// Stops after `patience` epochs without a lower validation loss, and leaves
/// the model with the weights of the best epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EarlyStopping {
    pub(crate) patience: usize,
    pub(crate) best: Option<Best>,
    /// Epochs since the best.
    pub(crate) waited: usize,
}

/// The best epoch so far.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Best {
    pub val_loss: f64,
    pub epoch: usize,
    pub params: Params,
}

/// What a checkpoint keeps of [`EarlyStopping`] beside the best weights.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Counters {
    pub patience: usize,
    pub waited: usize,
    /// The best epoch and its validation loss, once there is one.
    pub best: Option<(usize, f64)>,
}

impl EarlyStopping {
    pub fn new(patience: usize) -> Self {
        Self {
            patience,
            best: None,
            waited: 0,
        }
    }

    pub fn patience(&self) -> usize {
        self.patience
    }

    /// Takes the epoch's record (which must carry a validation loss); keeps
    /// the weights when they are the best so far.
    pub(crate) async fn update(
        &mut self,
        record: &EpochRecord,
        trainer: &mut Trainer,
    ) -> Result<(), Error> {
        let val_loss = record
            .val_loss
            .ok_or_else(|| Error::Invalid("early stopping needs a validation split".into()))?;
        if self
            .best
            .as_ref()
            .is_none_or(|best| val_loss < best.val_loss)
        {
            self.best = Some(Best {
                val_loss,
                epoch: record.epoch,
                params: trainer.params_async().await?,
            });
            self.waited = 0;
        } else {
            self.waited += 1;
        }
        Ok(())
    }

    /// Patience ran out: training stops (never before a first epoch).
    pub(crate) fn exhausted(&self) -> bool {
        self.best.is_some() && self.waited >= self.patience
    }

    pub(crate) fn counters(&self) -> Counters {
        Counters {
            patience: self.patience,
            waited: self.waited,
            best: self.best.as_ref().map(|b| (b.epoch, b.val_loss)),
        }
    }

    /// Rebuilt from a checkpoint's counters and best weights.
    pub(crate) fn from_saved(counters: Counters, best: Option<Params>) -> Result<Self, String> {
        let best = match (counters.best, best) {
            (Some((epoch, val_loss)), Some(params)) => Some(Best {
                val_loss,
                epoch,
                params,
            }),
            (None, None) => None,
            _ => {
                return Err("early stopping's best epoch and its weights do not go together".into())
            }
        };
        Ok(Self {
            patience: counters.patience,
            best,
            waited: counters.waited,
        })
    }
}
