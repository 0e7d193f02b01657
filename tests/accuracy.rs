//! End to end on the real data, through the library's API: the book's
//! configuration reaches the book's accuracy on both devices, and the
//! from-scratch variant its ~82%.

mod common;

use gpu_mnist::data::catalog::{CLASSES, FEATURES};
use gpu_mnist::{
    Device, Init, ModelSpec, OptimizerKind, OptimizerSpec, Params, Split, TrainConfig, Trainer,
};

fn book() -> ModelSpec {
    ModelSpec::mlp(FEATURES, &[512], CLASSES)
}

/// Trains `epochs` epochs and returns the test accuracy.
fn test_accuracy(device: &Device, init: Init, config: TrainConfig, epochs: usize) -> Option<f64> {
    let data = common::mnist()?;
    let params = Params::init(&book(), init, config.seed);
    let mut trainer = Trainer::new(device, &book(), &params, data, config).unwrap();
    let history = trainer.fit(epochs, &mut ()).unwrap();
    assert_eq!(history.epochs.len(), epochs);
    assert_eq!(trainer.counters().steps, epochs as u64 * 469);
    Some(trainer.evaluate(Split::Test).unwrap().accuracy())
}

#[test]
fn cpu_reaches_the_books_accuracy_for_three_seeds() {
    for seed in 1..=3 {
        let config = TrainConfig {
            seed,
            ..TrainConfig::default()
        };
        let Some(acc) = test_accuracy(&Device::Cpu, Init::Glorot, config, 5) else {
            return;
        };
        assert!(acc >= 0.978, "seed {seed}: test accuracy {acc}");
    }
}

#[test]
fn cpu_from_scratch_variant_reaches_about_82_percent() {
    let config = TrainConfig {
        optimizer: OptimizerSpec {
            lr: 1e-3,
            ..OptimizerSpec::keras_default(OptimizerKind::Sgd)
        },
        shuffle: false,
        ..TrainConfig::default()
    };
    let Some(acc) = test_accuracy(&Device::Cpu, Init::Uniform, config, 10) else {
        return;
    };
    assert!((0.78..0.86).contains(&acc), "test accuracy {acc}");
}

#[test]
fn gpu_reaches_the_books_accuracy() {
    let Some(gpu) = common::gpu() else { return };
    let Some(acc) = test_accuracy(&gpu, Init::Glorot, TrainConfig::default(), 5) else {
        return;
    };
    assert!(acc >= 0.978, "test accuracy {acc}");
}
