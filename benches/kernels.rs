//! Each kernel at the model's shapes on both backends. GPU timings include the
//! wait for the device: one submit of `DISPATCHES` dispatches, then a blocking
//! poll, so the figure per dispatch carries 1/DISPATCHES of the sync.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gpu_mnist::backend::cpu::ops;
use gpu_mnist::backend::gpu::kernels::{BatchDim, Epilogue, MatmulVariant};
use gpu_mnist::backend::gpu::probe::{Probe, ProbeTargets};
use gpu_mnist::backend::gpu::GpuContext;
use gpu_mnist::optim::{OptimizerKind, OptimizerSpec};
use ndarray::Array2;

const DISPATCHES: usize = 10;

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

/// (name, variant, m, k, n): the matmul forms of a training step.
fn forms() -> Vec<(&'static str, MatmulVariant, usize, usize, usize)> {
    let v = MatmulVariant::new;
    vec![
        (
            "forward_128x784x512",
            v(false, false, Epilogue::BiasRelu, BatchDim::M),
            128,
            784,
            512,
        ),
        (
            "forward_128x512x10",
            v(false, false, Epilogue::Bias, BatchDim::M),
            128,
            512,
            10,
        ),
        (
            "grad_weights_784x128x512",
            v(true, false, Epilogue::None, BatchDim::K),
            784,
            128,
            512,
        ),
        // The first layer's form in training: the transposed batch times delta.
        (
            "grad_weights_from_xt_784x128x512",
            v(false, false, Epilogue::None, BatchDim::None),
            784,
            128,
            512,
        ),
        (
            "grad_weights_512x128x10",
            v(true, false, Epilogue::None, BatchDim::K),
            512,
            128,
            10,
        ),
        (
            "grad_input_128x10x512",
            v(false, true, Epilogue::ReluMask, BatchDim::M),
            128,
            10,
            512,
        ),
    ]
}

fn gpu_probe() -> Option<Probe> {
    match GpuContext::open(wgpu::Backends::all(), None) {
        Ok(ctx) => Some(Probe::new(ctx)),
        Err(e) => {
            eprintln!("notice: GPU benches skipped: {e}");
            None
        }
    }
}

fn matmul(c: &mut Criterion) {
    let probe = gpu_probe();
    let mut group = c.benchmark_group("matmul");
    for (name, variant, m, k, n) in forms() {
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        let (a, b) = (values(m * k, 1), values(k * n, 2));
        let extra = values(m * n, 3);
        let a_view = if variant.transpose_a {
            Array2::from_shape_vec((k, m), a.clone())
                .unwrap()
                .reversed_axes()
        } else {
            Array2::from_shape_vec((m, k), a.clone()).unwrap()
        };
        let b_view = if variant.transpose_b {
            Array2::from_shape_vec((n, k), b.clone())
                .unwrap()
                .reversed_axes()
        } else {
            Array2::from_shape_vec((k, n), b.clone()).unwrap()
        };
        let mut out = Array2::zeros((m, n));
        group.bench_function(BenchmarkId::new("cpu", name), |bench| {
            bench.iter(|| ops::matmul(a_view.view(), b_view.view(), out.view_mut()))
        });
        if let Some(probe) = &probe {
            let kernel = probe.prepare_matmul(
                variant.fastest_for(m, k, n, probe.ctx.subgroups_of_8),
                &a,
                &b,
                &extra,
                m,
                k,
                n,
            );
            group.throughput(Throughput::Elements((2 * m * k * n * DISPATCHES) as u64));
            group.bench_function(BenchmarkId::new("gpu", name), |bench| {
                bench.iter(|| probe.dispatch(&kernel, DISPATCHES).unwrap())
            });
        }
    }
    group.finish();
}

fn loss_and_update(c: &mut Criterion) {
    let probe = gpu_probe();
    let mut group = c.benchmark_group("elementwise");
    let logits = values(128 * 10, 4);
    let labels: Vec<u8> = (0..128).map(|i| (i % 10) as u8).collect();
    let view = ndarray::ArrayView2::from_shape((128, 10), &logits).unwrap();
    let mut grad = Array2::zeros((128, 10));
    group.bench_function("cpu/softmax_xent_128x10", |bench| {
        bench.iter(|| {
            ops::softmax_cross_entropy(
                view,
                ops::Targets::Sparse(&labels),
                1.0 / 128.0,
                grad.view_mut(),
            )
        })
    });
    if let Some(probe) = &probe {
        group.bench_function("gpu/softmax_xent_128x10", |bench| {
            bench.iter(|| {
                probe
                    .softmax_xent(&logits, 10, ProbeTargets::Sparse(&labels), true)
                    .unwrap()
            })
        });
    }
    let spec = OptimizerSpec::keras_default(OptimizerKind::Rmsprop);
    let count = 784 * 512 + 512 + 512 * 10 + 10;
    let (mut params, grads) = (values(count, 5), values(count, 6));
    let mut state = vec![vec![0.0; count]; 1];
    group.throughput(Throughput::Elements(count as u64));
    group.bench_function("cpu/rmsprop_407050", |bench| {
        bench.iter(|| spec.apply(1, &mut params, &grads, &mut state))
    });
    group.finish();
}

criterion_group!(benches, matmul, loss_and_update);
criterion_main!(benches);
