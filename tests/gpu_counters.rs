//! The GPU backend's own counts after short runs: the data set crosses once,
//! an epoch uploads only its permutation (plus a few bytes), and the host waits
//! for the device once per `report_every` steps, not after each batch.

mod common;

use std::sync::Arc;

use gpu_mnist::backend::gpu::GpuBackend;
use gpu_mnist::backend::{Backend, Split, TrainSettings};
use gpu_mnist::data::Mnist;
use gpu_mnist::loss::LossKind;
use gpu_mnist::model::{Init, ModelSpec, Params};
use gpu_mnist::optim::{OptimizerKind, OptimizerSpec};

#[test]
fn epochs_move_only_the_permutation_and_sync_once_per_report() {
    let Some(full) = common::mnist() else { return };
    let Some(ctx) = common::gpu() else { return };
    let n = 12_800; // 100 steps of 128
    let data = Arc::new(Mnist {
        train: full.train.truncated(n),
        test: full.test.clone(),
    });
    let settings = TrainSettings {
        batch_size: 128,
        optimizer: OptimizerSpec::keras_default(OptimizerKind::Rmsprop),
        loss: LossKind::SparseCategorical,
        report_every: 50,
    };
    let params = Params::init(&ModelSpec::mnist_mlp(), Init::Glorot, 1);
    let mut gpu = GpuBackend::new(ctx, data.clone(), params, settings).unwrap();
    let loaded = gpu.counters();
    let dataset_bytes = (data.train.images.len() + data.test.images.len()) as u64;
    assert!(
        loaded.bytes_to_device >= dataset_bytes,
        "the data set is uploaded at load"
    );
    assert_eq!((loaded.steps, loaded.dispatches, loaded.submits), (0, 0, 0));

    let order: Vec<u32> = (0..n as u32).rev().collect();
    let mut reports = 0;
    gpu.train_epoch(&order, &mut |_| reports += 1).unwrap();
    let first = gpu.counters().since(&loaded);
    let after_first = gpu.counters();
    gpu.train_epoch(&order, &mut |_| {}).unwrap();
    let second = gpu.counters().since(&after_first);

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
    assert_eq!(reports, 2);
    // The first epoch also writes the step table (a few bytes per step); later
    // epochs move exactly the permutation and the optimizer's step count.
    assert!(
        first.bytes_to_device <= 4 * n as u64 + 100 * 256 + 4,
        "{first:?}"
    );
    assert_eq!(second.bytes_to_device, 4 * n as u64 + 4);

    let before = gpu.counters();
    let test = gpu.evaluate(Split::Test).unwrap();
    let eval = gpu.counters().since(&before);
    assert_eq!(test.samples, 10_000);
    assert_eq!(
        (eval.submits, eval.blocking_syncs, eval.bytes_to_device),
        (1, 1, 0)
    );
}
