//! End to end on the real data: the book's configuration reaches the book's
//! accuracy on both backends, and the from-scratch variant its ~82%.

mod common;

use gpu_mnist::backend::cpu::CpuBackend;
use gpu_mnist::backend::gpu::GpuBackend;
use gpu_mnist::backend::{Backend, Split, TrainSettings};
use gpu_mnist::loss::LossKind;
use gpu_mnist::model::{Init, ModelSpec, Params};
use gpu_mnist::optim::{OptimizerKind, OptimizerSpec};
use gpu_mnist::train::{fit, FitConfig};

fn book_settings() -> TrainSettings {
    TrainSettings {
        batch_size: 128,
        optimizer: OptimizerSpec::keras_default(OptimizerKind::Rmsprop),
        loss: LossKind::SparseCategorical,
        report_every: 50,
    }
}

/// Trains `epochs` epochs and returns the test accuracy.
fn test_accuracy(backend: &mut dyn Backend, epochs: usize, shuffle: bool, seed: u64) -> f64 {
    let config = FitConfig {
        epochs,
        shuffle,
        seed,
        verbose: false,
    };
    let history = fit(backend, 60_000, 128, &config).unwrap();
    assert_eq!(history.epochs.len(), epochs);
    backend.evaluate(Split::Test).unwrap().accuracy()
}

#[test]
fn cpu_reaches_the_books_accuracy_for_three_seeds() {
    let Some(data) = common::mnist() else { return };
    for seed in 1..=3 {
        let params = Params::init(&ModelSpec::mnist_mlp(), Init::Glorot, seed);
        let mut cpu = CpuBackend::new(data.clone(), params, book_settings());
        let acc = test_accuracy(&mut cpu, 5, true, seed);
        assert!(acc >= 0.978, "seed {seed}: test accuracy {acc}");
        assert_eq!(cpu.counters().steps, 5 * 469);
    }
}

#[test]
fn cpu_from_scratch_variant_reaches_about_82_percent() {
    let Some(data) = common::mnist() else { return };
    let params = Params::init(&ModelSpec::mnist_mlp(), Init::Uniform, 1);
    let settings = TrainSettings {
        optimizer: OptimizerSpec {
            lr: 1e-3,
            ..OptimizerSpec::keras_default(OptimizerKind::Sgd)
        },
        ..book_settings()
    };
    let mut cpu = CpuBackend::new(data, params, settings);
    let acc = test_accuracy(&mut cpu, 10, false, 1);
    assert!((0.78..0.86).contains(&acc), "test accuracy {acc}");
}

#[test]
fn gpu_reaches_the_books_accuracy() {
    let Some(data) = common::mnist() else { return };
    let Some(ctx) = common::gpu() else { return };
    let params = Params::init(&ModelSpec::mnist_mlp(), Init::Glorot, 1);
    let mut gpu = GpuBackend::new(ctx, data, params, book_settings()).unwrap();
    let acc = test_accuracy(&mut gpu, 5, true, 1);
    assert!(acc >= 0.978, "test accuracy {acc}");
    let counters = gpu.counters();
    assert_eq!(counters.steps, 5 * 469);
}
