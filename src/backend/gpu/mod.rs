//! The wgpu backend: WGSL kernels over device-resident buffers. The data set is
//! uploaded once as `u8`; per epoch only the example order goes up; metrics come
//! back every `report_every` steps through double-buffered asynchronous reads.

pub mod buffers;
pub mod context;
pub mod kernels;
pub mod probe;
pub mod profile;
pub mod step;

use std::sync::Arc;

use wgpu::{BindingResource, Buffer, BufferBinding};

pub use context::GpuContext;

use super::{check_same_shape, Backend, BackendError, Counters, Metrics, Split, TrainSettings};
use crate::data::Mnist;
use crate::loss::LossKind;
use crate::model::{ModelSpec, Params};
use crate::optim::{OptimizerKind, OptimizerSpec};
use buffers::{MetricsReadback, StepTable};
use kernels::{whole, Dims, Hyper, Kernels, Shape, LINEAR_WORKGROUP, STEPS_BEFORE_OFFSET};
use step::{LayerBindings, Matmul, Pipelines, SourceBindings, StepRecorder};

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(
        "no {requested} GPU adapter found; install a driver (on Debian/Ubuntu, \
         `apt-get install mesa-vulkan-drivers` gives a software Vulkan device) or use --backend cpu"
    )]
    NoAdapter { requested: String },
    #[error("there is no adapter {index}; available: {}", .available.join(" | "))]
    AdapterIndex {
        index: usize,
        available: Vec<String>,
    },
    #[error("the adapter refused to open a device: {0}")]
    RequestDevice(String),
    #[error(
        "{what}: {bytes} bytes in one storage buffer, above this adapter's limit of {limit} \
         (use a smaller --hidden or --batch-size, or --backend cpu)"
    )]
    TooLarge {
        what: String,
        bytes: u64,
        limit: u64,
    },
    #[error("the GPU reported an error: {0}")]
    Device(String),
}

/// Where each parameter tensor (w0, b0, w1, b1, ...) starts in the one parameter
/// buffer, in floats; offsets are aligned so each tensor can be bound alone.
#[derive(Debug, Clone)]
pub struct ParamLayout {
    pub offsets: Vec<u64>,
    pub lens: Vec<u64>,
    pub total: u64,
}

impl ParamLayout {
    pub fn new(spec: &ModelSpec, align_bytes: u64) -> Self {
        // At least 4 floats, so the optimizer's vec4s never straddle tensors.
        let align = (align_bytes / 4).max(4);
        let mut offsets = Vec::new();
        let mut lens = Vec::new();
        let mut at = 0u64;
        for (fan_in, fan_out) in spec.layer_dims() {
            for len in [(fan_in * fan_out) as u64, fan_out as u64] {
                offsets.push(at);
                lens.push(len);
                at = (at + len).next_multiple_of(align);
            }
        }
        Self {
            offsets,
            lens,
            total: at,
        }
    }

    fn binding<'a>(&self, buffer: &'a Buffer, tensor: usize) -> BindingResource<'a> {
        BindingResource::Buffer(BufferBinding {
            buffer,
            offset: 4 * self.offsets[tensor],
            size: wgpu::BufferSize::new(4 * self.lens[tensor]),
        })
    }

    /// The flat buffer contents for `params` (padding zeroed).
    pub fn flatten(&self, params: &Params) -> Vec<f32> {
        let mut flat = vec![0.0; self.total as usize];
        for (i, t) in params.tensors().iter().enumerate() {
            let at = self.offsets[i] as usize;
            flat[at..at + t.len()].copy_from_slice(t);
        }
        flat
    }

    /// Writes the flat buffer contents back into `params`.
    pub fn unflatten(&self, flat: &[f32], params: &mut Params) {
        for (i, t) in params.tensors_mut().into_iter().enumerate() {
            let at = self.offsets[i] as usize;
            t.copy_from_slice(&flat[at..at + t.len()]);
        }
    }
}

/// The WGSL rule number of an optimizer (see `optimizer.wgsl`).
pub fn optimizer_rule(spec: &OptimizerSpec) -> u32 {
    match spec.kind {
        OptimizerKind::Sgd if spec.momentum == 0.0 => 0,
        OptimizerKind::Sgd if spec.nesterov => 2,
        OptimizerKind::Sgd => 1,
        OptimizerKind::Rmsprop => 3,
        OptimizerKind::Adam => 4,
    }
}

/// The optimizer's uniforms for `count` parameters (a multiple of 4).
pub fn hyper(spec: &OptimizerSpec, count: u64, steps_before: u64) -> Hyper {
    debug_assert_eq!(count % 4, 0, "the optimizer kernel updates vec4s");
    Hyper {
        lr: spec.lr,
        momentum: spec.momentum,
        rho: spec.rho,
        beta1: spec.beta1,
        beta2: spec.beta2,
        epsilon: spec.epsilon,
        count4: (count / 4) as u32,
        steps_before: steps_before as u32,
    }
}

/// The images, labels and example order one kind of step reads.
struct Source {
    bindings: SourceBindings,
    table: StepTable,
}

pub struct GpuBackend {
    ctx: GpuContext,
    settings: TrainSettings,
    spec: ModelSpec,
    layout: ParamLayout,
    params: Buffer,
    hyper: Buffer,
    order: Buffer,
    loss_sums: Buffer,
    correct_counts: Buffer,
    train: Source,
    train_eval: Source,
    test: Source,
    recorder: StepRecorder,
    readback: MetricsReadback,
    counters: Counters,
    train_len: usize,
}

impl GpuBackend {
    pub fn new(
        ctx: GpuContext,
        data: Arc<Mnist>,
        params: Params,
        settings: TrainSettings,
    ) -> Result<Self, BackendError> {
        Ok(Self::build(ctx, &data, params, settings)?)
    }

    fn build(
        ctx: GpuContext,
        data: &Mnist,
        params: Params,
        settings: TrainSettings,
    ) -> Result<Self, GpuError> {
        let device = ctx.device.clone();
        let spec = params.spec();
        let batch = settings.batch_size;
        let widest = spec
            .layer_dims()
            .iter()
            .map(|d| d.1)
            .max()
            .unwrap_or(1)
            .max(spec.inputs);
        ctx.check_binding_size("the training images", data.train.images.len() as u64)?;
        ctx.check_binding_size("the test images", data.test.images.len() as u64)?;
        ctx.check_binding_size("one batch of activations", (4 * batch * widest) as u64)?;
        let layout = ParamLayout::new(&spec, ctx.limits.min_storage_buffer_offset_alignment as u64);
        ctx.check_binding_size("the parameters", 4 * layout.total)?;
        let kernels = Kernels::new(&device, ctx.summary.subgroups);
        let mut counters = Counters::default();

        let f32_bytes = |n: usize| (4 * n) as u64;
        let flat = layout.flatten(&params);
        let params_buf = buffers::storage_with(&device, "params", bytemuck::cast_slice(&flat));
        let grads = buffers::storage(&device, "grads", f32_bytes(flat.len()));
        let slots = settings.optimizer.state_slots();
        let state_len = |slot: usize| {
            if slots > slot {
                f32_bytes(flat.len())
            } else {
                0
            }
        };
        let state1 = buffers::storage(&device, "optimizer state 1", state_len(0));
        let state2 = buffers::storage(&device, "optimizer state 2", state_len(1));
        let hyper_buf = buffers::uniform_with(
            &device,
            "hyper-parameters",
            bytemuck::bytes_of(&hyper(&settings.optimizer, layout.total, 0)),
        );
        counters.bytes_to_device += 4 * flat.len() as u64;

        let x = buffers::storage(&device, "batch", f32_bytes(batch * spec.inputs));
        let targets = buffers::storage(&device, "targets", f32_bytes(batch * spec.classes));
        let dims = spec.layer_dims();
        let first_grad =
            step::transposed_input_grad(batch, spec.inputs, dims[0].1, ctx.subgroups_of_8);
        let xt_len = if first_grad.is_some() {
            batch * spec.inputs
        } else {
            0
        };
        let xt = buffers::storage(&device, "batch transposed", f32_bytes(xt_len));
        let outputs: Vec<Buffer> = dims
            .iter()
            .map(|d| buffers::storage(&device, "activations", f32_bytes(batch * d.1)))
            .collect();
        let deltas: Vec<Buffer> = dims
            .iter()
            .map(|d| buffers::storage(&device, "deltas", f32_bytes(batch * d.1)))
            .collect();

        let max_steps = data.train.len.max(data.test.len).div_ceil(batch);
        let loss_sums = buffers::storage(&device, "loss sums", f32_bytes(max_steps));
        let correct_counts = buffers::storage(&device, "correct counts", f32_bytes(max_steps));

        let upload = |label: &str, bytes: &[u8], counters: &mut Counters| {
            let packed = buffers::pack_bytes(bytes);
            counters.bytes_to_device += packed.len() as u64;
            buffers::storage_with(&device, label, &packed)
        };
        let train_images = upload("train images", &data.train.images, &mut counters);
        let train_labels = upload("train labels", &data.train.labels, &mut counters);
        let test_images = upload("test images", &data.test.images, &mut counters);
        let test_labels = upload("test labels", &data.test.labels, &mut counters);
        let order = buffers::storage(&device, "order", f32_bytes(data.train.len));
        let identity: Vec<u32> = (0..data.train.len.max(data.test.len) as u32).collect();
        let identity =
            buffers::storage_with(&device, "identity order", bytemuck::cast_slice(&identity));
        counters.bytes_to_device += 4 * identity.size();

        let shape = buffers::uniform_with(
            &device,
            "shape",
            bytemuck::bytes_of(&Shape {
                features: spec.inputs as u32,
                classes: spec.classes as u32,
                batch: batch as u32,
                _pad: 0,
            }),
        );
        let last = dims.len() - 1;
        let source = |images: &Buffer, labels: &Buffer, order: &Buffer| SourceBindings {
            gather: kernels.bind_group(
                &kernels.gather_layout,
                &[
                    whole(images),
                    whole(labels),
                    whole(order),
                    whole(&x),
                    whole(&targets),
                    whole(&shape),
                    whole(&xt),
                ],
            ),
            xent: kernels.bind_group(
                &kernels.xent_layout,
                &[
                    whole(&outputs[last]),
                    whole(&deltas[last]),
                    whole(labels),
                    whole(order),
                    whole(&targets),
                    whole(&loss_sums),
                    whole(&correct_counts),
                    whole(&shape),
                ],
            ),
        };
        let stride = (ctx.limits.min_uniform_buffer_offset_alignment as u64).max(16);
        let table = |len: usize, counters: &mut Counters| {
            let mut t = StepTable::new(&device, &kernels, stride, max_steps);
            if len > 0 {
                t.fill(&ctx.queue, len, batch, counters);
            }
            t
        };
        let train = Source {
            bindings: source(&train_images, &train_labels, &order),
            table: table(0, &mut counters),
        };
        let train_eval = Source {
            bindings: source(&train_images, &train_labels, &identity),
            table: table(data.train.len, &mut counters),
        };
        let test = Source {
            bindings: source(&test_images, &test_labels, &identity),
            table: table(data.test.len, &mut counters),
        };

        let dims_uniform = |m: usize, k: usize, n: usize| {
            buffers::uniform_with(
                &device,
                "dims",
                bytemuck::bytes_of(&Dims {
                    m: m as u32,
                    k: k as u32,
                    n: n as u32,
                    _pad: 0,
                }),
            )
        };
        let layers: Vec<LayerBindings> = dims
            .iter()
            .enumerate()
            .map(|(l, &(fan_in, fan_out))| {
                let input = if l == 0 { &x } else { &outputs[l - 1] };
                let (w, b) = (2 * l, 2 * l + 1);
                let forward_dims = dims_uniform(batch, fan_in, fan_out);
                let grad_w_dims = dims_uniform(fan_in, batch, fan_out);
                let grad_in_dims = dims_uniform(batch, fan_out, fan_in);
                let (forward, grad_weights, grad_input) =
                    step::layer_variants(batch, fan_in, fan_out, l == last, ctx.subgroups_of_8);
                let (grad_weights, grad_weights_input) = match first_grad {
                    Some(variant) if l == 0 => (variant, &xt),
                    _ => (grad_weights, input),
                };
                // `b` is where B lives; the texture kernel reads a copy of it.
                let matmul = |variant: kernels::MatmulVariant,
                              (m, k, n): (usize, usize, usize),
                              resources: [BindingResource; 5],
                              b: (&Buffer, u64)| {
                    let texture = (variant.kernel == kernels::MatmulKernel::Subgroup8Texture)
                        .then(|| kernels::BTexture::new(&device, k, n));
                    let layout = kernels.matmul_layout_for(variant);
                    let bind_group = match &texture {
                        Some(texture) => {
                            let mut with_texture = resources.to_vec();
                            with_texture[1] = BindingResource::TextureView(&texture.view);
                            kernels.bind_group(layout, &with_texture)
                        }
                        None => kernels.bind_group(layout, &resources),
                    };
                    Matmul {
                        pipeline: kernels.matmul(variant),
                        bind_group,
                        groups: kernels::matmul_groups(variant, m, n),
                        upload: texture.map(|texture| step::Upload {
                            buffer: b.0.clone(),
                            offset: b.1,
                            texture,
                        }),
                    }
                };
                let w_offset = 4 * layout.offsets[w];
                LayerBindings {
                    fan_in: fan_in as u32,
                    fan_out: fan_out as u32,
                    forward: matmul(
                        forward,
                        (batch, fan_in, fan_out),
                        [
                            whole(input),
                            layout.binding(&params_buf, w),
                            whole(&outputs[l]),
                            layout.binding(&params_buf, b),
                            whole(&forward_dims),
                        ],
                        (&params_buf, w_offset),
                    ),
                    grad_weights: matmul(
                        grad_weights,
                        (fan_in, batch, fan_out),
                        [
                            whole(grad_weights_input),
                            whole(&deltas[l]),
                            layout.binding(&grads, w),
                            // Unused by this variant; any storage buffer fits the slot.
                            whole(&deltas[l]),
                            whole(&grad_w_dims),
                        ],
                        (&deltas[l], 0),
                    ),
                    grad_bias: kernels.bind_group(
                        &kernels.column_sums_layout,
                        &[
                            whole(&deltas[l]),
                            layout.binding(&grads, b),
                            whole(&forward_dims),
                        ],
                    ),
                    grad_input: (l > 0).then(|| {
                        matmul(
                            grad_input,
                            (batch, fan_out, fan_in),
                            [
                                whole(&deltas[l]),
                                layout.binding(&params_buf, w),
                                whole(&deltas[l - 1]),
                                whole(&outputs[l - 1]),
                                whole(&grad_in_dims),
                            ],
                            (&params_buf, w_offset),
                        )
                    }),
                }
            })
            .collect();
        let optimizer = kernels.bind_group(
            &kernels.optimizer_layout,
            &[
                whole(&params_buf),
                whole(&grads),
                whole(&state1),
                whole(&state2),
                whole(&hyper_buf),
            ],
        );
        let recorder = StepRecorder {
            pipelines: Pipelines::new(
                &kernels,
                settings.loss == LossKind::Categorical,
                first_grad.is_some(),
                optimizer_rule(&settings.optimizer),
            ),
            layers,
            optimizer,
            batch: batch as u32,
            features: spec.inputs as u32,
            optimizer_groups: ((layout.total / 4).div_ceil(LINEAR_WORKGROUP as u64) as u32)
                .clamp(1, ctx.limits.max_compute_workgroups_per_dimension),
        };
        Ok(Self {
            readback: MetricsReadback::new(&device, max_steps),
            ctx,
            settings,
            spec,
            layout,
            params: params_buf,
            hyper: hyper_buf,
            order,
            loss_sums,
            correct_counts,
            train,
            train_eval,
            test,
            recorder,
            counters,
            train_len: data.train.len,
        })
    }

    /// Runs every step of `source`'s table, `window` steps per submit, reading
    /// the metrics of each window back while the next one runs.
    fn run_steps(
        &mut self,
        which: Split,
        training: bool,
        window: usize,
        report: &mut dyn FnMut(&Metrics),
    ) -> Result<Metrics, GpuError> {
        let source = match (which, training) {
            (Split::Train, true) => &self.train,
            (Split::Train, false) => &self.train_eval,
            (Split::Test, _) => &self.test,
        };
        let (len, steps) = (source.table.len, source.table.steps);
        let batch = self.settings.batch_size;
        let mut metrics = Metrics::default();
        let mut absorb = |done: Option<(std::ops::Range<usize>, buffers::StepMetrics)>,
                          metrics: &mut Metrics| {
            if let Some((range, values)) = done {
                for (s, (loss, correct)) in range.zip(values) {
                    metrics.samples += (len - s * batch).min(batch) as u64;
                    metrics.steps += 1;
                    metrics.loss_sum += loss as f64;
                    metrics.correct += correct as u64;
                }
                report(metrics);
            }
        };
        let dispatches = if training {
            self.recorder.train_step(&source.bindings)
        } else {
            self.recorder.eval_step(&source.bindings)
        };
        for start in (0..steps).step_by(window) {
            let range = start..(start + window).min(steps);
            let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
            self.counters.dispatches += step::record_steps(
                &mut encoder,
                &dispatches,
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
            if training {
                self.counters.steps += range.len() as u64;
            }
            let done =
                self.readback
                    .submitted(&self.ctx.device, range, submission, &mut self.counters)?;
            absorb(done, &mut metrics);
        }
        let done = self.readback.finish(&self.ctx.device, &mut self.counters)?;
        absorb(done, &mut metrics);
        Ok(metrics)
    }
}

impl Backend for GpuBackend {
    fn describe(&self) -> String {
        let s = &self.ctx.summary;
        format!("{} ({}, {})", s.name, s.backend, s.device_type)
    }

    fn train_epoch(
        &mut self,
        order: &[u32],
        report: &mut dyn FnMut(&Metrics),
    ) -> Result<Metrics, BackendError> {
        if order.len() > self.train_len || order.iter().any(|&i| i as usize >= self.train_len) {
            return Err(GpuError::Device(format!(
                "the example order must index the {} training images",
                self.train_len
            ))
            .into());
        }
        let queue = &self.ctx.queue;
        queue.write_buffer(&self.order, 0, bytemuck::cast_slice(order));
        queue.write_buffer(
            &self.hyper,
            STEPS_BEFORE_OFFSET,
            bytemuck::bytes_of(&(self.counters.steps as u32)),
        );
        self.counters.bytes_to_device += 4 * order.len() as u64 + 4;
        self.train.table.fill(
            queue,
            order.len(),
            self.settings.batch_size,
            &mut self.counters,
        );
        let window = self.settings.report_every;
        Ok(self.run_steps(Split::Train, true, window, report)?)
    }

    fn evaluate(&mut self, split: Split) -> Result<Metrics, BackendError> {
        let all = usize::MAX / 2;
        Ok(self.run_steps(split, false, all, &mut |_| {})?)
    }

    fn params(&mut self) -> Result<Params, BackendError> {
        let bytes = buffers::read_blocking(
            &self.ctx.device,
            &self.ctx.queue,
            &self.params,
            0,
            4 * self.layout.total,
            &mut self.counters,
        )?;
        let mut params = Params::zeros(&self.spec);
        self.layout.unflatten(&buffers::f32s(&bytes), &mut params);
        Ok(params)
    }

    fn set_params(&mut self, params: &Params) -> Result<(), BackendError> {
        check_same_shape(&self.spec, params)?;
        let flat = self.layout.flatten(params);
        self.ctx
            .queue
            .write_buffer(&self.params, 0, bytemuck::cast_slice(&flat));
        self.counters.bytes_to_device += 4 * flat.len() as u64;
        Ok(())
    }

    fn counters(&self) -> Counters {
        self.counters
    }

    fn profile_step(&mut self) -> Result<Option<super::Profile>, BackendError> {
        // The training-set source in file order: its step table is always filled.
        let source = &self.train_eval;
        let dispatches = self.recorder.train_step(&source.bindings);
        let profile = profile::time_dispatches(
            &self.ctx,
            &dispatches,
            &source.table.bind_group,
            source.table.offset(0),
        )?;
        Ok(Some(profile))
    }
}
