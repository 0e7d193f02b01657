//! Whole training steps on the GPU against the CPU, through the library's
//! API: one step per optimizer, a 50-step trajectory with a partial batch,
//! and bit-identical repeated GPU runs.

mod common;

use std::sync::Arc;

use gpu_mnist::data::catalog::{CLASSES, FEATURES};
use gpu_mnist::data::Splits;
use gpu_mnist::{
    Device, Init, LossKind, ModelSpec, OptimizerKind, OptimizerSpec, Params, Split, TrainConfig,
    Trainer,
};

/// Trainers on both devices from the same parameters on the first `n` MNIST images.
fn trainers(n: usize, spec: &ModelSpec, config: TrainConfig) -> Option<(Trainer, Trainer)> {
    let gpu = common::gpu()?;
    let full = common::mnist()?;
    let data = Arc::new(Splits::new(full.train.truncated(n), full.test.clone()));
    let params = Params::init(spec, Init::Glorot, 1);
    let cpu = Trainer::new(&Device::Cpu, spec, &params, data.clone(), config).unwrap();
    let gpu = Trainer::new(&gpu, spec, &params, data, config).unwrap();
    Some((cpu, gpu))
}

fn book() -> ModelSpec {
    ModelSpec::mlp(FEATURES, &[512], CLASSES)
}

#[test]
fn one_training_step_matches_cpu_for_every_optimizer() {
    for (kind, loss) in [
        (OptimizerKind::Rmsprop, LossKind::SparseCategorical),
        (OptimizerKind::Adam, LossKind::Categorical),
        (OptimizerKind::Sgd, LossKind::SparseCategorical),
    ] {
        let config = TrainConfig {
            optimizer: OptimizerSpec::keras_default(kind),
            loss,
            ..TrainConfig::default()
        };
        let Some((mut cpu, mut gpu)) = trainers(128, &book(), config) else {
            return;
        };
        let order: Vec<u32> = (0..128).rev().collect();
        let c = cpu.train_on(&order, &mut |_| {}).unwrap();
        let g = gpu.train_on(&order, &mut |_| {}).unwrap();
        assert_eq!(
            (g.samples, g.steps, g.correct),
            (c.samples, c.steps, c.correct)
        );
        assert!(
            (g.loss() - c.loss()).abs() < 1e-5,
            "{kind:?}: loss {} vs {}",
            g.loss(),
            c.loss()
        );
        // RMSprop and Adam move each weight by about lr = 1e-3 whatever the
        // gradient's size, so tiny gradient differences cannot grow past it.
        let diff = gpu.params().unwrap().max_abs_diff(&cpu.params().unwrap());
        assert!(diff < 1e-5, "{kind:?}: parameters differ by {diff}");
    }
}

#[test]
fn fifty_steps_stay_on_the_cpu_trajectory_with_a_partial_batch() {
    // Two hidden layers, and 6,350 images: 50 steps, the last of 78 rows.
    let spec = ModelSpec::mlp(FEATURES, &[64, 32], CLASSES);
    // Reports every 15 steps, and after the last.
    let config = TrainConfig {
        report_every: 15,
        ..TrainConfig::default()
    };
    let Some((mut cpu, mut gpu)) = trainers(6350, &spec, config) else {
        return;
    };
    let order: Vec<u32> = (0..6350).collect();
    let (mut cpu_reports, mut gpu_reports) = (Vec::new(), Vec::new());
    let c = cpu
        .train_on(&order, &mut |m| cpu_reports.push(m.steps))
        .unwrap();
    let g = gpu
        .train_on(&order, &mut |m| gpu_reports.push(m.steps))
        .unwrap();
    assert_eq!((g.samples, g.steps), (6350, 50));
    assert_eq!(gpu_reports, vec![15, 30, 45, 50]);
    assert_eq!(cpu_reports, gpu_reports);
    assert!(
        (g.accuracy() - c.accuracy()).abs() <= 2.0 / 6350.0,
        "{} vs {}",
        g.accuracy(),
        c.accuracy()
    );
    assert!(
        (g.loss() - c.loss()).abs() < 1e-3,
        "loss {} vs {}",
        g.loss(),
        c.loss()
    );
    let diff = gpu.params().unwrap().max_abs_diff(&cpu.params().unwrap());
    assert!(
        diff < 2e-3,
        "after 50 steps the parameters differ by {diff}"
    );
    let (ce, ge) = (
        cpu.evaluate(Split::Test).unwrap(),
        gpu.evaluate(Split::Test).unwrap(),
    );
    assert!((ge.loss() - ce.loss()).abs() < 1e-3 && ge.correct.abs_diff(ce.correct) <= 3);
    // Predictions on the device agree with the CPU's.
    let images = &common::mnist().unwrap().test.images[..7 * FEATURES];
    let (cp, gp) = (
        cpu.model().predict(images).unwrap(),
        gpu.model().predict(images).unwrap(),
    );
    for (c, g) in cp.iter().flatten().zip(gp.iter().flatten()) {
        assert!((c - g).abs() < 1e-3, "probabilities {c} vs {g}");
    }
    // An order naming an example the split lacks is refused alike.
    for trainer in [&mut cpu, &mut gpu] {
        let e = trainer.train_on(&[0, 6350], &mut |_| {}).unwrap_err();
        assert_eq!(
            e.to_string(),
            "example index 6350 is out of range: the split has 6350 examples"
        );
    }
}

#[test]
fn same_seed_gives_identical_gpu_runs() {
    let run = || {
        let (_, mut gpu) = trainers(1000, &book(), TrainConfig::default())?;
        let order: Vec<u32> = (0..1000).map(|i| (i * 7) % 1000).collect();
        let m = gpu.train_on(&order, &mut |_| {}).unwrap();
        Some((m.loss_sum, m.correct, gpu.params().unwrap()))
    };
    let Some(first) = run() else { return };
    let second = run().unwrap();
    assert_eq!(first.0.to_bits(), second.0.to_bits());
    assert_eq!(first.1, second.1);
    assert_eq!(first.2, second.2, "parameters are bit-identical");
}

/// A parameter that stops being a number stops the run at the next read-back,
/// though the loss stays finite: here the weight of a pixel that is always 0
/// (a corner), whose NaN the CPU's sparse first layer never multiplies and a
/// relu may turn into 0.
#[test]
fn a_parameter_that_is_not_a_number_stops_the_run() {
    let Some(full) = common::mnist() else {
        return;
    };
    let data = Arc::new(Splits::new(full.train.truncated(640), full.test.clone()));
    let spec = ModelSpec::mlp(FEATURES, &[16], CLASSES);
    let mut params = Params::init(&spec, Init::Glorot, 1);
    params.tensors[0].values[0] = f32::NAN;
    let config = TrainConfig {
        report_every: 2,
        ..TrainConfig::default()
    };
    let mut devices = vec![Device::Cpu];
    devices.extend(common::gpu());
    for device in devices {
        let mut trainer = Trainer::new(&device, &spec, &params, data.clone(), config).unwrap();
        let err = trainer.train_epoch(&mut ()).unwrap_err();
        // At the first read-back; the GPU's arrives one window late, as it
        // reads a window back while the next one runs.
        let first = if device == Device::Cpu { 2 } else { 4 };
        assert!(
            matches!(err, gpu_mnist::Error::Diverged { epoch: 1, step, .. } if step == first),
            "{}: {err}",
            trainer.describe()
        );
    }
}
