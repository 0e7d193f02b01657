//! One training step and one epoch per backend on the real MNIST data
//! ($GPU_MNIST_DATA, else ../shared/data/mnist). A GPU step includes the wait
//! for the device (the metrics read-back at the end of `train_epoch`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gpu_mnist::backend::cpu::CpuBackend;
use gpu_mnist::backend::gpu::{GpuBackend, GpuContext};
use gpu_mnist::backend::{Backend, TrainSettings};
use gpu_mnist::data::{mnist, Mnist};
use gpu_mnist::loss::LossKind;
use gpu_mnist::model::{Init, ModelSpec, Params};
use gpu_mnist::optim::{OptimizerKind, OptimizerSpec};
use gpu_mnist::train::EpochOrder;

fn data() -> Option<Arc<Mnist>> {
    let dir = std::env::var_os(mnist::DATA_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mnist"));
    match mnist::load(Some(&dir), false) {
        Ok(data) => Some(Arc::new(data)),
        Err(e) => {
            eprintln!("notice: training benches skipped: {e}");
            None
        }
    }
}

fn backends(data: &Arc<Mnist>) -> Vec<(&'static str, Box<dyn Backend>)> {
    let settings = TrainSettings {
        batch_size: 128,
        optimizer: OptimizerSpec::keras_default(OptimizerKind::Rmsprop),
        loss: LossKind::SparseCategorical,
        report_every: 50,
    };
    let params = Params::init(&ModelSpec::mnist_mlp(), Init::Glorot, 1);
    let mut out: Vec<(&'static str, Box<dyn Backend>)> = vec![(
        "cpu",
        Box::new(CpuBackend::new(data.clone(), params.clone(), settings)),
    )];
    match GpuContext::open(wgpu::Backends::all(), None) {
        Ok(ctx) => out.push((
            "gpu",
            Box::new(GpuBackend::new(ctx, data.clone(), params, settings).unwrap()),
        )),
        Err(e) => eprintln!("notice: GPU training benches skipped: {e}"),
    }
    out
}

fn training(c: &mut Criterion) {
    let Some(data) = data() else { return };
    let order = EpochOrder::new(data.train.len, true, 1)
        .next_epoch()
        .to_vec();
    let mut group = c.benchmark_group("training");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    for (name, mut backend) in backends(&data) {
        group.throughput(Throughput::Elements(128));
        group.bench_function(format!("{name}/step_128"), |b| {
            b.iter(|| backend.train_epoch(&order[..128], &mut |_| {}).unwrap())
        });
        // A whole epoch on the software GPU takes seconds; 50 steps (one
        // read-back window) show its steady state.
        let samples = if name == "cpu" { order.len() } else { 50 * 128 };
        group.throughput(Throughput::Elements(samples as u64));
        group.bench_function(format!("{name}/steps_{}", samples.div_ceil(128)), |b| {
            b.iter(|| backend.train_epoch(&order[..samples], &mut |_| {}).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, training);
criterion_main!(benches);
