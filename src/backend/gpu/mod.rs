//! The wgpu device: the plan's ops become kernel launches over device-resident
//! buffers, bound once. The data set is uploaded once as `u8`; per epoch only
//! the example order goes up; metrics come back every `report_every` steps
//! through double-buffered asynchronous reads.
//!
//! The core (`*_async` methods) only awaits; the [`Executor`] impl at the
//! bottom is the native edge that blocks on it.

pub(crate) mod buffers;
mod checks;
pub(crate) mod context;
pub(crate) mod kernels;
mod profile;
pub(crate) mod shader;
pub(crate) mod tune;

use std::collections::HashMap;
use std::ops::ControlFlow;
use wgpu::{Buffer, CommandEncoder, ComputePass};

pub(crate) use context::GpuContext;

#[cfg(not(target_arch = "wasm32"))]
use super::host::Driver;
use super::host::LocalFuture;
use super::{check_order, Counters, DeviceError, Executor, Metrics, Profile, RunSettings, Split};
use crate::data::Splits;
use crate::plan::{BatchDim, Buf, Epilogue, MatmulForm, Op, Plan, Program};
use buffers::{MetricsReadback, Region, StepTable, Waits};
use kernels::elementwise::{ElementwiseBindings, ElementwiseOp, ElementwiseParams};
use kernels::gather::GatherBindings;
use kernels::image::{ImageBindings, ImageOp, ImageParams};
use kernels::matmul::{self, MatmulKernel, MatmulOperands};
use kernels::optimizer::{Hyper, OptimizerBindings, STEPS_BEFORE_OFFSET};
use kernels::softmax_xent::{XentBindings, XentMode};
use kernels::{Kernels, Launch, Shape};
use tune::Product;

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no {requested} GPU adapter found; {}", context::missing_adapter_hint(.requested))]
    NoAdapter { requested: String },
    #[error("there is no adapter {index}; available: {}", .available.join(" | "))]
    AdapterIndex {
        index: usize,
        available: Vec<String>,
    },
    #[error("the adapter refused to open a device: {0}")]
    RequestDevice(String),
    #[error("{what}: {limit} must be at least {needed}, this adapter allows {allowed}")]
    Limit {
        limit: &'static str,
        allowed: u64,
        needed: u64,
        what: String,
    },
    #[error("this adapter does not support {0}")]
    Unsupported(String),
    #[error("the GPU reported an error: {0}")]
    Device(String),
}

/// Where each parameter tensor starts in the one parameter buffer (and in the
/// gradient and optimizer-state buffers of the same layout), in floats;
/// offsets are aligned so each tensor can be bound alone.
#[derive(Debug, Clone)]
pub(crate) struct ParamLayout {
    pub offsets: Vec<u64>,
    pub lens: Vec<u64>,
    pub total: u64,
}

impl ParamLayout {
    pub fn new(lens: impl IntoIterator<Item = usize>, align_bytes: u64) -> Self {
        // At least 4 floats, so the optimizer's vec4s never straddle tensors.
        let align = (align_bytes / 4).max(4);
        let (mut offsets, mut all) = (Vec::new(), Vec::new());
        let mut at = 0u64;
        for len in lens {
            offsets.push(at);
            all.push(len as u64);
            at = (at + len as u64).next_multiple_of(align);
        }
        Self {
            offsets,
            lens: all,
            total: at,
        }
    }

    fn region<'a>(&self, buffer: &'a Buffer, tensor: usize) -> Region<'a> {
        self.slot_region(buffer, 0, tensor)
    }

    /// Tensor `tensor` of slot `slot` in a buffer of slots laid out one
    /// after another (`total` floats each, a multiple of the alignment).
    fn slot_region<'a>(&self, buffer: &'a Buffer, slot: usize, tensor: usize) -> Region<'a> {
        Region {
            buffer,
            offset: 4 * (slot as u64 * self.total + self.offsets[tensor]),
            size: 4 * self.lens[tensor],
        }
    }
}

/// The example source of a step: images, labels, the example order, and the
/// per-step table over them.
struct Source {
    images: Buffer,
    labels: Buffer,
    order: Buffer,
    table: StepTable,
}

/// Which source a program runs over: a split, in the uploaded order or in
/// file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SourceKey {
    split: Split,
    ordered: bool,
}

pub(crate) struct GpuExecutor {
    ctx: GpuContext,
    waits: Waits,
    kernels: Kernels,
    plan: Plan,
    settings: RunSettings,
    layout: ParamLayout,
    params: Buffer,
    grads: Buffer,
    /// The optimizer's state slots, one after another, each in the
    /// parameters' layout (as many as the optimizer keeps).
    state: Buffer,
    hyper: Buffer,
    batch: HashMap<Buf, Buffer>,
    /// The batch transposed (`features x batch`), when the first layer's
    /// weight gradient reads it (see [`Self::transposed_input_kernel`]).
    input_t: Option<Buffer>,
    /// Bound where a kernel's binding is unused (read-only, and writable).
    unused: [Buffer; 2],
    /// A row of ones, as long as the longest column sum (`batch` rows times
    /// positions): column sums are the product `ones · grad`.
    ones: Buffer,
    shape: Buffer,
    loss_sums: Buffer,
    correct_counts: Buffer,
    sources: HashMap<SourceKey, Source>,
    launches: HashMap<(Program, SourceKey), Vec<Launch>>,
    readback: MetricsReadback,
    counters: Counters,
    /// Examples in each split, by `Split as usize` (0 where there is none).
    lens: [usize; 3],
    /// The kernel measured fastest for each product (see `tune/mod.rs`).
    choices: HashMap<Product, MatmulKernel>,
    /// A matmul kernel to use wherever it fits instead of the fastest (the
    /// conformance tests run every candidate through the training wiring).
    #[cfg(test)]
    forced_matmul: Option<MatmulKernel>,
}

/// The first layer's weight gradient `Xᵀ·delta` as a plain product of the
/// transposed batch (which the gather writes, padded with zero rows to the
/// full batch), when a vectorised kernel fits: an NN product over a fixed K
/// runs about twice as fast as the TN form on lavapipe.
fn transposed_form() -> MatmulForm {
    MatmulForm {
        transpose_a: false,
        transpose_b: false,
        epilogue: Epilogue::None,
        batch_dim: BatchDim::None,
    }
}

/// The column sums of a `batch x cols` gradient as the product
/// `ones(1 x batch) · grad`, so that the matmul kernels (split-K among them,
/// for narrow outputs) and their tuning serve it too.
pub(crate) fn column_sums_product(batch: usize, cols: usize) -> Product {
    Product {
        form: MatmulForm {
            transpose_a: false,
            transpose_b: false,
            epilogue: Epilogue::None,
            batch_dim: BatchDim::K,
        },
        m: 1,
        k: batch,
        n: cols,
    }
}

/// The most rows per example any column sum of `plan` adds.
fn max_positions(plan: &Plan) -> usize {
    plan.all_ops()
        .filter_map(|op| match *op {
            Op::ColumnSums { positions, .. } => Some(positions),
            _ => None,
        })
        .max()
        .unwrap_or(1)
}

impl GpuExecutor {
    pub fn new(
        ctx: GpuContext,
        plan: Plan,
        data: &Splits,
        settings: RunSettings,
        params: &[&[f32]],
    ) -> Result<Self, GpuError> {
        checks::check(
            &checks::Offer {
                limits: &ctx.limits,
                compute_shaders: ctx.compute_shaders,
                caps: ctx.matmul_caps(),
            },
            &plan,
            data,
        )?;
        let device = ctx.device.clone();
        let f32_bytes = |n: usize| (4 * n) as u64;
        let layout = ParamLayout::new(
            (0..plan.tensors.len()).map(|t| plan.tensor_len(t)),
            ctx.limits.min_storage_buffer_offset_alignment as u64,
        );
        let kernels = Kernels::new(&device, ctx.matmul_caps());
        let mut counters = Counters::default();

        let mut flat = vec![0.0f32; layout.total as usize];
        for (t, values) in params.iter().enumerate() {
            let at = layout.offsets[t] as usize;
            flat[at..at + values.len()].copy_from_slice(values);
        }
        let params_buf = buffers::storage_with(&device, "params", bytemuck::cast_slice(&flat));
        counters.bytes_to_device += 4 * flat.len() as u64;
        let grads = buffers::storage(&device, "grads", f32_bytes(flat.len()));
        let state = buffers::storage(
            &device,
            "optimizer state",
            f32_bytes(plan.state_slots * flat.len()),
        );
        let hyper = match settings.optimizer {
            Some(spec) => Hyper::new(&spec, layout.total, 0),
            None => Hyper::default(),
        };
        let hyper = kernels.uniform("hyper-parameters", &hyper);
        let batch = plan
            .batch_buffers()
            .into_iter()
            .map(|b| {
                (
                    b,
                    buffers::storage(&device, "batch buffer", f32_bytes(plan.len(b))),
                )
            })
            .collect();
        let shape = kernels.uniform("shape", &Shape::of(&plan));
        let lens = Split::ALL.map(|split| split.of(data).map_or(0, |set| set.len));
        let longest = lens.into_iter().max().unwrap_or(0);
        let max_steps = plan.steps(longest);
        let loss_sums = buffers::storage(&device, "loss sums", f32_bytes(max_steps));
        let correct_counts = buffers::storage(&device, "correct counts", f32_bytes(max_steps));

        let mut sources = HashMap::new();
        let identity: Vec<u32> = (0..longest as u32).collect();
        let identity =
            buffers::storage_with(&device, "identity order", bytemuck::cast_slice(&identity));
        counters.bytes_to_device += identity.size();
        for (split, set) in Split::ALL
            .into_iter()
            .filter_map(|split| Some((split, split.of(data)?)))
        {
            let upload = |label: &str, bytes: &[u8], counters: &mut Counters| {
                let packed = buffers::pack_bytes(bytes);
                counters.bytes_to_device += packed.len() as u64;
                buffers::storage_with(&device, label, &packed)
            };
            let images = upload("images", &set.images, &mut counters);
            let labels = upload("labels", &set.labels, &mut counters);
            for ordered in [false, true] {
                let mut table = StepTable::new(
                    &device,
                    &kernels.ctx.step_layout,
                    ctx.step_stride(),
                    max_steps,
                );
                let order = if ordered {
                    buffers::storage(&device, "order", f32_bytes(set.len))
                } else {
                    table.fill(&ctx.queue, set.len, plan.batch, &mut counters);
                    identity.clone()
                };
                sources.insert(
                    SourceKey { split, ordered },
                    Source {
                        images: images.clone(),
                        labels: labels.clone(),
                        order,
                        table,
                    },
                );
            }
        }
        let input_t = Self::transposed_input_kernel(&plan, &ctx).map(|_| {
            buffers::storage(
                &device,
                "batch transposed",
                f32_bytes(plan.batch * plan.features),
            )
        });
        Ok(Self {
            readback: MetricsReadback::new(&device, max_steps),
            unused: [
                buffers::storage(&device, "unused", 16),
                buffers::storage(&device, "unused", 16),
            ],
            ones: buffers::storage_with(
                &device,
                "ones",
                bytemuck::cast_slice(&vec![1.0f32; plan.batch * max_positions(&plan)]),
            ),
            waits: Waits::default(),
            ctx,
            kernels,
            plan,
            settings,
            layout,
            params: params_buf,
            grads,
            state,
            hyper,
            batch,
            input_t,
            shape,
            loss_sums,
            correct_counts,
            sources,
            launches: HashMap::new(),
            counters,
            lens,
            choices: HashMap::new(),
            #[cfg(test)]
            forced_matmul: None,
        })
    }

    /// Uses `kernel` for every product it can compute.
    #[cfg(test)]
    pub fn force_matmul_kernel(&mut self, kernel: MatmulKernel) {
        self.forced_matmul = Some(kernel);
        self.launches.clear();
    }

    /// The kernel forced on `product`, where one is and it fits.
    #[cfg(test)]
    fn forced_kernel(&self, product: Product) -> Option<MatmulKernel> {
        let Product { form, m, k, n } = product;
        let fits = |kernel: &MatmulKernel| {
            matmul::candidates(form, m, k, n, self.ctx.matmul_caps()).contains(kernel)
        };
        self.forced_matmul.filter(fits)
    }

    /// Kernels are forced only by the conformance tests.
    #[cfg(not(test))]
    fn forced_kernel(&self, _product: Product) -> Option<MatmulKernel> {
        None
    }

    /// The kernel for `product`: forced, or chosen by [`Self::tune`], or
    /// (before tuning) the rule of thumb.
    fn matmul_kernel(&self, product: Product) -> MatmulKernel {
        let Product { form, m, k, n } = product;
        self.forced_kernel(product)
            .or_else(|| self.choices.get(&product).copied())
            .unwrap_or_else(|| matmul::fastest(form, m, k, n, self.ctx.matmul_caps()))
    }

    /// The product `mm` is computed as in `program`: the first layer's `Xᵀ·delta`
    /// reads the transposed batch when there is one.
    fn lowered_product(&self, program: Program, mm: &crate::plan::Matmul) -> Product {
        if program == Program::Train
            && self.input_t.is_some()
            && mm.a == Buf::Input
            && mm.form.transpose_a
        {
            Product {
                form: transposed_form(),
                m: mm.m,
                k: self.plan.batch,
                n: mm.n,
            }
        } else {
            Product {
                form: mm.form,
                m: mm.m,
                k: mm.k,
                n: mm.n,
            }
        }
    }

    /// The product `op` of `program` is computed as, if it is one.
    fn product_of(&self, program: Program, op: &Op) -> Option<Product> {
        match *op {
            Op::Matmul(ref mm) => Some(self.lowered_product(program, mm)),
            Op::ColumnSums {
                cols, positions, ..
            } => Some(column_sums_product(self.plan.batch * positions, cols)),
            _ => None,
        }
    }

    /// Chooses, by measurement on this device (or from the cache), the kernel
    /// of each product `program` computes.
    async fn tune(&mut self, program: Program) -> Result<(), GpuError> {
        let products: Vec<Product> = self
            .plan
            .ops(program)
            .iter()
            .filter_map(|op| self.product_of(program, op))
            .collect();
        for product in products {
            if self.choices.contains_key(&product) || self.forced_kernel(product).is_some() {
                continue;
            }
            let Product { form, m, k, n } = product;
            let candidates = matmul::worth_measuring(
                matmul::candidates(form, m, k, n, self.ctx.matmul_caps()),
                self.ctx.summary.is_software(),
            );
            let kernel =
                tune::choose(&self.ctx, &self.waits, &self.kernels, product, &candidates).await?;
            self.choices.insert(product, kernel);
        }
        Ok(())
    }

    /// The kernel of `Xᵀ·delta` over the transposed batch, when the training
    /// program has that product and a vectorised kernel fits it.
    fn transposed_input_kernel(plan: &Plan, ctx: &GpuContext) -> Option<MatmulKernel> {
        plan.train.iter().find_map(|op| match op {
            Op::Matmul(mm) if mm.a == Buf::Input && mm.form.transpose_a => {
                let kernel =
                    matmul::fastest(transposed_form(), mm.m, plan.batch, mm.n, ctx.matmul_caps());
                (kernel != MatmulKernel::Scalar).then_some(kernel)
            }
            _ => None,
        })
    }

    /// Where `buf` lives.
    fn region(&self, buf: Buf) -> Region<'_> {
        match buf {
            Buf::Param(t) => self.layout.region(&self.params, t),
            Buf::Grad(t) => self.layout.region(&self.grads, t),
            Buf::State { slot, tensor } => self.layout.slot_region(&self.state, slot, tensor),
            other => Region::whole(&self.batch[&other]),
        }
    }

    /// Binds every op of `program` over `source`'s images, labels and order.
    fn lower(&self, program: Program, source: &Source) -> Vec<Launch> {
        let k = &self.kernels;
        let plan = &self.plan;
        let bind = |buf: Buf| self.region(buf).binding();
        let (unused_read, unused_write) = (&self.unused[0], &self.unused[1]);
        let transposed = program == Program::Train && self.input_t.is_some();
        plan.ops(program)
            .iter()
            .map(|op| match *op {
                Op::Gather { one_hot } => k.gather(
                    GatherBindings {
                        images: whole(&source.images),
                        labels: whole(&source.labels),
                        order: whole(&source.order),
                        x: bind(Buf::Input),
                        targets: bind(Buf::Targets),
                        xt: whole(self.input_t.as_ref().unwrap_or(unused_write)),
                        shape: whole(&self.shape),
                    },
                    &Shape::of(plan),
                    one_hot,
                    transposed,
                ),
                Op::Matmul(mm) => {
                    let product = self.lowered_product(program, &mm);
                    let a = if product.form == mm.form {
                        bind(mm.a)
                    } else {
                        whole(self.input_t.as_ref().expect("allocated with the kernel"))
                    };
                    k.matmul(
                        self.matmul_kernel(product),
                        product.form,
                        (product.m, product.k, product.n),
                        mm.positions,
                        MatmulOperands {
                            a,
                            b: self.region(mm.b),
                            c: bind(mm.c),
                            extra: mm.extra.map_or_else(|| whole(unused_read), bind),
                        },
                    )
                }
                Op::SoftmaxXent {
                    logits,
                    grad,
                    dense_targets,
                } => k.softmax_xent(
                    self.xent_bindings(
                        source,
                        logits,
                        grad.map_or_else(|| whole(unused_write), bind),
                    ),
                    dense_targets,
                    if grad.is_some() {
                        XentMode::LossAndGradient
                    } else {
                        XentMode::Loss
                    },
                ),
                Op::Softmax { logits } => k.softmax_xent(
                    self.xent_bindings(source, logits, bind(Buf::Probs)),
                    false,
                    XentMode::Probabilities,
                ),
                Op::ColumnSums {
                    src,
                    dst,
                    cols,
                    positions,
                } => {
                    let product = column_sums_product(plan.batch * positions, cols);
                    k.matmul(
                        self.matmul_kernel(product),
                        product.form,
                        (product.m, product.k, product.n),
                        positions,
                        MatmulOperands {
                            a: whole(&self.ones),
                            b: self.region(src),
                            c: bind(dst),
                            extra: whole(unused_read),
                        },
                    )
                }
                Op::AddBias {
                    buf,
                    bias,
                    cols,
                    positions,
                } => self.elementwise(
                    ElementwiseOp::AddBias,
                    (whole(unused_read), bind(bias), bind(buf)),
                    ElementwiseParams::new(positions * cols, cols),
                ),
                Op::Relu { src, dst, width } => self.elementwise(
                    ElementwiseOp::Relu,
                    (bind(src), whole(unused_read), bind(dst)),
                    ElementwiseParams::new(width, 1),
                ),
                Op::ReluGrad {
                    grad,
                    mask,
                    dst,
                    width,
                } => self.elementwise(
                    ElementwiseOp::ReluGrad,
                    (bind(grad), bind(mask), bind(dst)),
                    ElementwiseParams::new(width, 1),
                ),
                Op::Dropout { src, dst, mask } => self.elementwise(
                    ElementwiseOp::Dropout,
                    (bind(src), whole(unused_read), bind(dst)),
                    ElementwiseParams::dropout(&mask, self.settings.seed),
                ),
                Op::Im2col { src, dst, conv } => self.image(
                    ImageOp::Im2col,
                    (src, None, dst),
                    ImageParams::conv(ImageOp::Im2col, &conv),
                ),
                Op::Col2im { src, dst, conv } => self.image(
                    ImageOp::Col2im,
                    (src, None, dst),
                    ImageParams::conv(ImageOp::Col2im, &conv),
                ),
                Op::MaxPool { src, dst, pool } => self.image(
                    ImageOp::MaxPool,
                    (src, None, dst),
                    ImageParams::pool(ImageOp::MaxPool, &pool, false),
                ),
                Op::MaxPoolGrad {
                    grad,
                    src,
                    dst,
                    pool,
                    relu,
                } => self.image(
                    ImageOp::MaxPoolGrad,
                    (src, Some(grad), dst),
                    ImageParams::pool(ImageOp::MaxPoolGrad, &pool, relu),
                ),
                Op::Update => k.optimizer(
                    &self
                        .settings
                        .optimizer
                        .expect("a training plan has an optimizer"),
                    OptimizerBindings {
                        params: whole(&self.params),
                        grads: whole(&self.grads),
                        state: whole(&self.state),
                        loss_sums: whole(&self.loss_sums),
                        hyper: whole(&self.hyper),
                    },
                    self.layout.total,
                    self.ctx.limits.max_compute_workgroups_per_dimension,
                ),
            })
            .collect()
    }

    /// An element-wise launch over `(src, aux, dst)`.
    fn elementwise(
        &self,
        op: ElementwiseOp,
        (src, aux, dst): (
            wgpu::BindingResource<'_>,
            wgpu::BindingResource<'_>,
            wgpu::BindingResource<'_>,
        ),
        params: ElementwiseParams,
    ) -> Launch {
        let width = params.width as usize;
        let params = self.kernels.uniform("elementwise", &params);
        self.kernels.elementwise(
            op,
            ElementwiseBindings {
                src,
                aux,
                dst,
                hyper: whole(&self.hyper),
                params: params.as_entire_binding(),
            },
            width,
            self.plan.batch,
        )
    }

    /// An image launch reading `src` (and `grad`) into `dst`.
    fn image(
        &self,
        op: ImageOp,
        (src, grad, dst): (Buf, Option<Buf>, Buf),
        params: ImageParams,
    ) -> Launch {
        let uniform = self.kernels.uniform("image", &params);
        self.kernels.image(
            op,
            ImageBindings {
                src: self.region(src).binding(),
                grad: grad.map_or_else(|| whole(&self.unused[0]), |g| self.region(g).binding()),
                dst: self.region(dst).binding(),
                params: uniform.as_entire_binding(),
            },
            &params,
            self.plan.batch,
        )
    }

    fn xent_bindings<'a>(
        &'a self,
        source: &'a Source,
        logits: Buf,
        out: wgpu::BindingResource<'a>,
    ) -> XentBindings<'a> {
        XentBindings {
            logits: self.region(logits).binding(),
            out,
            labels: source.labels.as_entire_binding(),
            order: source.order.as_entire_binding(),
            targets: self.region(Buf::Targets).binding(),
            loss_sums: self.loss_sums.as_entire_binding(),
            correct_counts: self.correct_counts.as_entire_binding(),
            shape: self.shape.as_entire_binding(),
        }
    }

    /// The launches of `program` over `key`'s source, bound on first use.
    async fn launches(&mut self, program: Program, key: SourceKey) -> Result<&[Launch], GpuError> {
        if !self.launches.contains_key(&(program, key)) {
            self.tune(program).await?;
            let launches = self.lower(program, &self.sources[&key]);
            self.launches.insert((program, key), launches);
        }
        Ok(&self.launches[&(program, key)])
    }

    /// Runs every step of `key`'s table, `report_every` steps per submit (all
    /// at once when evaluating), reading the metrics of each window back while
    /// the next one runs.
    async fn run_async(
        &mut self,
        program: Program,
        key: SourceKey,
        report: &mut dyn FnMut(&Metrics) -> ControlFlow<()>,
    ) -> Result<Metrics, GpuError> {
        let updates = self.plan.ops(program).contains(&Op::Update);
        let window = self.settings.report_every.max(1);
        self.launches(program, key).await?;
        let launches = &self.launches[&(program, key)];
        let source = &self.sources[&key];
        let (len, steps, batch) = (source.table.len, source.table.steps, self.plan.batch);
        let mut metrics = Metrics::default();
        let mut stop = false;
        let mut absorb = |done: Option<(std::ops::Range<usize>, buffers::StepMetrics)>,
                          metrics: &mut Metrics,
                          stop: &mut bool| {
            if let Some((range, values)) = done {
                for (s, (loss, correct)) in range.zip(values) {
                    metrics.add_step((len - s * batch).min(batch), loss as f64, correct as u64);
                }
                *stop |= report(metrics).is_break();
            }
        };
        for start in (0..steps).step_by(window) {
            if stop {
                break;
            }
            let range = start..(start + window).min(steps);
            let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
            self.counters.dispatches += record_steps(
                &mut encoder,
                launches,
                &source.table.bind_group,
                range.clone().map(|s| source.table.offset(s)),
            );
            self.readback.record_copy(
                &mut encoder,
                &self.loss_sums,
                &self.correct_counts,
                range.clone(),
            );
            let submission = self.ctx.queue.submit([encoder.finish()]);
            self.counters.submits += 1;
            if updates {
                self.counters.steps += range.len() as u64;
            }
            let done = self
                .readback
                .submitted(&self.waits, range, submission, &mut self.counters)
                .await?;
            absorb(done, &mut metrics, &mut stop);
        }
        let done = self
            .readback
            .finish(&self.waits, &mut self.counters)
            .await?;
        absorb(done, &mut metrics, &mut stop);
        Ok(metrics)
    }

    /// Uploads an example order (at most the split's length: the order
    /// buffer holds that many).
    fn upload_order(&mut self, key: SourceKey, order: &[u32]) -> Result<(), DeviceError> {
        let len = self.lens[key.split as usize];
        check_order(order, len)?;
        if order.len() > len {
            return Err(DeviceError::Invalid(format!(
                "an order of {} examples is longer than the split's {len}",
                order.len()
            )));
        }
        let queue = &self.ctx.queue;
        let source = self.sources.get_mut(&key).expect("every source exists");
        queue.write_buffer(&source.order, 0, bytemuck::cast_slice(order));
        self.counters.bytes_to_device += 4 * order.len() as u64;
        source
            .table
            .fill(queue, order.len(), self.plan.batch, &mut self.counters);
        Ok(())
    }

    /// Tells the optimizer kernel how many steps came before the next
    /// submitted one (Adam's bias correction counts from there).
    fn write_step_count(&mut self) {
        self.ctx.queue.write_buffer(
            &self.hyper,
            STEPS_BEFORE_OFFSET,
            bytemuck::bytes_of(&(self.counters.steps as u32)),
        );
        self.counters.bytes_to_device += 4;
    }

    /// Class probabilities of `images`, a batch at a time.
    async fn predict_async(&mut self, images: &[u8]) -> Result<Vec<f32>, GpuError> {
        let device = self.ctx.device.clone();
        let rows = images.len() / self.plan.features;
        let identity: Vec<u32> = (0..rows as u32).collect();
        let mut table = StepTable::new(
            &device,
            &self.kernels.ctx.step_layout,
            self.ctx.step_stride(),
            self.plan.steps(rows),
        );
        table.fill(&self.ctx.queue, rows, self.plan.batch, &mut self.counters);
        let source = Source {
            images: buffers::storage_with(&device, "images", &buffers::pack_bytes(images)),
            labels: buffers::storage(&device, "labels", 4),
            order: buffers::storage_with(&device, "order", bytemuck::cast_slice(&identity)),
            table,
        };
        self.counters.bytes_to_device += 4 * rows as u64 + images.len() as u64;
        self.tune(Program::Predict).await?;
        let launches = self.lower(Program::Predict, &source);
        let classes = self.plan.classes;
        let mut probs = Vec::with_capacity(rows * classes);
        for s in 0..source.table.steps {
            let mut encoder = device.create_command_encoder(&Default::default());
            self.counters.dispatches += record_steps(
                &mut encoder,
                &launches,
                &source.table.bind_group,
                std::iter::once(source.table.offset(s)),
            );
            self.ctx.queue.submit([encoder.finish()]);
            self.counters.submits += 1;
            let step_rows = (rows - s * self.plan.batch).min(self.plan.batch);
            let probs_buffer = self.batch[&Buf::Probs].clone();
            let region = Region {
                size: (4 * step_rows * classes) as u64,
                ..Region::whole(&probs_buffer)
            };
            let bytes = buffers::read(
                &device,
                &self.ctx.queue,
                &self.waits,
                region,
                &mut self.counters,
            )
            .await?;
            probs.extend(buffers::f32s(&bytes));
        }
        Ok(probs)
    }
}

fn whole(buffer: &Buffer) -> wgpu::BindingResource<'_> {
    buffer.as_entire_binding()
}

/// Records `launches` once per step-table offset into `encoder`, in compute
/// passes that an upload (a copy, which cannot happen inside a pass) splits.
/// Returns the number of dispatches recorded.
fn record_steps(
    encoder: &mut CommandEncoder,
    launches: &[Launch],
    steps: &wgpu::BindGroup,
    offsets: impl Iterator<Item = u32>,
) -> u64 {
    let mut count = 0;
    let mut pass: Option<ComputePass<'static>> = None;
    for offset in offsets {
        if let Some(pass) = pass.as_mut() {
            pass.set_bind_group(1, steps, &[offset]);
        }
        for launch in launches {
            if let Some(upload) = &launch.upload {
                drop(pass.take());
                upload
                    .texture
                    .record_copy(encoder, &upload.buffer, upload.offset);
            }
            let pass = pass.get_or_insert_with(|| {
                let mut pass = encoder
                    .begin_compute_pass(&Default::default())
                    .forget_lifetime();
                pass.set_bind_group(1, steps, &[offset]);
                pass
            });
            launch.record(pass);
            count += 1;
        }
    }
    count
}

impl GpuExecutor {
    /// [`Executor::run`].
    async fn run_checked(
        &mut self,
        program: Program,
        split: Split,
        order: Option<&[u32]>,
        report: &mut dyn FnMut(&Metrics) -> ControlFlow<()>,
    ) -> Result<Metrics, DeviceError> {
        let key = SourceKey {
            split,
            ordered: order.is_some(),
        };
        if !self.sources.contains_key(&key) {
            return Err(DeviceError::Invalid(format!(
                "the data set has no {} split",
                split.name()
            )));
        }
        if let Some(order) = order {
            self.upload_order(key, order)?;
        }
        if self.plan.ops(program).contains(&Op::Update) {
            self.write_step_count();
        }
        let done = self.run_async(program, key, report).await;
        // A fault the device reported on its own explains whatever came back.
        self.ctx.faults.check()?;
        Ok(done?)
    }

    /// [`Executor::read`].
    async fn read_buffer(&mut self, buf: Buf) -> Result<Vec<f32>, DeviceError> {
        let region = self.region(buf);
        let buffer = region.buffer.clone();
        let region = Region {
            buffer: &buffer,
            size: 4 * self.plan.len(buf) as u64,
            ..region
        };
        let done = buffers::read(
            &self.ctx.device,
            &self.ctx.queue,
            &self.waits,
            region,
            &mut self.counters,
        )
        .await;
        self.ctx.faults.check()?;
        Ok(buffers::f32s(&done?))
    }

    /// [`Executor::kernel_choices`].
    async fn choices(&mut self) -> Result<Vec<super::KernelChoice>, DeviceError> {
        let mut out: Vec<super::KernelChoice> = Vec::new();
        for program in [Program::Train, Program::Eval, Program::Predict] {
            if program == Program::Train && self.settings.optimizer.is_none() {
                continue;
            }
            self.tune(program).await?;
            for op in self.plan.ops(program) {
                if let Some(product) = self.product_of(program, op) {
                    let choice = tune::recorded(&self.ctx, product).unwrap_or_else(|| {
                        let kernel = self.matmul_kernel(product).name();
                        // A kernel forced by a test: nothing was measured.
                        tune::Choice {
                            product: product.key(),
                            kernel,
                            trials: Vec::new(),
                            host_checked: false,
                        }
                    });
                    if !out.iter().any(|c| c.product == choice.product) {
                        out.push(choice);
                    }
                }
            }
        }
        Ok(out)
    }

    /// [`Executor::profile_step`].
    async fn profile(&mut self) -> Result<Option<Profile>, DeviceError> {
        // The training split in file order: its step table is always filled.
        let key = SourceKey {
            split: Split::Train,
            ordered: false,
        };
        self.tune(Program::Train).await?;
        let launches = self.lower(Program::Train, &self.sources[&key]);
        // The profiled step trains for real: it counts as one.
        self.write_step_count();
        let table = &self.sources[&key].table;
        let profile = profile::time_launches(
            &self.ctx,
            &self.waits,
            &launches,
            &table.bind_group,
            table.offset(0),
        )
        .await?;
        self.counters.steps += 1;
        Ok(Some(profile))
    }
}

impl Executor for GpuExecutor {
    fn describe(&self) -> String {
        let s = &self.ctx.summary;
        // Browsers may keep the adapter's name to themselves.
        let name = if s.name.is_empty() {
            "unnamed adapter"
        } else {
            &s.name
        };
        format!("{name} ({}, {})", s.backend, s.device_type)
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn driver(&self) -> Driver {
        Driver::Gpu {
            device: self.ctx.device.clone(),
            waits: self.waits.clone(),
        }
    }

    fn run<'a>(
        &'a mut self,
        program: Program,
        split: Split,
        order: Option<&'a [u32]>,
        report: &'a mut dyn FnMut(&Metrics) -> ControlFlow<()>,
    ) -> LocalFuture<'a, Result<Metrics, DeviceError>> {
        Box::pin(self.run_checked(program, split, order, report))
    }

    fn predict<'a>(
        &'a mut self,
        images: &'a [u8],
    ) -> LocalFuture<'a, Result<Vec<f32>, DeviceError>> {
        Box::pin(async move {
            let done = self.predict_async(images).await;
            self.ctx.faults.check()?;
            Ok(done?)
        })
    }

    fn read(&mut self, buf: Buf) -> LocalFuture<'_, Result<Vec<f32>, DeviceError>> {
        Box::pin(self.read_buffer(buf))
    }

    fn write(&mut self, buf: Buf, values: &[f32]) -> Result<(), DeviceError> {
        let region = self.region(buf);
        self.ctx
            .queue
            .write_buffer(region.buffer, region.offset, bytemuck::cast_slice(values));
        self.counters.bytes_to_device += 4 * values.len() as u64;
        Ok(())
    }

    fn counters(&self) -> Counters {
        self.counters
    }

    fn set_steps(&mut self, steps: u64) {
        self.counters.steps = steps;
    }

    fn kernel_choices(&mut self) -> LocalFuture<'_, Result<Vec<super::KernelChoice>, DeviceError>> {
        Box::pin(self.choices())
    }

    fn profile_step(&mut self) -> LocalFuture<'_, Result<Option<Profile>, DeviceError>> {
        Box::pin(self.profile())
    }
}

#[cfg(test)]
mod tests {
    use super::ParamLayout;

    #[test]
    fn parameter_tensors_start_at_aligned_offsets() {
        // 256-byte binding alignment: 64 floats.
        let layout = ParamLayout::new([784 * 512, 512, 512 * 10, 10], 256);
        assert_eq!(layout.offsets, vec![0, 401_408, 401_920, 407_040]);
        assert_eq!(layout.total, 407_104);
        assert!(layout.offsets.iter().all(|o| o % 64 == 0));
        // Tiny alignments still keep each tensor on a vec4 boundary.
        let small = ParamLayout::new([3, 1, 5], 4);
        assert_eq!((small.offsets, small.total), (vec![0, 4, 8], 16));
    }
}
