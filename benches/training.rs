//! One training step and one epoch per device on the real MNIST data
//! ($GPU_MNIST_DATA, else ../shared/data/mnist). A GPU step includes the wait
//! for the device (the metrics read-back at the end of the pass).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gpu_mnist::data::catalog::{CLASSES, FEATURES};
use gpu_mnist::data::{Splits, MNIST};
use gpu_mnist::{Device, EpochOrder, GpuApi, Init, ModelSpec, Params, TrainConfig, Trainer};

fn data() -> Option<Arc<Splits>> {
    let dir = std::env::var_os(MNIST.data_env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mnist"));
    match MNIST.load(Some(&dir), None) {
        Ok(data) => Some(Arc::new(data)),
        Err(e) => {
            eprintln!("notice: training benches skipped: {e}");
            None
        }
    }
}

fn training(c: &mut Criterion) {
    let Some(data) = data() else { return };
    let order = EpochOrder::new(data.train.len, true, 1)
        .next_epoch()
        .to_vec();
    let spec = ModelSpec::mlp(FEATURES, &[512], CLASSES);
    let params = Params::init(&spec, Init::Glorot, 1);
    let mut group = c.benchmark_group("training");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    let mut devices = vec![("cpu", Device::Cpu)];
    if !gpu_mnist::adapters(GpuApi::Any).is_empty() {
        devices.push((
            "gpu",
            Device::Gpu {
                api: GpuApi::Any,
                adapter: None,
            },
        ));
    }
    for (name, device) in devices {
        let mut trainer = Trainer::new(
            &device,
            &spec,
            &params,
            data.clone(),
            TrainConfig::default(),
        )
        .unwrap();
        group.throughput(Throughput::Elements(128));
        group.bench_function(format!("{name}/step_128"), |b| {
            b.iter(|| trainer.train_on(&order[..128], &mut |_| {}).unwrap())
        });
        // A whole epoch on the software GPU takes seconds; 50 steps (one
        // read-back window) show its steady state.
        let samples = if name == "cpu" { order.len() } else { 50 * 128 };
        group.throughput(Throughput::Elements(samples as u64));
        group.bench_function(format!("{name}/steps_{}", samples.div_ceil(128)), |b| {
            b.iter(|| trainer.train_on(&order[..samples], &mut |_| {}).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, training);
criterion_main!(benches);
