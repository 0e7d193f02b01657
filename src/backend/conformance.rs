//! One suite of op tests, written once and run on every device: the CPU and
//! each wgpu adapter the machine offers (Vulkan, GL). Each test builds a small
//! plan, runs it through the device's executor (the code that trains), and
//! compares the results with a plain f64 computation. On wgpu, every matmul
//! kernel that fits a shape is checked, not only the fastest.
//!
//! Tolerances: f32 sums of K products differ from the f64 sum by about
//! sqrt(K) * 6e-8 * sum|a*b| in practice (the worst case is K * 6e-8); we
//! allow 1e-5 * sum|a*b| + 1e-6, about 3x the practical bound at K = 785.

use std::ops::ControlFlow;
use std::sync::Arc;

use super::cpu::CpuExecutor;
use super::gpu::kernels::matmul::{self, MatmulKernel};
use super::gpu::{self, GpuContext, GpuExecutor};
use super::{Executor, RunSettings, Split};
use crate::data::{pixel, Splits};
use crate::optim::{OptimizerKind, OptimizerSpec};
use crate::plan::{BatchDim, Buf, Epilogue, Matmul, MatmulForm, Op, Plan, Program};
use crate::test_util::{synthetic, Lcg};

/// Set (as CI does) to make a missing Vulkan adapter fail the tests.
#[cfg(not(target_arch = "wasm32"))]
const REQUIRE_ADAPTER_ENV: &str = "GPU_MNIST_REQUIRE_ADAPTER";
/// Set to make a missing GL adapter fail the tests.
#[cfg(not(target_arch = "wasm32"))]
const REQUIRE_GL_ENV: &str = "GPU_MNIST_REQUIRE_GL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// Each build constructs its own kinds.
#[allow(dead_code)]
enum TestDevice {
    Cpu,
    Vulkan,
    Gl,
    WebGpu,
}

#[cfg(not(target_arch = "wasm32"))]
fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0")
}

#[cfg(not(target_arch = "wasm32"))]
impl TestDevice {
    /// A context per adapter of this kind (`None` stands for the CPU); none,
    /// with a notice, when the machine has no such adapter and it is not
    /// required.
    fn contexts(self) -> Vec<Option<GpuContext>> {
        let (backends, require) = match self {
            TestDevice::Cpu => return vec![None],
            TestDevice::Vulkan => (wgpu::Backends::VULKAN, REQUIRE_ADAPTER_ENV),
            TestDevice::Gl => (wgpu::Backends::GL, REQUIRE_GL_ENV),
            TestDevice::WebGpu => unreachable!("a browser's device"),
        };
        let count = pollster::block_on(super::gpu::context::adapters(backends)).len();
        if count == 0 {
            assert!(
                !required(require),
                "{require} is set but there is no {self:?} adapter"
            );
            eprintln!("notice: skipping on {self:?}: no adapter");
        }
        (0..count)
            .map(|i| Some(GpuContext::open(backends, Some(i)).expect("the adapter opens")))
            .collect()
    }
}

/// What a test runs a plan with.
struct Setup<'a> {
    plan: Plan,
    data: Splits,
    optimizer: Option<OptimizerSpec>,
    params: Vec<Vec<f32>>,
    /// Matmul kernel to force on wgpu (each candidate in turn).
    kernel: Option<MatmulKernel>,
    ctx: &'a Option<GpuContext>,
}

impl Setup<'_> {
    fn open(self) -> Box<dyn Executor> {
        let settings = RunSettings {
            optimizer: self.optimizer,
            report_every: 1,
            seed: 0,
        };
        let params: Vec<&[f32]> = self.params.iter().map(Vec::as_slice).collect();
        match self.ctx {
            None => Box::new(CpuExecutor::new(
                self.plan,
                Arc::new(self.data),
                settings,
                &params,
            )),
            Some(ctx) => {
                let mut exec =
                    GpuExecutor::new(ctx.clone(), self.plan, &self.data, settings, &params)
                        .expect("the executor opens");
                if let Some(kernel) = self.kernel {
                    exec.force_matmul_kernel(kernel);
                }
                Box::new(exec)
            }
        }
    }
}

/// The matmul kernels to check on this device for `form` at this shape.
fn kernels(ctx: &Option<GpuContext>, mm: &Matmul) -> Vec<Option<MatmulKernel>> {
    match ctx {
        None => vec![None],
        Some(ctx) => matmul::candidates(mm.form, mm.m, mm.k, mm.n, ctx.matmul_caps())
            .into_iter()
            .map(Some)
            .collect(),
    }
}

/// A data set of `len` examples (only its length matters to most tests).
fn examples(len: usize, features: usize, classes: usize) -> Splits {
    let set = synthetic(len, features, classes, 0.5, 3);
    Splits::new(set.clone(), set)
}

/// Runs the training program once over the first `rows` training examples.
async fn run_rows(exec: &mut dyn Executor, rows: usize) -> super::Metrics {
    let order: Vec<u32> = (0..rows as u32).collect();
    exec.run(Program::Train, Split::Train, Some(&order), &mut |_| {
        ControlFlow::Continue(())
    })
    .await
    .expect("the step runs")
}

/// f64 reference of `op(a)·op(b)` with the epilogue, and `sum |a*b|` per output.
fn reference(
    mm: &Matmul,
    m: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    extra: &[f32],
) -> (Vec<f64>, Vec<f64>) {
    let n = mm.n;
    let at = |i: usize, kk: usize| if mm.form.transpose_a { a[kk * m + i] } else { a[i * k + kk] } as f64;
    let bt = |kk: usize, j: usize| if mm.form.transpose_b { b[j * k + kk] } else { b[kk * n + j] } as f64;
    let mut c = vec![0.0; m * n];
    let mut magnitude = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut mag) = (0.0, 0.0);
            for kk in 0..k {
                s += at(i, kk) * bt(kk, j);
                mag += (at(i, kk) * bt(kk, j)).abs();
            }
            c[i * n + j] = match mm.form.epilogue {
                Epilogue::None => s,
                Epilogue::Bias => s + extra[j] as f64,
                Epilogue::BiasRelu => (s + extra[j] as f64).max(0.0),
                Epilogue::ReluMask => {
                    if extra[i * n + j] > 0.0 {
                        s
                    } else {
                        0.0
                    }
                }
            };
            magnitude[i * n + j] = mag + if mm.extra.is_some() { 1.0 } else { 0.0 };
        }
    }
    (c, magnitude)
}

fn assert_close(got: &[f32], want: &[f64], magnitude: &[f64], what: &str) {
    for (i, ((&g, &w), &mag)) in got.iter().zip(want).zip(magnitude).enumerate() {
        let tol = 1e-5 * mag + 1e-6;
        assert!(
            (g as f64 - w).abs() <= tol,
            "{what} at {i}: {g} vs {w} (tolerance {tol})"
        );
    }
}

const SHAPES: [(usize, usize, usize); 10] = [
    (1, 1, 1),
    (1, 130, 70),
    (3, 5, 7),
    (4, 8, 12),
    (33, 17, 65),
    (68, 36, 20),
    (127, 785, 513),
    (128, 784, 512),
    (128, 512, 10),
    // Deep enough for the CPU to split the depth across threads.
    (9, 1501, 10),
];

/// Every matmul form of a dense layer at every shape, with partial batches:
/// the batch buffers hold `full` rows, the step `rows`.
async fn matmul_forms(device: TestDevice, ctx: &Option<GpuContext>) {
    let form = |ta, tb, epilogue, batch_dim| MatmulForm {
        transpose_a: ta,
        transpose_b: tb,
        epilogue,
        batch_dim,
    };
    let forms = [
        form(false, false, Epilogue::None, BatchDim::M),
        form(false, false, Epilogue::Bias, BatchDim::M),
        form(false, false, Epilogue::BiasRelu, BatchDim::M),
        // dW = Xᵀ·delta: A transposed, the batch is K.
        form(true, false, Epilogue::None, BatchDim::K),
        // delta·Wᵀ fused with relu's derivative.
        form(false, true, Epilogue::ReluMask, BatchDim::M),
        // The first layer's dW on wgpu: the transposed batch times delta.
        form(false, false, Epilogue::None, BatchDim::None),
        form(true, true, Epilogue::None, BatchDim::None),
    ];
    let mut checked = std::collections::BTreeSet::new();
    let mut count = 0;
    for (s, &(m, k, n)) in SHAPES.iter().enumerate() {
        for (f, &form) in forms.iter().enumerate() {
            // The full batch is one row more than the step, when the batch is a dimension.
            let (full_m, full_k) = match form.batch_dim {
                BatchDim::M => (m + 1, k),
                BatchDim::K => (m, k + 1),
                BatchDim::None => (m, k),
            };
            let rows = match form.batch_dim {
                BatchDim::M => m,
                BatchDim::K => k,
                BatchDim::None => 1,
            };
            let mm = Matmul {
                a: Buf::Param(0),
                b: Buf::Param(1),
                c: Buf::Grad(3),
                extra: (form.epilogue != Epilogue::None).then_some(Buf::Param(2)),
                form,
                m: full_m,
                k: full_k,
                n,
                positions: 1,
            };
            let mut rng = Lcg((10 * s + f) as u64);
            let a = rng.vec(full_m * full_k);
            let b = rng.vec(full_k * n);
            let extra: Vec<f32> = match form.epilogue {
                // A relu output: zero in about half the places.
                Epilogue::ReluMask => rng
                    .vec(full_m * n)
                    .into_iter()
                    .map(|v| v.max(0.0))
                    .collect(),
                _ => rng.vec(n),
            };
            // The step reads the leading rows of the stored operands.
            let (want, magnitude) = reference(&mm, m, k, &a, &b, &extra);
            for kernel in kernels(ctx, &mm) {
                let setup = Setup {
                    plan: Plan::bare(
                        full_m.max(full_k),
                        1,
                        2,
                        vec![(full_m, full_k), (full_k, n), (1, extra.len()), (full_m, n)],
                        vec![Op::Matmul(mm)],
                    ),
                    data: examples(rows, 1, 2),
                    optimizer: None,
                    params: vec![a.clone(), b.clone(), extra.clone(), vec![0.0; full_m * n]],
                    kernel,
                    ctx,
                };
                let mut exec = setup.open();
                run_rows(exec.as_mut(), rows).await;
                let got = exec.read(Buf::Grad(3)).await.unwrap();
                let what = format!("{device:?} {kernel:?} {form:?} {m}x{k}x{n}");
                assert_close(&got[..m * n], &want, &magnitude, &what);
                // A partial step writes only its rows.
                assert!(
                    got[m * n..].iter().all(|&v| v == 0.0),
                    "{what}: rows past the step"
                );
                checked.insert(kernel.map(MatmulKernel::name));
                count += 1;
            }
        }
    }
    match ctx {
        Some(ctx) => {
            let caps = ctx.matmul_caps();
            let mut every = matmul::candidates(forms[0], 128, 784, 512, caps);
            every.extend(matmul::candidates(forms[0], 128, 512, 10, caps));
            for kernel in every {
                assert!(
                    checked.contains(&Some(kernel.name())),
                    "{kernel:?} unchecked"
                );
            }
        }
        None => assert_eq!(count, SHAPES.len() * forms.len()),
    }
}

/// The first layer as trained: the gathered batch times W, and Xᵀ·delta (the
/// CPU's sparse kernels on MNIST-like data, its dense ones otherwise; on wgpu
/// the transposed batch the gather writes).
async fn first_layer_from_the_batch(device: TestDevice, ctx: &Option<GpuContext>) {
    let (batch, features, units, rows) = (16, 36, 64, 13);
    for zero_fraction in [0.8, 0.1] {
        let data = synthetic(40, features, 3, zero_fraction, 5);
        let order: Vec<u32> = (0..rows as u32).map(|i| (i * 7) % 40).collect();
        let x: Vec<f32> = order
            .iter()
            .flat_map(|&i| data.image(i as usize).iter().map(|&p| pixel(p)))
            .collect();
        let mut rng = Lcg(9);
        let (w, bias, delta) = (
            rng.vec(features * units),
            rng.vec(units),
            rng.vec(batch * units),
        );
        let forward = Matmul {
            a: Buf::Input,
            b: Buf::Param(0),
            c: Buf::Grad(2),
            extra: Some(Buf::Param(1)),
            form: MatmulForm {
                transpose_a: false,
                transpose_b: false,
                epilogue: Epilogue::BiasRelu,
                batch_dim: BatchDim::M,
            },
            m: batch,
            k: features,
            n: units,
            positions: 1,
        };
        let grad_weights = Matmul {
            a: Buf::Input,
            b: Buf::Param(3),
            c: Buf::Grad(4),
            extra: None,
            form: MatmulForm {
                transpose_a: true,
                transpose_b: false,
                epilogue: Epilogue::None,
                batch_dim: BatchDim::K,
            },
            m: features,
            k: batch,
            n: units,
            positions: 1,
        };
        let setup = Setup {
            plan: Plan::bare(
                batch,
                features,
                3,
                vec![
                    (features, units),
                    (1, units),
                    (batch, units),
                    (batch, units),
                    (features, units),
                ],
                vec![
                    Op::Gather { one_hot: false },
                    Op::Matmul(forward),
                    Op::Matmul(grad_weights),
                ],
            ),
            data: Splits::new(data.clone(), data),
            optimizer: None,
            params: vec![
                w.clone(),
                bias.clone(),
                vec![0.0; batch * units],
                delta.clone(),
                vec![0.0; features * units],
            ],
            kernel: None,
            ctx,
        };
        let mut exec = setup.open();
        // A full step first fills every row of the batch buffers, so the
        // partial step below must ignore (or zero) the rows past its own.
        let full: Vec<u32> = (20..20 + batch as u32).collect();
        for order in [&full, &order] {
            exec.run(Program::Train, Split::Train, Some(order), &mut |_| {
                ControlFlow::Continue(())
            })
            .await
            .unwrap();
        }
        let (want, magnitude) = reference(&forward, rows, features, &x, &w, &bias);
        let got = exec.read(Buf::Grad(2)).await.unwrap();
        assert_close(
            &got[..rows * units],
            &want,
            &magnitude,
            &format!("{device:?} forward, {zero_fraction} zeros"),
        );
        // Xᵀ·delta over the step's rows only: the rest of delta must not count.
        let (want, magnitude) = reference(&grad_weights, features, rows, &x, &delta, &[]);
        let got = exec.read(Buf::Grad(4)).await.unwrap();
        assert_close(
            &got,
            &want,
            &magnitude,
            &format!("{device:?} Xᵀ·delta, {zero_fraction} zeros"),
        );
    }
}

/// Softmax + cross-entropy with labels, one-hot and soft targets, and the
/// softmax of predictions.
async fn softmax_cross_entropy(device: TestDevice, ctx: &Option<GpuContext>) {
    for (rows, classes, seed) in [(1, 1, 1u64), (3, 10, 2), (128, 10, 3), (100, 7, 4)] {
        let mut rng = Lcg(seed);
        // Large logits exercise the log-sum-exp's stability.
        let logits: Vec<f32> = rng
            .vec(rows * classes)
            .into_iter()
            .map(|v| 40.0 * v)
            .collect();
        let data = synthetic(rows, 1, classes, 0.0, seed);
        let labels = data.labels.clone();
        let one_hot: Vec<f32> = (0..rows * classes)
            .map(|i| {
                if labels[i / classes] as usize == i % classes {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let soft: Vec<f32> = rng.vec(rows * classes).into_iter().map(f32::abs).collect();
        for targets in [None, Some(one_hot), Some(soft)] {
            let op = Op::SoftmaxXent {
                logits: Buf::Param(0),
                grad: Some(Buf::Grad(1)),
                dense_targets: targets.is_some(),
            };
            let mut plan = Plan::bare(
                rows,
                1,
                classes,
                vec![(rows, classes), (rows, classes)],
                vec![op],
            );
            // Evaluation: the loss alone, no gradient.
            plan.eval = vec![Op::SoftmaxXent {
                logits: Buf::Param(0),
                grad: None,
                dense_targets: targets.is_some(),
            }];
            plan.predict = vec![Op::Softmax {
                logits: Buf::Param(0),
            }];
            let setup = Setup {
                plan,
                data: Splits::new(data.clone(), data.clone()),
                optimizer: None,
                params: vec![logits.clone(), vec![0.0; rows * classes]],
                kernel: None,
                ctx,
            };
            let mut exec = setup.open();
            if let Some(t) = &targets {
                exec.write(Buf::Targets, t).unwrap();
            }
            let metrics = run_rows(exec.as_mut(), rows).await;
            let grad = exec.read(Buf::Grad(1)).await.unwrap();
            let eval = exec
                .run(Program::Eval, Split::Train, None, &mut |_| {
                    ControlFlow::Continue(())
                })
                .await
                .unwrap();
            let probs = exec.predict(&vec![0; rows]).await.unwrap();
            let (mut loss, mut correct) = (0.0f64, 0);
            for r in 0..rows {
                let z: Vec<f64> = logits[r * classes..(r + 1) * classes]
                    .iter()
                    .map(|&v| v as f64)
                    .collect();
                let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let lse = max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
                let argmax =
                    |v: &[f64]| (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b });
                let t: Vec<f64> = match &targets {
                    None => (0..classes)
                        .map(|c| if c == labels[r] as usize { 1.0 } else { 0.0 })
                        .collect(),
                    Some(t) => t[r * classes..(r + 1) * classes]
                        .iter()
                        .map(|&v| v as f64)
                        .collect(),
                };
                let t_sum: f64 = t.iter().sum();
                correct += (argmax(&z) == argmax(&t)) as u64;
                for c in 0..classes {
                    let p = (z[c] - lse).exp();
                    loss += t[c] * (lse - z[c]);
                    let want = (p * t_sum - t[c]) / rows as f64;
                    let i = r * classes + c;
                    // exp(z - lse) in f32: the difference of two numbers up to
                    // ~45 carries ~45 * 6e-8 = 3e-6 of relative error into p.
                    let tol = 1e-5 * p * t_sum.max(1.0) + 1e-6;
                    assert!(
                        (grad[i] as f64 - want).abs() <= tol,
                        "{device:?} gradient {} vs {want}",
                        grad[i]
                    );
                    assert!(
                        (probs[i] as f64 - p).abs() <= tol,
                        "{device:?} probability {} vs {p}",
                        probs[i]
                    );
                }
            }
            assert_eq!(metrics.correct, correct, "{device:?} {rows}x{classes}");
            assert!(
                (metrics.loss_sum - loss).abs() <= 1e-5 * loss.abs() + 1e-4,
                "{device:?} loss {} vs {loss}",
                metrics.loss_sum
            );
            assert_eq!((eval.correct, eval.samples), (metrics.correct, rows as u64));
            assert!(
                (eval.loss_sum - metrics.loss_sum).abs() <= 1e-6 * loss.abs() + 1e-6,
                "{device:?} evaluation loss {} vs {}",
                eval.loss_sum,
                metrics.loss_sum
            );
        }
    }
}

async fn column_sums(device: TestDevice, ctx: &Option<GpuContext>) {
    // The CPU splits columns across threads from 65,536 values: 1100 x 65
    // splits in blocks that are not whole multiples of 16.
    for (rows, cols) in [(1, 1), (3, 7), (128, 512), (127, 10), (1100, 65)] {
        let values = Lcg(rows as u64).vec((rows + 1) * cols);
        // On wgpu, the product ones · values in every kernel that fits it.
        let kernels: Vec<Option<MatmulKernel>> = match ctx {
            None => vec![None],
            Some(ctx) => {
                let p = gpu::column_sums_product(rows + 1, cols);
                matmul::candidates(p.form, p.m, p.k, p.n, ctx.matmul_caps())
                    .into_iter()
                    .map(Some)
                    .collect()
            }
        };
        for kernel in kernels {
            let setup = Setup {
                plan: Plan::bare(
                    rows + 1,
                    1,
                    2,
                    vec![(rows + 1, cols), (1, cols)],
                    vec![Op::ColumnSums {
                        src: Buf::Param(0),
                        dst: Buf::Grad(1),
                        cols,
                        positions: 1,
                    }],
                ),
                data: examples(rows, 1, 2),
                optimizer: None,
                params: vec![values.clone(), vec![0.0; cols]],
                kernel,
                ctx,
            };
            let mut exec = setup.open();
            run_rows(exec.as_mut(), rows).await;
            let got = exec.read(Buf::Grad(1)).await.unwrap();
            for (c, &g) in got.iter().enumerate() {
                let want: f64 = (0..rows).map(|r| values[r * cols + c] as f64).sum();
                assert!(
                    (g as f64 - want).abs() <= 1e-6 * rows as f64,
                    "{device:?} {kernel:?} {rows}x{cols}: {g} vs {want}"
                );
            }
        }
    }
}

/// Five updates of two tensors (sizes not multiples of 4, so the wgpu layout
/// pads them) against the host formulas of `optim.rs`.
async fn optimizer_updates(device: TestDevice, ctx: &Option<GpuContext>) {
    let sgd = OptimizerSpec::keras_default(OptimizerKind::Sgd);
    let specs = [
        sgd,
        OptimizerSpec {
            momentum: 0.9,
            ..sgd
        },
        OptimizerSpec {
            momentum: 0.9,
            nesterov: true,
            ..sgd
        },
        OptimizerSpec::keras_default(OptimizerKind::Rmsprop),
        OptimizerSpec {
            momentum: 0.5,
            ..OptimizerSpec::keras_default(OptimizerKind::Rmsprop)
        },
        OptimizerSpec::keras_default(OptimizerKind::Adam),
    ];
    // 35,007 floats: more than one of the CPU's parallel update chunks.
    let tensors = vec![(7, 5001), (1, 5)];
    for spec in specs {
        let mut rng = Lcg(5);
        let mut host: Vec<Vec<f32>> = tensors.iter().map(|&(r, c)| rng.vec(r * c)).collect();
        let mut host_state: Vec<Vec<Vec<f32>>> = host
            .iter()
            .map(|t| vec![vec![0.0; t.len()]; spec.state_slots()])
            .collect();
        let mut plan = Plan::bare(1, 1, 2, tensors.clone(), vec![Op::Update]);
        plan.state_slots = spec.state_slots();
        let setup = Setup {
            plan,
            data: examples(1, 1, 2),
            optimizer: Some(spec),
            params: host.clone(),
            kernel: None,
            ctx,
        };
        let mut exec = setup.open();
        // Several steps, so state and Adam's bias correction matter.
        for t in 1..=5 {
            for (i, param) in host.iter_mut().enumerate() {
                let grad = rng.vec(param.len());
                exec.write(Buf::Grad(i), &grad).unwrap();
                spec.apply(t, param, &grad, &mut host_state[i]);
            }
            run_rows(exec.as_mut(), 1).await;
        }
        assert_eq!(exec.counters().steps, 5);
        for (i, param) in host.iter().enumerate() {
            let close = |g: f32, c: f32| (g - c).abs() <= 1e-6 + 1e-5 * c.abs();
            let got = exec.read(Buf::Param(i)).await.unwrap();
            assert!(
                got.iter().zip(param).all(|(&g, &c)| close(g, c)),
                "{device:?} {:?} tensor {i}",
                spec.kind
            );
            for (slot, want) in host_state[i].iter().enumerate() {
                let got = exec.read(Buf::State { slot, tensor: i }).await.unwrap();
                assert!(
                    got.iter().zip(want).all(|(&g, &c)| close(g, c)),
                    "{device:?} {:?} state",
                    spec.kind
                );
            }
        }
    }
}

/// The batch, bit for bit (pixel values), and one-hot targets wider than the
/// images, from a step of 5 rows in buffers of 8.
async fn gather(device: TestDevice, ctx: &Option<GpuContext>) {
    let (features, classes) = (5, 9);
    let data = synthetic(50, features, classes, 0.3, 9);
    let order = [49u32, 0, 7, 7, 31];
    let setup = Setup {
        plan: Plan::bare(
            8,
            features,
            classes,
            vec![(1, 1)],
            vec![Op::Gather { one_hot: true }],
        ),
        data: Splits::new(data.clone(), data.clone()),
        optimizer: None,
        params: vec![vec![0.0]],
        kernel: None,
        ctx,
    };
    let mut exec = setup.open();
    exec.run(Program::Train, Split::Train, Some(&order), &mut |_| {
        ControlFlow::Continue(())
    })
    .await
    .unwrap();
    let x = exec.read(Buf::Input).await.unwrap();
    let want: Vec<f32> = order
        .iter()
        .flat_map(|&i| data.image(i as usize).iter().map(|&p| pixel(p)))
        .collect();
    assert_eq!(
        &x[..want.len()],
        &want[..],
        "{device:?}: pixel values, bit for bit"
    );
    let targets = exec.read(Buf::Targets).await.unwrap();
    for (r, &i) in order.iter().enumerate() {
        let label = data.labels[i as usize] as usize;
        let row: Vec<f32> = (0..classes)
            .map(|c| if c == label { 1.0 } else { 0.0 })
            .collect();
        assert_eq!(
            &targets[r * classes..(r + 1) * classes],
            &row[..],
            "{device:?} row {r}"
        );
    }
}

/// Runs the one-op program `op` over `rows` examples on `device`: parameter
/// tensor 0 holds `input` (rows x its width), tensor 1 `second` (the
/// max-pool gradient's incoming gradient, or a bias or mask), and the result
/// is read from gradient buffer 2 (rows x `out_width`).
async fn run_op(
    ctx: &Option<GpuContext>,
    op: Op,
    rows: usize,
    (input, second, out_width): (&[f32], &[f32], usize),
) -> Vec<f32> {
    let setup = Setup {
        plan: Plan::bare(
            rows,
            1,
            2,
            vec![
                (rows, input.len() / rows),
                (1, second.len()),
                (rows, out_width),
            ],
            vec![op],
        ),
        data: examples(rows, 1, 2),
        optimizer: None,
        params: vec![
            input.to_vec(),
            second.to_vec(),
            vec![f32::NAN; rows * out_width],
        ],
        kernel: None,
        ctx,
    };
    let mut exec = setup.open();
    run_rows(exec.as_mut(), rows).await;
    exec.read(Buf::Grad(2)).await.unwrap()
}

/// Values on a coarse grid, so that max-pool windows hold ties.
fn coarse(len: usize, seed: u64) -> Vec<f32> {
    Lcg(seed)
        .vec(len)
        .into_iter()
        .map(|v| (v * 2.0).round() / 2.0)
        .collect()
}

/// im2col, col2im, max-pool and its gradient (with and without the relu
/// derivative) against f64 references written from the definitions: valid
/// and same padding (an even kernel pads unevenly), a pool that drops a row
/// and a column, ties in the pool's windows.
async fn image_ops(device: TestDevice, ctx: &Option<GpuContext>) {
    use crate::model::Image;
    use crate::plan::ConvGeometry;
    let rows = 3;
    let image = Image {
        height: 5,
        width: 6,
        channels: 3,
    };
    for (kernel, pad, out) in [(3, 0, (3, 4)), (3, 1, (5, 6)), (2, 0, (5, 6))] {
        let conv = ConvGeometry {
            input: image,
            kernel,
            pad_top: pad,
            pad_left: pad,
            out_height: out.0,
            out_width: out.1,
        };
        let (p, patch) = (conv.positions(), conv.patch());
        let x = coarse(rows * image.len(), 1);
        // The input value that window position `j` of output `pos` reads.
        let source = |pos: usize, j: usize| -> Option<usize> {
            let (ky, kx, c) = (j / (kernel * 3), (j / 3) % kernel, j % 3);
            let iy = (pos / out.1 + ky).checked_sub(pad)?;
            let ix = (pos % out.1 + kx).checked_sub(pad)?;
            (iy < image.height && ix < image.width).then_some((iy * image.width + ix) * 3 + c)
        };
        let got = run_op(
            ctx,
            Op::Im2col {
                src: Buf::Param(0),
                dst: Buf::Grad(2),
                conv,
            },
            rows,
            (&x, &[0.0], p * patch),
        )
        .await;
        for r in 0..rows {
            for pos in 0..p {
                for j in 0..patch {
                    let want = source(pos, j).map_or(0.0, |at| x[r * image.len() + at]);
                    assert_eq!(
                        got[(r * p + pos) * patch + j],
                        want,
                        "{device:?} im2col k{kernel} p{pad}"
                    );
                }
            }
        }
        let windows = Lcg(2).vec(rows * p * patch);
        let got = run_op(
            ctx,
            Op::Col2im {
                src: Buf::Param(0),
                dst: Buf::Grad(2),
                conv,
            },
            rows,
            (&windows, &[0.0], image.len()),
        )
        .await;
        let mut want = vec![0.0f64; rows * image.len()];
        for r in 0..rows {
            for pos in 0..p {
                for j in 0..patch {
                    if let Some(at) = source(pos, j) {
                        want[r * image.len() + at] += windows[(r * p + pos) * patch + j] as f64;
                    }
                }
            }
        }
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (*g as f64 - w).abs() <= 1e-6,
                "{device:?} col2im k{kernel} p{pad}: {g} vs {w}"
            );
        }
    }

    // Windows with rows and columns left over, then windows tiling an
    // input of more channels than the CPU handles at once, with NaNs.
    for (height, width, channels) in [(5, 7, 2), (4, 4, 18)] {
        max_pool_ops(
            device,
            ctx,
            rows,
            Image {
                height,
                width,
                channels,
            },
        )
        .await;
    }
}

/// Max-pool (2x2) and its gradient over `input` against the first maximum
/// of each window.
async fn max_pool_ops(
    device: TestDevice,
    ctx: &Option<GpuContext>,
    rows: usize,
    input: crate::model::Image,
) {
    use crate::plan::PoolGeometry;
    let (h, w, c) = (input.height, input.width, input.channels);
    let pool = PoolGeometry {
        input,
        size: 2,
        out_height: h / 2,
        out_width: w / 2,
    };
    let outputs = pool.out_height * pool.out_width;
    let mut x = coarse(rows * input.len(), 3);
    if c > 16 {
        // A NaN first in its window (the maximum then, as no value compares
        // greater) and one later in another (never the maximum).
        x[0] = f32::NAN;
        x[(w + 1) * c + 5] = f32::NAN;
    }
    let window = |r: usize, o: usize, ch: usize| -> Vec<usize> {
        let (oy, ox) = (o / pool.out_width, o % pool.out_width);
        (0..4)
            .map(|d| r * input.len() + ((oy * 2 + d / 2) * w + ox * 2 + d % 2) * c + ch)
            .collect()
    };
    let first_max = |at: &[usize]| -> usize {
        at.iter()
            .copied()
            .fold(at[0], |best, i| if x[i] > x[best] { i } else { best })
    };
    let got = run_op(
        ctx,
        Op::MaxPool {
            src: Buf::Param(0),
            dst: Buf::Grad(2),
            pool,
        },
        rows,
        (&x, &[0.0], pool.output_len()),
    )
    .await;
    for r in 0..rows {
        for o in 0..outputs {
            for ch in 0..c {
                let want = x[first_max(&window(r, o, ch))];
                let got = got[(r * outputs + o) * c + ch];
                assert!(
                    got == want || (got.is_nan() && want.is_nan()),
                    "{device:?} max_pool {input:?}: {got} vs {want}"
                );
            }
        }
    }
    // The gradient reads the pool's input (tensor 0) and its incoming
    // gradient (tensor 1).
    let grad = Lcg(4).vec(rows * pool.output_len());
    for relu in [false, true] {
        let got = run_op(
            ctx,
            Op::MaxPoolGrad {
                grad: Buf::Param(1),
                src: Buf::Param(0),
                dst: Buf::Grad(2),
                pool,
                relu,
            },
            rows,
            (&x, &grad, input.len()),
        )
        .await;
        let mut want = vec![0.0f32; rows * input.len()];
        for r in 0..rows {
            for o in 0..outputs {
                for ch in 0..c {
                    let best = first_max(&window(r, o, ch));
                    if !relu || x[best] > 0.0 {
                        want[best] = grad[(r * outputs + o) * c + ch];
                    }
                }
            }
        }
        assert_eq!(got, want, "{device:?} max_pool_grad {input:?} relu {relu}");
    }
}

/// The element-wise ops: a bias over several positions per example, relu,
/// its derivative, and dropout against the host's mask.
async fn elementwise_ops(device: TestDevice, ctx: &Option<GpuContext>) {
    use crate::plan::DropoutMask;
    let (rows, positions, cols) = (3, 4, 5);
    let width = positions * cols;
    let x = Lcg(5).vec(rows * width);
    let bias = Lcg(6).vec(cols);
    // AddBias works in place, on a batch buffer (parameters share one
    // buffer on wgpu, which a kernel cannot both read and write).
    let mut plan = Plan::bare(
        rows,
        1,
        2,
        vec![(1, cols)],
        vec![Op::AddBias {
            buf: Buf::Output(0),
            bias: Buf::Param(0),
            cols,
            positions,
        }],
    );
    plan.widths = vec![(Buf::Output(0), width)];
    let setup = Setup {
        plan,
        data: examples(rows, 1, 2),
        optimizer: None,
        params: vec![bias.clone()],
        kernel: None,
        ctx,
    };
    let mut exec = setup.open();
    exec.write(Buf::Output(0), &x).unwrap();
    run_rows(exec.as_mut(), rows).await;
    let got = exec.read(Buf::Output(0)).await.unwrap();
    for (i, (g, v)) in got.iter().zip(&x).enumerate() {
        assert_eq!(*g, v + bias[i % cols], "{device:?} add_bias {i}");
    }
    let relu = run_op(
        ctx,
        Op::Relu {
            src: Buf::Param(0),
            dst: Buf::Grad(2),
            width,
        },
        rows,
        (&x, &[0.0], width),
    )
    .await;
    assert_eq!(
        relu,
        x.iter().map(|v| v.max(0.0)).collect::<Vec<_>>(),
        "{device:?} relu"
    );
    let mut mask = x.clone();
    mask.iter_mut().step_by(3).for_each(|m| *m = 0.0);
    let grad = Lcg(7).vec(rows * width);
    let got = run_op(
        ctx,
        Op::ReluGrad {
            grad: Buf::Param(0),
            mask: Buf::Param(1),
            dst: Buf::Grad(2),
            width,
        },
        rows,
        (&grad, &mask, width),
    )
    .await;
    let want: Vec<f32> = grad
        .iter()
        .zip(&mask)
        .map(|(g, m)| if *m > 0.0 { *g } else { 0.0 })
        .collect();
    assert_eq!(got, want, "{device:?} relu_grad");
    let dropout = DropoutMask {
        rate: 0.4,
        stream: 2,
        width,
    };
    let got = run_op(
        ctx,
        Op::Dropout {
            src: Buf::Param(0),
            dst: Buf::Grad(2),
            mask: dropout,
        },
        rows,
        (&x, &[0.0], width),
    )
    .await;
    let kept = got.iter().filter(|v| **v != 0.0).count();
    assert!(
        (20..50).contains(&kept),
        "{device:?} dropout kept {kept} of 60"
    );
    for (i, (g, v)) in got.iter().zip(&x).enumerate() {
        // Step 0 of a run seeded 0 (what `Setup::open` runs).
        let want = if dropout.keeps(0, 0, i) {
            v * dropout.scale()
        } else {
            0.0
        };
        assert_eq!(*g, want, "{device:?} dropout {i}");
    }
}

/// Every adapter of `device`'s kind, with what blocks on its futures.
#[cfg(not(target_arch = "wasm32"))]
fn drivers(device: TestDevice) -> Vec<(Option<GpuContext>, super::host::Driver)> {
    device
        .contexts()
        .into_iter()
        .map(|ctx| {
            let driver = match &ctx {
                None => super::host::Driver::Cpu,
                // Waits for everything submitted (no executor's own waits).
                Some(ctx) => super::host::Driver::Gpu {
                    device: ctx.device.clone(),
                    waits: Default::default(),
                },
            };
            (ctx, driver)
        })
        .collect()
}

/// Runs suite function `$test` on every adapter of `$device`'s kind.
#[cfg(not(target_arch = "wasm32"))]
macro_rules! on_every {
    ($device:expr, $test:path) => {
        for (ctx, driver) in super::drivers($device) {
            driver
                .block_on($test($device, &ctx))
                .expect("the device runs");
        }
    };
}

/// Instantiates each suite function once per kind of device: natively the
/// CPU, Vulkan and GL; in a browser (`web/test.sh`) the wasm CPU and WebGPU,
/// whose kernels Dawn's Tint compiles (a third WGSL compiler beside naga
/// and the Vulkan drivers').
macro_rules! device_tests {
    ($($name:ident),* $(,)?) => {
        #[cfg(not(target_arch = "wasm32"))]
        mod cpu {
            $(#[test] fn $name() { on_every!(super::TestDevice::Cpu, super::$name) })*
        }
        #[cfg(not(target_arch = "wasm32"))]
        mod vulkan {
            $(#[test] fn $name() { on_every!(super::TestDevice::Vulkan, super::$name) })*
        }
        #[cfg(not(target_arch = "wasm32"))]
        mod gl {
            $(#[test] fn $name() { on_every!(super::TestDevice::Gl, super::$name) })*
        }
        #[cfg(target_arch = "wasm32")]
        mod wasm_cpu {
            wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);
            $(
                #[wasm_bindgen_test::wasm_bindgen_test]
                async fn $name() {
                    super::$name(super::TestDevice::Cpu, &None).await
                }
            )*
        }
        #[cfg(target_arch = "wasm32")]
        mod webgpu {
            $(
                #[wasm_bindgen_test::wasm_bindgen_test]
                async fn $name() {
                    let ctx = super::GpuContext::open_async(wgpu::Backends::BROWSER_WEBGPU, None)
                        .await
                        .expect("the browser offers a WebGPU adapter");
                    super::$name(super::TestDevice::WebGpu, &Some(ctx)).await
                }
            )*
        }
    };
}

device_tests!(
    matmul_forms,
    first_layer_from_the_batch,
    softmax_cross_entropy,
    column_sums,
    optimizer_updates,
    gather,
    image_ops,
    elementwise_ops,
);

/// Every kernel's WGSL, in every variant, parses and validates with naga (no
/// adapter needed).
#[test]
fn every_shader_validates() {
    for (name, source) in super::gpu::kernels::all_sources() {
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&source)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
}
