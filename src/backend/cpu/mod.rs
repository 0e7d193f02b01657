//! The reference device: runs the plan's ops in order on ndarray, into buffers
//! allocated once. The first layer skips zero pixels (`sparse.rs`) whenever
//! every op that reads the batch can.

pub(crate) mod image_ops;
pub(crate) mod ops;
pub(crate) mod sparse;

// Blocking, native: the browser runs the conformance suite only.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod gradcheck;
mod pool_routes;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use web_time::Instant;

use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

#[cfg(not(target_arch = "wasm32"))]
use super::host::Driver;
use super::host::{yield_now, LocalFuture};
use super::{
    check_order, Counters, DeviceError, Executor, KernelTime, Metrics, Profile, RunSettings, Split,
};
use crate::data::{Dataset, Splits};
use crate::optim::OptimizerSpec;
use crate::plan::{Buf, Epilogue, Matmul, Op, Plan, Program};
use ops::Targets;

/// Parameters per parallel optimizer task: large enough to amortise the task.
const UPDATE_CHUNK: usize = 1 << 15;

pub(crate) struct CpuExecutor {
    plan: Plan,
    data: Arc<Splits>,
    settings: RunSettings,
    /// Every buffer of the plan, parameters included, sized once.
    bufs: HashMap<Buf, Vec<f32>>,
    /// The step's labels, in row order (the loss reads them by row).
    labels: Vec<u8>,
    /// The batch's nonzero pixels, and whether this step's first-layer ops
    /// use them instead of [`Buf::Input`].
    sparse: sparse::SparseBatch,
    sparse_input: bool,
    /// Whether every op that reads the batch has a sparse form.
    sparse_capable: bool,
    /// What the max-pool gradients compute besides their own result (by
    /// their output), and their scratch.
    pool_routes: HashMap<Buf, pool_routes::PoolRoute>,
    pool_partials: Vec<f32>,
    counters: Counters,
}

/// Whether the CPU has a sparse form of `op` when it reads the batch: only
/// the first dense layer's products do; any other op that reads
/// [`Buf::Input`] needs the dense batch.
fn sparse_form(op: &Op) -> bool {
    match op {
        Op::Matmul(mm) if mm.a == Buf::Input => {
            mm.positions == 1
                && !mm.form.transpose_b
                && if mm.form.transpose_a {
                    mm.form.epilogue == Epilogue::None
                } else {
                    mm.form.epilogue != Epilogue::ReluMask
                }
        }
        Op::Matmul(_)
        | Op::AddBias { .. }
        | Op::Relu { .. }
        | Op::ReluGrad { .. }
        | Op::Im2col { .. }
        | Op::Col2im { .. }
        | Op::MaxPool { .. }
        | Op::MaxPoolGrad { .. }
        | Op::Dropout { .. }
        | Op::SoftmaxXent { .. }
        | Op::Softmax { .. }
        | Op::ColumnSums { .. } => !op.reads().contains(&Buf::Input),
        Op::Gather { .. } | Op::Update => true,
    }
}

impl CpuExecutor {
    pub fn new(plan: Plan, data: Arc<Splits>, settings: RunSettings, params: &[&[f32]]) -> Self {
        let mut bufs: HashMap<Buf, Vec<f32>> = plan
            .batch_buffers()
            .into_iter()
            .map(|b| (b, vec![0.0; plan.len(b)]))
            .collect();
        for (t, values) in params.iter().enumerate() {
            let len = plan.tensor_len(t);
            bufs.insert(Buf::Param(t), values.to_vec());
            bufs.insert(Buf::Grad(t), vec![0.0; len]);
            for slot in 0..plan.state_slots {
                bufs.insert(Buf::State { slot, tensor: t }, vec![0.0; len]);
            }
        }
        let sparse_capable = [&plan.train, &plan.eval, &plan.predict]
            .iter()
            .all(|ops| ops.iter().all(sparse_form));
        let pool_routes = pool_routes::routes(&plan.train);
        let widest = plan.train.iter().filter_map(|op| match op {
            Op::MaxPoolGrad { dst, pool, .. } => pool_routes
                .get(dst)
                .map(|route| pool.input.channels * (1 + route.kernel.map_or(0, |k| k.rows))),
            _ => None,
        });
        let pool_partials = vec![0.0; plan.batch * widest.max().unwrap_or(0)];
        Self {
            labels: Vec::with_capacity(plan.batch),
            plan,
            data,
            settings,
            bufs,
            sparse: sparse::SparseBatch::default(),
            sparse_input: false,
            sparse_capable,
            pool_routes,
            pool_partials,
            counters: Counters::default(),
        }
    }

    /// Whether a max-pool gradient computes `buf` (so the op writing it is
    /// skipped).
    fn routed(&self, buf: Buf) -> bool {
        self.pool_routes.values().any(|r| r.computes(buf))
    }

    fn take(&mut self, buf: Buf) -> Vec<f32> {
        self.bufs
            .remove(&buf)
            .expect("the plan allocates every buffer")
    }

    fn get(&self, buf: Buf) -> &[f32] {
        &self.bufs[&buf]
    }

    /// Runs `ops` once over the examples `indices` of `source`; returns the
    /// loss sum and correct count of the step (zero without a loss op).
    fn step(&mut self, ops: &[Op], source: &Dataset, indices: &[u32]) -> (f64, u64) {
        self.labels.clear();
        self.labels
            .extend(indices.iter().map(|&i| source.labels[i as usize]));
        let mut metrics = (0.0, 0);
        for op in ops {
            if let Some(m) = self.run_op(op, source, indices) {
                metrics = m;
            }
        }
        metrics
    }

    /// Runs one op of a step over the examples `indices`; returns the loss
    /// sum and correct count when the op is the loss.
    fn run_op(&mut self, op: &Op, source: &Dataset, indices: &[u32]) -> Option<(f64, u64)> {
        let rows = indices.len();
        let mut metrics = None;
        match *op {
            Op::Gather { one_hot } => self.gather(source, indices, one_hot),
            // Else the pool gradient above it computed it (the first layer's
            // kernel gradient).
            Op::Matmul(mm) if !self.routed(mm.c) => self.matmul(&mm, rows),
            Op::Matmul(_) => {}
            Op::SoftmaxXent {
                logits,
                grad,
                dense_targets,
            } => metrics = Some(self.softmax_xent(logits, grad, dense_targets, rows)),
            Op::Softmax { logits } => {
                let mut probs = self.take(Buf::Probs);
                let classes = self.plan.classes;
                ops::softmax(
                    view(self.get(logits), rows, classes),
                    view_mut(&mut probs, rows, classes),
                );
                self.bufs.insert(Buf::Probs, probs);
            }
            Op::ColumnSums {
                src,
                dst,
                cols,
                positions,
            } => {
                // Else the pool gradient that wrote `src` added them up.
                if !self.routed(dst) {
                    let mut sums = self.take(dst);
                    ops::column_sums(&self.get(src)[..rows * positions * cols], cols, &mut sums);
                    self.bufs.insert(dst, sums);
                }
            }
            Op::AddBias {
                buf,
                bias,
                cols,
                positions,
            } => {
                let mut values = self.take(buf);
                ops::add_bias(
                    self.get(bias),
                    false,
                    view_mut(&mut values, rows * positions, cols),
                );
                self.bufs.insert(buf, values);
            }
            Op::Relu { src, dst, width } => self.unary(src, dst, rows * width, |src, dst| {
                ops::relu(src, dst);
            }),
            Op::ReluGrad {
                grad,
                mask,
                dst,
                width,
            } => {
                let mut out = self.take(dst);
                let n = rows * width;
                ops::relu_grad(&self.get(grad)[..n], &self.get(mask)[..n], &mut out[..n]);
                self.bufs.insert(dst, out);
            }
            Op::Im2col { src, dst, conv } => self.unary(src, dst, 0, |src, dst| {
                image_ops::im2col(src, dst, &conv, rows);
            }),
            Op::Col2im { src, dst, conv } => self.unary(src, dst, 0, |src, dst| {
                image_ops::col2im(src, dst, &conv, rows);
            }),
            Op::MaxPool { src, dst, pool } => self.unary(src, dst, 0, |src, dst| {
                image_ops::max_pool(src, dst, &pool, rows);
            }),
            Op::MaxPoolGrad {
                grad,
                src,
                dst,
                pool,
                relu,
            } => {
                let route = self.pool_routes.get(&dst).copied();
                let mut out = self.take(dst);
                let mut bias = route.map(|r| self.take(r.bias));
                let mut kernel = route.and_then(|r| r.kernel).map(|k| (k, self.take(k.grad)));
                let positions = pool.input.height * pool.input.width;
                let write_result = kernel.is_none();
                let sums = bias.as_mut().map(|bias| image_ops::PoolGradSums {
                    partials: &mut self.pool_partials,
                    bias,
                    kernel: kernel.as_mut().map(|(k, out)| image_ops::KernelGrad {
                        patches: &self.bufs[&k.patches][..rows * positions * k.rows],
                        rows: k.rows,
                        out,
                    }),
                    write_result,
                });
                let (grad, src) = (self.bufs[&grad].as_slice(), self.bufs[&src].as_slice());
                image_ops::max_pool_grad(grad, src, &mut out, &pool, relu, rows, sums);
                self.bufs.insert(dst, out);
                if let Some(route) = route {
                    self.bufs
                        .insert(route.bias, bias.expect("taken with the route"));
                }
                if let Some((k, grad)) = kernel {
                    self.bufs.insert(k.grad, grad);
                }
            }
            Op::Dropout { src, dst, mask } => {
                let (seed, step) = (self.settings.seed, self.counters.steps);
                self.unary(src, dst, rows * mask.width, |src, dst| {
                    ops::dropout(src, dst, &mask, seed, step);
                })
            }
            Op::Update => self.update(),
        }
        metrics
    }

    /// Runs `f` over `src` and `dst` (their first `len` values, or whole
    /// when `len` is 0).
    fn unary(&mut self, src: Buf, dst: Buf, len: usize, f: impl FnOnce(&[f32], &mut [f32])) {
        let mut out = self.take(dst);
        let input = self.get(src);
        if len == 0 {
            f(input, &mut out);
        } else {
            f(&input[..len], &mut out[..len]);
        }
        self.bufs.insert(dst, out);
    }

    fn gather(&mut self, source: &Dataset, indices: &[u32], one_hot: bool) {
        let rows = indices.len();
        self.sparse_input = self.sparse_capable && {
            self.sparse.gather(source, indices);
            self.sparse.density() <= sparse::MAX_DENSITY
        };
        if !self.sparse_input {
            let mut input = self.take(Buf::Input);
            ops::gather_batch(source, indices, view_mut(&mut input, rows, source.features));
            self.bufs.insert(Buf::Input, input);
        }
        if one_hot {
            let mut targets = self.take(Buf::Targets);
            ops::one_hot(
                &self.labels,
                view_mut(&mut targets, rows, self.plan.classes),
            );
            self.bufs.insert(Buf::Targets, targets);
        }
    }

    fn matmul(&mut self, mm: &Matmul, rows: usize) {
        let (m, k) = mm.step_mk(rows);
        let n = mm.n;
        let mut c = self.take(mm.c);
        // Out of `self` for the product, as `b` borrows `self`'s buffers.
        let mut batch = std::mem::take(&mut self.sparse);
        let out = view_mut(&mut c, m, n);
        let b = if mm.form.transpose_b {
            view(self.get(mm.b), n, k).reversed_axes()
        } else {
            view(self.get(mm.b), k, n)
        };
        let extra = mm.extra.map(|e| self.get(e));
        let relu = mm.form.epilogue == Epilogue::BiasRelu;
        let bias = match mm.form.epilogue {
            Epilogue::Bias | Epilogue::BiasRelu => extra,
            Epilogue::None | Epilogue::ReluMask => None,
        };
        if mm.a == Buf::Input && self.sparse_input {
            if mm.form.transpose_a {
                sparse::grad_weights(&mut batch, b, out);
            } else {
                sparse::forward(&mut batch, b, bias, relu, out);
            }
        } else {
            let a = if mm.form.transpose_a {
                view(self.get(mm.a), k, m).reversed_axes()
            } else {
                view(self.get(mm.a), m, k)
            };
            match mm.form.epilogue {
                Epilogue::None => ops::matmul(a, b, out),
                Epilogue::Bias | Epilogue::BiasRelu => {
                    ops::dense_forward(a, b, bias.expect("a bias operand"), relu, out)
                }
                Epilogue::ReluMask => {
                    ops::matmul_relu_mask(a, b, out, view(extra.expect("a relu mask"), m, n));
                }
            }
        }
        self.sparse = batch;
        self.bufs.insert(mm.c, c);
    }

    fn softmax_xent(
        &mut self,
        logits: Buf,
        grad: Option<Buf>,
        dense_targets: bool,
        rows: usize,
    ) -> (f64, u64) {
        let classes = self.plan.classes;
        let mut grad_buf = grad.map(|g| (g, self.take(g)));
        let targets = if dense_targets {
            Targets::Dense(view(self.get(Buf::Targets), rows, classes))
        } else {
            Targets::Sparse(&self.labels)
        };
        let result = ops::softmax_cross_entropy(
            view(self.get(logits), rows, classes),
            targets,
            1.0 / rows as f32,
            grad_buf.as_mut().map(|(_, g)| view_mut(g, rows, classes)),
        );
        if let Some((g, values)) = grad_buf {
            self.bufs.insert(g, values);
        }
        result
    }

    fn parameters_finite(&self) -> bool {
        (0..self.plan.tensors.len()).all(|t| self.get(Buf::Param(t)).iter().all(|v| v.is_finite()))
    }

    fn update(&mut self) {
        let optimizer = self
            .settings
            .optimizer
            .expect("a training plan has an optimizer");
        self.counters.steps += 1;
        let t = self.counters.steps;
        for tensor in 0..self.plan.tensors.len() {
            let mut param = self.take(Buf::Param(tensor));
            let mut state: Vec<Vec<f32>> = (0..self.plan.state_slots)
                .map(|slot| self.take(Buf::State { slot, tensor }))
                .collect();
            update_parallel(
                &optimizer,
                t,
                &mut param,
                self.get(Buf::Grad(tensor)),
                &mut state,
            );
            self.bufs.insert(Buf::Param(tensor), param);
            for (slot, s) in state.into_iter().enumerate() {
                self.bufs.insert(Buf::State { slot, tensor }, s);
            }
        }
    }
}

/// One optimizer update, element-wise, so chunks run in parallel.
fn update_parallel(
    optimizer: &OptimizerSpec,
    t: u64,
    param: &mut [f32],
    grad: &[f32],
    state: &mut [Vec<f32>],
) {
    let chunks = param
        .par_chunks_mut(UPDATE_CHUNK)
        .zip(grad.par_chunks(UPDATE_CHUNK));
    match state {
        [] => chunks.for_each(|(p, g)| optimizer.apply(t, p, g, &mut [] as &mut [&mut [f32]])),
        [a] => chunks
            .zip(a.par_chunks_mut(UPDATE_CHUNK))
            .for_each(|((p, g), a)| optimizer.apply(t, p, g, &mut [a])),
        [a, b] => chunks
            .zip(a.par_chunks_mut(UPDATE_CHUNK))
            .zip(b.par_chunks_mut(UPDATE_CHUNK))
            .for_each(|(((p, g), a), b)| optimizer.apply(t, p, g, &mut [a, b])),
        more => unreachable!("no optimizer keeps {} state vectors", more.len()),
    }
}

/// The first `rows x cols` floats of `values` as a matrix.
fn view(values: &[f32], rows: usize, cols: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((rows, cols), &values[..rows * cols]).expect("buffer holds the shape")
}

fn view_mut(values: &mut [f32], rows: usize, cols: usize) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, cols), &mut values[..rows * cols])
        .expect("buffer holds the shape")
}

impl CpuExecutor {
    /// [`Executor::run`]: the steps on this thread, the browser's event loop
    /// let in after each report.
    async fn run_steps(
        &mut self,
        program: Program,
        split: Split,
        order: Option<&[u32]>,
        report: &mut dyn FnMut(&Metrics) -> ControlFlow<()>,
    ) -> Result<Metrics, DeviceError> {
        let data = self.data.clone();
        let source = split.in_data(&data)?;
        let all: Vec<u32>;
        let order = match order {
            Some(order) => {
                check_order(order, source.len)?;
                order
            }
            None => {
                all = (0..source.len as u32).collect();
                &all
            }
        };
        let ops = self.plan.ops(program).to_vec();
        let updates = ops.contains(&Op::Update);
        let window = self.settings.report_every.max(1);
        let mut metrics = Metrics::default();
        let steps = order.len().div_ceil(self.plan.batch);
        for batch in order.chunks(self.plan.batch) {
            let (loss_sum, correct) = self.step(&ops, source, batch);
            metrics.add_step(batch.len(), loss_sum, correct);
            if (metrics.steps as usize).is_multiple_of(window) || metrics.steps as usize == steps {
                // As the GPU's optimizer kernel does: a parameter that is no
                // longer finite makes the loss NaN, though a relu may hide it.
                if updates && !self.parameters_finite() {
                    metrics.loss_sum = f64::NAN;
                }
                if report(&metrics).is_break() {
                    break;
                }
                yield_now().await;
            }
        }
        Ok(metrics)
    }

    /// [`Executor::predict`], at once.
    fn predict_now(&mut self, images: &[u8]) -> Result<Vec<f32>, DeviceError> {
        let features = self.plan.features;
        let rows = images.len() / features;
        let source = Dataset::new(images.to_vec(), vec![0; rows], features, self.plan.classes)
            .map_err(|e| DeviceError::Invalid(e.to_string()))?;
        let ops = self.plan.predict.clone();
        let classes = self.plan.classes;
        let mut probs = Vec::with_capacity(rows * classes);
        let all: Vec<u32> = (0..rows as u32).collect();
        for batch in all.chunks(self.plan.batch) {
            self.step(&ops, &source, batch);
            probs.extend_from_slice(&self.get(Buf::Probs)[..batch.len() * classes]);
        }
        Ok(probs)
    }

    /// [`Executor::profile_step`], at once.
    fn profile_now(&mut self) -> Result<Option<Profile>, DeviceError> {
        // Real training steps on the first batches of the training split:
        // one step's times are too short to read on a busy host.
        const STEPS: usize = 10;
        let data = self.data.clone();
        let source = &data.train;
        let ops = self.plan.train.clone();
        let mut ms = vec![0.0; ops.len()];
        let batch = self.plan.batch.min(source.len);
        for step in 0..STEPS {
            let first = (step * batch) % (source.len - batch + 1);
            let indices: Vec<u32> = (first as u32..(first + batch) as u32).collect();
            self.labels.clear();
            self.labels
                .extend(indices.iter().map(|&i| source.labels[i as usize]));
            for (op, total) in ops.iter().zip(&mut ms) {
                let start = Instant::now();
                self.run_op(op, source, &indices);
                *total += start.elapsed().as_secs_f64() * 1e3 / STEPS as f64;
            }
        }
        let kernels = ops
            .iter()
            .zip(ms)
            .map(|(op, ms)| KernelTime {
                label: match op {
                    Op::Matmul(mm) => {
                        let (m, k) = mm.step_mk(batch);
                        format!("matmul {m}x{k}x{} {:?}", mm.n, mm.form.epilogue)
                    }
                    _ => op.name().into(),
                },
                ms,
            })
            .collect();
        Ok(Some(Profile {
            method: "host timing, mean of 10 training steps",
            kernels,
        }))
    }
}

impl Executor for CpuExecutor {
    fn describe(&self) -> String {
        format!(
            "cpu (ndarray, {} threads)",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        )
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn driver(&self) -> Driver {
        Driver::Cpu
    }

    fn run<'a>(
        &'a mut self,
        program: Program,
        split: Split,
        order: Option<&'a [u32]>,
        report: &'a mut dyn FnMut(&Metrics) -> ControlFlow<()>,
    ) -> LocalFuture<'a, Result<Metrics, DeviceError>> {
        Box::pin(self.run_steps(program, split, order, report))
    }

    fn predict<'a>(
        &'a mut self,
        images: &'a [u8],
    ) -> LocalFuture<'a, Result<Vec<f32>, DeviceError>> {
        Box::pin(std::future::ready(self.predict_now(images)))
    }

    fn read(&mut self, buf: Buf) -> LocalFuture<'_, Result<Vec<f32>, DeviceError>> {
        Box::pin(std::future::ready(Ok(self.get(buf).to_vec())))
    }

    fn write(&mut self, buf: Buf, values: &[f32]) -> Result<(), DeviceError> {
        let target = self
            .bufs
            .get_mut(&buf)
            .expect("the plan allocates every buffer");
        target[..values.len()].copy_from_slice(values);
        Ok(())
    }

    fn counters(&self) -> Counters {
        self.counters
    }

    fn set_steps(&mut self, steps: u64) {
        self.counters.steps = steps;
    }

    fn profile_step(&mut self) -> LocalFuture<'_, Result<Option<Profile>, DeviceError>> {
        Box::pin(std::future::ready(self.profile_now()))
    }
}
