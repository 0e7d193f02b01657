//! Each op at the model's shapes on the CPU and the GPU, through the plan
//! executors that train. GPU timings include the wait for the device: one
//! submit of `REPEATS` launches, then a blocking wait, so the figure per
//! launch carries 1/REPEATS of the sync.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gpu_mnist::bench_support;
use gpu_mnist::{Device, GpuApi};

const REPEATS: usize = 10;

/// The CPU, and the first Vulkan or other GPU adapter when there is one.
fn devices() -> Vec<(&'static str, Device)> {
    let mut out = vec![("cpu", Device::Cpu)];
    if gpu_mnist::adapters(GpuApi::Any).is_empty() {
        eprintln!("notice: GPU benches skipped: no adapter");
    } else {
        out.push((
            "gpu",
            Device::Gpu {
                api: GpuApi::Any,
                adapter: None,
            },
        ));
    }
    out
}

fn matmul(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul");
    for (device_name, device) in devices() {
        for (name, flops, mut bench) in bench_support::matmuls(&device, REPEATS).unwrap() {
            group.throughput(Throughput::Elements(flops * REPEATS as u64));
            group.bench_function(BenchmarkId::new(device_name, name), |b| {
                b.iter(|| bench.run().unwrap())
            });
        }
    }
    group.finish();
}

fn loss_and_update(c: &mut Criterion) {
    let mut group = c.benchmark_group("elementwise");
    for (device_name, device) in devices() {
        let mut xent = bench_support::softmax_xent(&device, REPEATS).unwrap();
        group.throughput(Throughput::Elements(REPEATS as u64));
        group.bench_function(format!("{device_name}/softmax_xent_128x10"), |b| {
            b.iter(|| xent.run().unwrap())
        });
        let mut update = bench_support::rmsprop(&device).unwrap();
        group.throughput(Throughput::Elements(407_050));
        group.bench_function(format!("{device_name}/rmsprop_407050"), |b| {
            b.iter(|| update.run().unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, matmul, loss_and_update);
criterion_main!(benches);
