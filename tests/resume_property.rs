//! Any run, stopped anywhere, saved and resumed, equals the run that was
//! never stopped: random training options (optimizer, validation split,
//! early stopping's patience, shuffling, batch size) and a random stop (after
//! a number of epochs, or at a read-back inside one), through the checkpoint
//! bytes and `Trainer::resume`, on the CPU.

mod common;

use std::sync::Arc;

use gpu_mnist::data::catalog::{CLASSES, FEATURES};
use gpu_mnist::data::Splits;
use gpu_mnist::{
    checkpoint, Device, EarlyStopping, Error, History, Init, Metrics, ModelSpec, Observer,
    OptimizerKind, OptimizerSpec, Params, TrainConfig, Trainer,
};
use proptest::prelude::*;

/// A run's options.
#[derive(Debug, Clone, Copy)]
struct Options {
    optimizer: OptimizerKind,
    /// Large enough, now and then, for the validation loss to go up, so
    /// that early stopping waits, stops, and restores an earlier epoch.
    lr: f32,
    validation: Option<f64>,
    patience: Option<usize>,
    shuffle: bool,
    batch_size: usize,
    epochs: usize,
}

fn options() -> impl Strategy<Value = Options> {
    (
        prop_oneof![
            Just(OptimizerKind::Rmsprop),
            Just(OptimizerKind::Adam),
            Just(OptimizerKind::Sgd)
        ],
        prop_oneof![Just(1e-3f32), Just(0.05)],
        prop::option::of(prop_oneof![Just(0.2), Just(0.5)]),
        1usize..=3,
        any::<bool>(),
        prop_oneof![Just(32usize), Just(100)],
        2usize..=8,
    )
        .prop_map(
            |(optimizer, lr, validation, patience, shuffle, batch_size, epochs)| Options {
                optimizer,
                lr,
                // Early stopping watches the validation loss.
                patience: validation.map(|_| patience),
                validation,
                shuffle,
                batch_size,
                epochs,
            },
        )
}

/// Where a run stops: after some whole epochs, or at the `reports`-th
/// read-back (counted over the run).
#[derive(Debug, Clone, Copy)]
enum Stop {
    AfterEpochs(usize),
    AtReadBack(usize),
}

fn stop() -> impl Strategy<Value = Stop> {
    prop_oneof![
        (1usize..8).prop_map(Stop::AfterEpochs),
        (1usize..40).prop_map(Stop::AtReadBack),
    ]
}

/// Asks to stop at the `at`-th progress report.
struct StopAt {
    at: usize,
    seen: usize,
}

impl Observer for StopAt {
    fn progress(&mut self, _epoch: usize, _running: &Metrics) {
        self.seen += 1;
    }
    fn stop(&mut self) -> bool {
        self.seen >= self.at
    }
}

fn trainer(options: Options, params: &Params, data: &Arc<Splits>) -> Trainer {
    let config = TrainConfig {
        optimizer: OptimizerSpec {
            lr: options.lr,
            ..OptimizerSpec::keras_default(options.optimizer)
        },
        shuffle: options.shuffle,
        batch_size: options.batch_size,
        report_every: 2,
        seed: 5,
        ..TrainConfig::default()
    };
    Trainer::new(&Device::Cpu, &spec(), params, data.clone(), config).unwrap()
}

fn spec() -> ModelSpec {
    ModelSpec::mlp(FEATURES, &[16], CLASSES)
}

/// The fit of `epochs` epochs with the run's early stopping.
fn fit(
    trainer: &mut Trainer,
    options: Options,
    epochs: usize,
    observer: &mut dyn Observer,
) -> Result<History, Error> {
    let stopping = options.patience.map(EarlyStopping::new);
    trainer.fit_with(epochs, stopping, observer)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn a_resumed_run_equals_the_straight_run(options in options(), stop in stop()) {
        resumed_equals_straight(options, stop)?;
    }
}

/// Random cases seldom end a first part on a restore of an earlier epoch:
/// a run whose validation loss goes up (a large learning rate), stopped after
/// each of its epochs.
#[test]
fn a_run_resumed_after_early_stopping_restored_an_epoch_goes_on_from_its_last() {
    let options = Options {
        optimizer: OptimizerKind::Rmsprop,
        lr: 0.05,
        validation: Some(0.5),
        patience: Some(3),
        shuffle: true,
        batch_size: 32,
        epochs: 8,
    };
    let mut restores = 0;
    for n in 1..8 {
        restores += usize::from(resumed_equals_straight(options, Stop::AfterEpochs(n)).unwrap());
    }
    if common::mnist().is_some() {
        assert!(restores > 0, "no first part ended on a restore");
    }
}

/// Checks that the run of `options` stopped at `stop` and resumed equals the
/// straight run; true when the stop came after a restore of an earlier epoch.
fn resumed_equals_straight(options: Options, stop: Stop) -> Result<bool, TestCaseError> {
    let Some(full) = common::mnist() else {
        return Ok(false);
    };
    let mut splits = Splits::new(full.train.truncated(400), full.test.truncated(100));
    if let Some(fraction) = options.validation {
        splits = splits.hold_out(fraction).unwrap();
    }
    let data = Arc::new(splits);
    let params = Params::init(&spec(), Init::Glorot, 9);

    let mut straight = trainer(options, &params, &data);
    let whole = fit(&mut straight, options, options.epochs, &mut ()).unwrap();

    // The same run, stopped, saved to a checkpoint, read back and resumed for
    // the epochs it has left.
    let mut first = trainer(options, &params, &data);
    let mut history = Vec::new();
    // Whether the first part ended with early stopping's restore of an
    // earlier epoch (the case that needs `continue_from`).
    let mut restored = false;
    let done = match stop {
        Stop::AfterEpochs(n) => {
            let n = n.min(options.epochs);
            let part = fit(&mut first, options, n, &mut ()).unwrap();
            restored = part.best_epoch.is_some_and(|best| best < n);
            history.extend(part.epochs);
            // Stopped early before its epochs were done: as the straight run.
            if part.stopped_early {
                prop_assert!(whole.stopped_early);
            }
            n
        }
        Stop::AtReadBack(at) => {
            let mut stopper = StopAt { at, seen: 0 };
            match fit(&mut first, options, options.epochs, &mut stopper) {
                // The run ended before that read-back: nothing to resume.
                Ok(_) => return Ok(false),
                Err(Error::Interrupted { epoch, .. }) => epoch - 1,
                Err(e) => panic!("{e}"),
            }
        }
    };
    let state = first.state(&history).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.st");
    checkpoint::save_run(&path, &spec(), first.config(), &state, Default::default()).unwrap();
    let (config, state) = checkpoint::read(&path).unwrap().run.unwrap();
    let mut resumed = Trainer::resume(&Device::Cpu, &spec(), &state, data.clone(), config).unwrap();
    let rest = fit(&mut resumed, options, options.epochs - done, &mut ()).unwrap();

    prop_assert_eq!(resumed.params().unwrap(), straight.params().unwrap());
    prop_assert_eq!(rest.best_epoch, whole.best_epoch);
    // A fit with no epochs left did not stop early, whatever the last did.
    if done < options.epochs {
        prop_assert_eq!(rest.stopped_early, whole.stopped_early);
    }
    let tail = &whole.epochs[whole.epochs.len() - rest.epochs.len()..];
    for (r, w) in rest.epochs.iter().zip(tail) {
        prop_assert_eq!(
            (r.epoch, r.accuracy, r.val_loss),
            (w.epoch, w.accuracy, w.val_loss)
        );
        // An interrupted epoch's loss adds its two parts' sums.
        prop_assert!(
            (r.loss - w.loss).abs() <= 1e-12 * w.loss.abs(),
            "{} vs {}",
            r.loss,
            w.loss
        );
    }
    Ok(restored)
}
