//! The GPU device's own counts after short runs: the data set crosses once,
//! an epoch uploads only its permutation (plus a few bytes), and the host waits
//! for the device once per `report_every` steps, not after each batch.

mod common;

use std::sync::Arc;

use gpu_mnist::data::catalog::{CLASSES, FEATURES};
use gpu_mnist::data::Splits;
use gpu_mnist::{Init, ModelSpec, Params, Split, TrainConfig, Trainer};

#[test]
fn epochs_move_only_the_permutation_and_sync_once_per_report() {
    let Some(full) = common::mnist() else { return };
    let Some(gpu) = common::gpu() else { return };
    let n = 12_800; // 100 steps of 128
    let data = Arc::new(Splits::new(full.train.truncated(n), full.test.clone()));
    let spec = ModelSpec::mlp(FEATURES, &[512], CLASSES);
    let params = Params::init(&spec, Init::Glorot, 1);
    let config = TrainConfig {
        shuffle: false,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(&gpu, &spec, &params, data.clone(), config).unwrap();
    let loaded = trainer.counters();
    let dataset_bytes = (data.train.images.len() + data.test.images.len()) as u64;
    assert!(
        loaded.bytes_to_device >= dataset_bytes,
        "the data set is uploaded at load"
    );
    assert_eq!((loaded.steps, loaded.dispatches, loaded.submits), (0, 0, 0));

    struct Reports(usize);
    impl gpu_mnist::Observer for Reports {
        fn progress(&mut self, _: usize, _: &gpu_mnist::Metrics) {
            self.0 += 1;
        }
    }
    let mut reports = Reports(0);
    trainer.train_epoch(&mut reports).unwrap();
    let first = trainer.counters().since(&loaded);
    let after_first = trainer.counters();
    trainer.train_epoch(&mut ()).unwrap();
    let second = trainer.counters().since(&after_first);

    for epoch in [first, second] {
        assert_eq!(epoch.steps, 100);
        assert_eq!(
            epoch.dispatches,
            100 * 10,
            "gather, 2 forward, loss, 2x(dW, db), dX, update"
        );
        assert_eq!(epoch.submits, 2, "50 steps per submit");
        assert!(
            epoch.blocking_syncs <= 100usize.div_ceil(50) as u64 + 1,
            "{epoch:?}"
        );
        assert_eq!(
            epoch.bytes_from_device,
            100 * 8,
            "a loss sum and a count per step"
        );
    }
    assert_eq!(reports.0, 2);
    // The first epoch also writes the step table (a few bytes per step); later
    // epochs move exactly the permutation and the optimizer's step count.
    assert!(
        first.bytes_to_device <= 4 * n as u64 + 100 * 256 + 4,
        "{first:?}"
    );
    assert_eq!(second.bytes_to_device, 4 * n as u64 + 4);

    let before = trainer.counters();
    let test = trainer.evaluate(Split::Test).unwrap();
    let eval = trainer.counters().since(&before);
    assert_eq!(test.samples, 10_000);
    // 79 steps in bounded submits of 50: no submit runs long enough to trip an
    // OS watchdog on a slow GPU.
    assert_eq!(
        (eval.submits, eval.blocking_syncs, eval.bytes_to_device),
        (2, 2, 0)
    );
}

/// The book's convnet keeps the MLP's discipline: per step one launch per op
/// of its plan and nothing else; one submit and at most one wait per
/// read-back interval; 8 bytes back per step.
#[test]
fn the_convnet_syncs_once_per_report_too() {
    let Some(full) = common::mnist() else { return };
    let Some(gpu) = common::gpu() else { return };
    let n = 640; // 10 steps of 64
    let data = Arc::new(Splits::new(
        full.train.truncated(n),
        full.test.truncated(64),
    ));
    let spec = ModelSpec::convnet(28, 28, CLASSES);
    let params = Params::init(&spec, Init::Glorot, 1);
    let config = TrainConfig {
        batch_size: 64,
        loss: gpu_mnist::LossKind::Categorical,
        shuffle: false,
        report_every: 5,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(&gpu, &spec, &params, data, config).unwrap();
    trainer.train_epoch(&mut ()).unwrap();
    let after_first = trainer.counters();
    trainer.train_epoch(&mut ()).unwrap();
    let epoch = trainer.counters().since(&after_first);
    assert_eq!(epoch.steps, 10);
    // gather; 3 x (im2col, product), 2 pools, 2 dense products; the loss;
    // 5 x (dW, db), 4 input gradients, 2 col2im, 2 pool gradients; update.
    assert_eq!(epoch.dispatches, 10 * (1 + 10 + 1 + 19), "{epoch:?}");
    assert_eq!(epoch.submits, 2, "5 steps per submit");
    assert!(epoch.blocking_syncs <= 3, "{epoch:?}");
    assert_eq!(epoch.bytes_from_device, 10 * 8);
    assert_eq!(epoch.bytes_to_device, 4 * n as u64 + 4);
}
