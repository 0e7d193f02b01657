//! Every WGSL kernel against the CPU reference, then whole training steps and a
//! short trajectory of the GPU backend against the CPU backend.
//!
//! Tolerances: f32 sums of K products differ between two summation orders by
//! about sqrt(K) * 6e-8 * sum|a*b| in practice (the worst case is K * 6e-8); we
//! allow 1e-5 * sum|a*b| + 1e-6, about 3x the practical bound at K = 785.

mod common;

use std::sync::Arc;

use gpu_mnist::backend::cpu::{ops, CpuBackend};
use gpu_mnist::backend::gpu::kernels::{BTexture, BatchDim, Epilogue, MatmulKernel, MatmulVariant};
use gpu_mnist::backend::gpu::probe::{Probe, ProbeTargets};
use gpu_mnist::backend::gpu::GpuBackend;
use gpu_mnist::backend::{Backend, Split, TrainSettings};
use gpu_mnist::data::Mnist;
use gpu_mnist::loss::LossKind;
use gpu_mnist::model::{Init, ModelSpec, Params};
use gpu_mnist::optim::{OptimizerKind, OptimizerSpec};
use ndarray::{Array2, ArrayView2};

fn probe() -> Option<Probe> {
    common::gpu().map(Probe::new)
}

/// Checks a matmul variant on an `m x k x n` problem against ndarray.
fn check_matmul(probe: &Probe, variant: MatmulVariant, m: usize, k: usize, n: usize, seed: u64) {
    let mut rng = common::Lcg(seed);
    let a = Array2::from_shape_vec((m, k), rng.vec(m * k)).unwrap();
    let b = Array2::from_shape_vec((k, n), rng.vec(k * n)).unwrap();
    let bias = rng.vec(n);
    // A relu output: zero in about half the places.
    let mask: Vec<f32> = rng.vec(m * n).into_iter().map(|v| v.max(0.0)).collect();
    let stored_a = if variant.transpose_a {
        a.t().as_standard_layout().into_owned()
    } else {
        a.clone()
    };
    let stored_b = if variant.transpose_b {
        b.t().as_standard_layout().into_owned()
    } else {
        b.clone()
    };
    let extra = if variant.epilogue == Epilogue::ReluMask {
        &mask
    } else {
        &bias
    };
    let kernel = probe.prepare_matmul(
        variant,
        stored_a.as_slice().unwrap(),
        stored_b.as_slice().unwrap(),
        extra,
        m,
        k,
        n,
    );
    let gpu = probe.run(&kernel).unwrap();

    let mut expected = Array2::zeros((m, n));
    match variant.epilogue {
        Epilogue::None => ops::matmul(a.view(), b.view(), expected.view_mut()),
        Epilogue::Bias | Epilogue::BiasRelu => {
            let relu = variant.epilogue == Epilogue::BiasRelu;
            ops::dense_forward(a.view(), b.view(), &bias, relu, expected.view_mut())
        }
        Epilogue::ReluMask => {
            ops::matmul(a.view(), b.view(), expected.view_mut());
            ops::relu_backward(
                expected.view_mut(),
                ArrayView2::from_shape((m, n), &mask).unwrap(),
            );
        }
    }
    let magnitude = a.mapv(f32::abs).dot(&b.mapv(f32::abs));
    for ((idx, &e), &g) in expected.indexed_iter().zip(&gpu) {
        let tol = 1e-5 * (magnitude[idx] + bias[idx.1].abs()) + 1e-6;
        assert!(
            (g - e).abs() <= tol,
            "{variant:?} {m}x{k}x{n} at {idx:?}: gpu {g} vs cpu {e} (tolerance {tol})"
        );
    }
}

const SHAPES: [(usize, usize, usize); 8] = [
    (1, 1, 1),
    (3, 5, 7),
    (4, 8, 12),
    (33, 17, 65),
    (68, 36, 20),
    (127, 785, 513),
    (128, 784, 512),
    (128, 512, 10),
];

/// Checks the scalar kernel and every vectorised kernel the shape allows (vec4,
/// and on devices with 8-lane subgroups the subgroup kernel with B in a buffer
/// and in a texture); returns 1 when any vectorised kernel was checked.
fn check_all(probe: &Probe, v: MatmulVariant, m: usize, k: usize, n: usize, seed: u64) -> usize {
    check_matmul(probe, v, m, k, n, seed);
    if !v.vec4_fits(m, k, n) {
        return 0;
    }
    let mut kernels = vec![MatmulKernel::Vec4];
    if probe.ctx.subgroups_of_8 && !v.transpose_b {
        kernels.push(MatmulKernel::Subgroup8);
        if BTexture::fits(k, n) {
            kernels.push(MatmulKernel::Subgroup8Texture);
        }
    }
    for kernel in kernels {
        check_matmul(probe, MatmulVariant { kernel, ..v }, m, k, n, seed);
    }
    1
}

#[test]
fn matmul_forward_forms_match_cpu() {
    let Some(probe) = probe() else { return };
    let mut vec4_checked = 0;
    for (i, &(m, k, n)) in SHAPES.iter().enumerate() {
        for epilogue in [Epilogue::None, Epilogue::Bias, Epilogue::BiasRelu] {
            let v = MatmulVariant::new(false, false, epilogue, BatchDim::M);
            vec4_checked += check_all(&probe, v, m, k, n, i as u64);
        }
    }
    // (4,8,12), (68,36,20) and (128,784,512) take the vec4 kernel too.
    assert_eq!(vec4_checked, 3 * 3);
}

#[test]
fn matmul_transposed_forms_match_cpu() {
    let Some(probe) = probe() else { return };
    let mut vec4_checked = 0;
    for (i, &(m, k, n)) in SHAPES.iter().enumerate() {
        let seed = i as u64;
        // dW = Xᵀ·delta: A transposed, the batch is K.
        let grad_weights = MatmulVariant::new(true, false, Epilogue::None, BatchDim::K);
        vec4_checked += check_all(&probe, grad_weights, m, k, n, 10 + seed);
        // delta·Wᵀ fused with relu's derivative.
        let grad_input = MatmulVariant::new(false, true, Epilogue::ReluMask, BatchDim::M);
        vec4_checked += check_all(&probe, grad_input, m, k, n, 20 + seed);
        let both = MatmulVariant::new(true, true, Epilogue::None, BatchDim::None);
        vec4_checked += check_all(&probe, both, m, k, n, 30 + seed);
    }
    assert_eq!(vec4_checked, 6, "three shapes in each of two vec4 forms");
}

#[test]
fn softmax_cross_entropy_matches_cpu() {
    let Some(probe) = probe() else { return };
    for (rows, classes, seed) in [(1, 1, 1u64), (3, 10, 2), (128, 10, 3), (100, 7, 4)] {
        let mut rng = common::Lcg(seed);
        // Large logits exercise the log-sum-exp's stability.
        let logits: Vec<f32> = rng
            .vec(rows * classes)
            .into_iter()
            .map(|v| 40.0 * v)
            .collect();
        let labels: Vec<u8> = (0..rows)
            .map(|_| (rng.next_u32() % classes as u32) as u8)
            .collect();
        let mut one_hot = Array2::zeros((rows, classes));
        ops::one_hot(&labels, one_hot.view_mut());
        let soft: Vec<f32> = rng
            .vec(rows * classes)
            .into_iter()
            .map(|v| v.abs())
            .collect();
        let logits_view = ArrayView2::from_shape((rows, classes), &logits).unwrap();
        let cases: [(ops::Targets, ProbeTargets); 3] = [
            (ops::Targets::Sparse(&labels), ProbeTargets::Sparse(&labels)),
            (
                ops::Targets::Dense(one_hot.view()),
                ProbeTargets::Dense(one_hot.as_slice().unwrap()),
            ),
            (
                ops::Targets::Dense(ArrayView2::from_shape((rows, classes), &soft).unwrap()),
                ProbeTargets::Dense(&soft),
            ),
        ];
        for (cpu_targets, gpu_targets) in cases {
            let mut grad = Array2::zeros((rows, classes));
            let (loss, correct) = ops::softmax_cross_entropy(
                logits_view,
                cpu_targets,
                1.0 / rows as f32,
                grad.view_mut(),
            );
            let (gpu_grad, gpu_loss, gpu_correct) = probe
                .softmax_xent(&logits, classes, gpu_targets, true)
                .unwrap();
            assert_eq!(gpu_correct as u64, correct, "{rows}x{classes}");
            assert!(
                (gpu_loss as f64 - loss).abs() <= 1e-5 * loss.abs() + 1e-4,
                "loss {gpu_loss} vs {loss}"
            );
            for (g, c) in gpu_grad.iter().zip(grad.iter()) {
                assert!(
                    (g - c).abs() <= 1e-6,
                    "gradient {g} vs {c} ({rows}x{classes})"
                );
            }
        }
    }
}

#[test]
fn column_sums_match_cpu() {
    let Some(probe) = probe() else { return };
    for (rows, cols) in [(1, 1), (3, 7), (128, 512), (127, 10), (1000, 65)] {
        let values = common::Lcg(rows as u64).vec(rows * cols);
        let view = ArrayView2::from_shape((rows, cols), &values).unwrap();
        let mut expected = ndarray::Array1::zeros(cols);
        ops::column_sums(view, expected.view_mut());
        let gpu = probe
            .run(&probe.prepare_column_sums(&values, rows, cols))
            .unwrap();
        for (g, e) in gpu.iter().zip(expected.iter()) {
            assert!(
                (g - e).abs() <= 1e-6 * rows as f32,
                "{rows}x{cols}: {g} vs {e}"
            );
        }
    }
}

#[test]
fn optimizer_updates_match_cpu() {
    let Some(probe) = probe() else { return };
    let specs = [
        OptimizerSpec::keras_default(OptimizerKind::Sgd),
        OptimizerSpec {
            momentum: 0.9,
            ..OptimizerSpec::keras_default(OptimizerKind::Sgd)
        },
        OptimizerSpec {
            momentum: 0.9,
            nesterov: true,
            ..OptimizerSpec::keras_default(OptimizerKind::Sgd)
        },
        OptimizerSpec::keras_default(OptimizerKind::Rmsprop),
        OptimizerSpec::keras_default(OptimizerKind::Adam),
    ];
    for spec in specs {
        let mut rng = common::Lcg(5);
        // Not a multiple of 4: the probe pads to the kernel's vec4s.
        let n = 1001;
        let mut cpu_params = rng.vec(n);
        let mut gpu_params = cpu_params.clone();
        let mut cpu_state = vec![vec![0.0; n]; spec.state_slots()];
        let mut gpu_state = cpu_state.clone();
        // Several steps, so state and Adam's bias correction matter.
        for t in 1..=5 {
            let grads = rng.vec(n);
            spec.apply(t, &mut cpu_params, &grads, &mut cpu_state);
            gpu_params = probe
                .optimizer_step(&spec, t, &gpu_params, &grads, &mut gpu_state)
                .unwrap();
        }
        for (g, c) in gpu_params.iter().zip(&cpu_params) {
            assert!(
                (g - c).abs() <= 1e-6 + 1e-5 * c.abs(),
                "{:?}: {g} vs {c}",
                spec.kind
            );
        }
        for (gs, cs) in gpu_state.iter().zip(&cpu_state) {
            for (g, c) in gs.iter().zip(cs) {
                assert!(
                    (g - c).abs() <= 1e-6 + 1e-5 * c.abs(),
                    "{:?} state: {g} vs {c}",
                    spec.kind
                );
            }
        }
    }
}

#[test]
fn gather_matches_cpu() {
    let Some(probe) = probe() else { return };
    let data = common::synthetic(50, 13, 9);
    let indices = [49u32, 0, 7, 7, 31];
    // Buffers of 8 rows for a step of 5: the transposed copy is zero-padded.
    let gpu_mnist::backend::gpu::probe::GatheredBatch { x, targets, xt } =
        probe.gather(&data, &indices, 8, true).unwrap();
    let mut expected = Array2::zeros((8, 13));
    ops::gather_batch(&data, &indices, expected.slice_mut(ndarray::s![..5, ..]));
    assert_eq!(
        x,
        expected
            .slice(ndarray::s![..5, ..])
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        "pixels / 255, bit for bit"
    );
    assert_eq!(xt, expected.t().iter().copied().collect::<Vec<_>>());
    let labels: Vec<u8> = indices.iter().map(|&i| data.labels[i as usize]).collect();
    let mut one_hot = Array2::zeros((indices.len(), 10));
    ops::one_hot(&labels, one_hot.view_mut());
    assert_eq!(targets, one_hot.into_raw_vec_and_offset().0);
}

/// Both backends from the same parameters on the first `n` MNIST images.
fn backends(
    n: usize,
    spec: &ModelSpec,
    optimizer: OptimizerSpec,
    loss: LossKind,
) -> Option<(CpuBackend, GpuBackend, Arc<Mnist>)> {
    let ctx = common::gpu()?;
    let full = common::mnist()?;
    let data = Arc::new(Mnist {
        train: full.train.truncated(n),
        test: full.test.truncated(1000),
    });
    let params = Params::init(spec, Init::Glorot, 42);
    let settings = TrainSettings {
        batch_size: 128,
        optimizer,
        loss,
        report_every: 10,
    };
    let cpu = CpuBackend::new(data.clone(), params.clone(), settings);
    let gpu = GpuBackend::new(ctx, data.clone(), params, settings).unwrap();
    Some((cpu, gpu, data))
}

#[test]
fn one_training_step_matches_cpu_for_every_optimizer() {
    let spec = ModelSpec::mnist_mlp();
    for (kind, loss) in [
        (OptimizerKind::Rmsprop, LossKind::SparseCategorical),
        (OptimizerKind::Adam, LossKind::Categorical),
        (OptimizerKind::Sgd, LossKind::SparseCategorical),
    ] {
        let Some((mut cpu, mut gpu, _)) =
            backends(128, &spec, OptimizerSpec::keras_default(kind), loss)
        else {
            return;
        };
        let order: Vec<u32> = (0..128).rev().collect();
        let c = cpu.train_epoch(&order, &mut |_| {}).unwrap();
        let g = gpu.train_epoch(&order, &mut |_| {}).unwrap();
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
    let spec = ModelSpec {
        inputs: 784,
        hidden: vec![64, 32],
        classes: 10,
    };
    let optimizer = OptimizerSpec::keras_default(OptimizerKind::Rmsprop);
    let Some((mut cpu, mut gpu, _)) = backends(6350, &spec, optimizer, LossKind::SparseCategorical)
    else {
        return;
    };
    let order: Vec<u32> = (0..6350).collect();
    let mut reports = Vec::new();
    let c = cpu.train_epoch(&order, &mut |_| {}).unwrap();
    let g = gpu
        .train_epoch(&order, &mut |m| reports.push(m.steps))
        .unwrap();
    assert_eq!((g.samples, g.steps), (6350, 50));
    assert_eq!(reports, vec![10, 20, 30, 40, 50]);
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
}

#[test]
fn same_seed_gives_identical_gpu_runs() {
    let spec = ModelSpec::mnist_mlp();
    let optimizer = OptimizerSpec::keras_default(OptimizerKind::Rmsprop);
    let run = || {
        let (_, mut gpu, _) = backends(1000, &spec, optimizer, LossKind::SparseCategorical)?;
        let order: Vec<u32> = (0..1000).map(|i| (i * 7) % 1000).collect();
        let m = gpu.train_epoch(&order, &mut |_| {}).unwrap();
        Some((m.loss_sum, m.correct, gpu.params().unwrap()))
    };
    let Some(first) = run() else { return };
    let second = run().unwrap();
    assert_eq!(first.0.to_bits(), second.0.to_bits());
    assert_eq!(first.1, second.1);
    assert_eq!(first.2, second.2, "parameters are bit-identical");
}
