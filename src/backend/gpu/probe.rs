//! Runs one kernel at a time on host data: the parity tests compare each result
//! with the CPU reference, and the kernel benchmarks time them.

use wgpu::{BindGroup, ComputePipeline};

use super::buffers::{self, StepTable};
use super::kernels::{
    matmul_groups, whole, BTexture, BatchDim, Dims, Kernels, MatmulKernel, MatmulVariant, Shape,
    LINEAR_WORKGROUP,
};
use super::{hyper, optimizer_rule, GpuContext, GpuError};
use crate::backend::Counters;
use crate::data::Dataset;
use crate::optim::OptimizerSpec;

/// Targets for [`Probe::softmax_xent`].
pub enum ProbeTargets<'a> {
    Sparse(&'a [u8]),
    /// Row-major `rows x classes` probabilities.
    Dense(&'a [f32]),
}

/// What [`Probe::gather`] returns.
pub struct GatheredBatch {
    /// `rows x features` pixels / 255.
    pub x: Vec<f32>,
    /// `rows x classes` one-hot targets (zeros unless asked for).
    pub targets: Vec<f32>,
    /// `features x batch`: the transposed batch, zero past the rows.
    pub xt: Vec<f32>,
}

/// A kernel with its inputs on the device, ready to be dispatched repeatedly.
pub struct PreparedKernel {
    pipeline: ComputePipeline,
    bind_group: BindGroup,
    table: StepTable,
    groups: (u32, u32, u32),
    output: wgpu::Buffer,
    output_bytes: u64,
}

pub struct Probe {
    pub ctx: GpuContext,
    kernels: Kernels,
}

impl Probe {
    pub fn new(ctx: GpuContext) -> Self {
        let kernels = Kernels::new(&ctx.device, ctx.summary.subgroups);
        Self { ctx, kernels }
    }

    /// A step table of one step of `rows` rows.
    fn one_step(&self, rows: usize) -> StepTable {
        let stride = (self.ctx.limits.min_uniform_buffer_offset_alignment as u64).max(16);
        let mut table = StepTable::new(&self.ctx.device, &self.kernels, stride, 1);
        table.fill(&self.ctx.queue, rows, rows.max(1), &mut Counters::default());
        table
    }

    fn storage(&self, label: &str, values: &[f32]) -> wgpu::Buffer {
        buffers::storage_with(&self.ctx.device, label, bytemuck::cast_slice(values))
    }

    fn dims(&self, m: usize, k: usize, n: usize) -> wgpu::Buffer {
        let dims = Dims {
            m: m as u32,
            k: k as u32,
            n: n as u32,
            _pad: 0,
        };
        buffers::uniform_with(&self.ctx.device, "dims", bytemuck::bytes_of(&dims))
    }

    /// Records `iterations` dispatches of `kernel` in one submit and waits.
    pub fn dispatch(&self, kernel: &PreparedKernel, iterations: usize) -> Result<(), GpuError> {
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&kernel.pipeline);
            pass.set_bind_group(0, &kernel.bind_group, &[]);
            pass.set_bind_group(1, &kernel.table.bind_group, &[0]);
            for _ in 0..iterations {
                let (x, y, z) = kernel.groups;
                pass.dispatch_workgroups(x, y, z);
            }
        }
        let submission = self.ctx.queue.submit([encoder.finish()]);
        self.ctx
            .device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(submission),
                timeout: None,
            })
            .map_err(|e| GpuError::Device(e.to_string()))?;
        Ok(())
    }

    fn read(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>, GpuError> {
        buffers::read_blocking(
            &self.ctx.device,
            &self.ctx.queue,
            buffer,
            0,
            bytes,
            &mut Counters::default(),
        )
    }

    /// Runs the kernel once and returns its output.
    pub fn run(&self, kernel: &PreparedKernel) -> Result<Vec<f32>, GpuError> {
        self.dispatch(kernel, 1)?;
        Ok(buffers::f32s(
            &self.read(&kernel.output, kernel.output_bytes)?,
        ))
    }

    /// `op(A) · op(B)` with an epilogue: A is `m x k` (stored `k x m` when
    /// transposed), B is `k x n` (stored `n x k` when transposed); `extra` is the
    /// bias (length n) or relu mask (`m x n`) the epilogue reads.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_matmul(
        &self,
        variant: MatmulVariant,
        a: &[f32],
        b: &[f32],
        extra: &[f32],
        m: usize,
        k: usize,
        n: usize,
    ) -> PreparedKernel {
        let output_bytes = (4 * m * n) as u64;
        let output = buffers::storage(&self.ctx.device, "c", output_bytes);
        let rows = match variant.batch_dim {
            BatchDim::None | BatchDim::M => m,
            BatchDim::K => k,
        };
        let (a, b, extra, dims) = (
            self.storage("a", a),
            self.storage("b", b),
            self.storage("extra", extra),
            self.dims(m, k, n),
        );
        // The texture kernel reads B from a texture filled once here.
        let texture = (variant.kernel == MatmulKernel::Subgroup8Texture).then(|| {
            let texture = BTexture::new(&self.ctx.device, k, n);
            let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
            texture.record_copy(&mut encoder, &b, 0);
            self.ctx.queue.submit([encoder.finish()]);
            texture
        });
        let b = match &texture {
            Some(texture) => wgpu::BindingResource::TextureView(&texture.view),
            None => whole(&b),
        };
        PreparedKernel {
            pipeline: self.kernels.matmul(variant),
            bind_group: self.kernels.bind_group(
                self.kernels.matmul_layout_for(variant),
                &[whole(&a), b, whole(&output), whole(&extra), whole(&dims)],
            ),
            table: self.one_step(rows),
            groups: matmul_groups(variant, m, n),
            output,
            output_bytes,
        }
    }

    /// Column sums of a `rows x cols` matrix.
    pub fn prepare_column_sums(&self, grad: &[f32], rows: usize, cols: usize) -> PreparedKernel {
        let output_bytes = (4 * cols) as u64;
        let output = buffers::storage(&self.ctx.device, "sums", output_bytes);
        let (grad, dims) = (self.storage("grad", grad), self.dims(rows, 0, cols));
        PreparedKernel {
            pipeline: self.kernels.column_sums(),
            bind_group: self.kernels.bind_group(
                &self.kernels.column_sums_layout,
                &[whole(&grad), whole(&output), whole(&dims)],
            ),
            table: self.one_step(rows),
            groups: (cols.div_ceil(LINEAR_WORKGROUP as usize) as u32, 1, 1),
            output,
            output_bytes,
        }
    }

    /// Softmax + cross-entropy over `rows x classes` logits (labels are read in
    /// order 0..rows). Returns the gradient (zeros unless `write_grad`), the loss
    /// sum and the correct count.
    pub fn softmax_xent(
        &self,
        logits: &[f32],
        classes: usize,
        targets: ProbeTargets,
        write_grad: bool,
    ) -> Result<(Vec<f32>, f32, u32), GpuError> {
        let rows = logits.len() / classes;
        let device = &self.ctx.device;
        let (labels, dense) = match targets {
            ProbeTargets::Sparse(labels) => (buffers::pack_bytes(labels), vec![0.0]),
            ProbeTargets::Dense(t) => (vec![0; 4], t.to_vec()),
        };
        let dense_targets = dense.len() > 1;
        let identity: Vec<u32> = (0..rows as u32).collect();
        let grad = buffers::storage(device, "grad", (4 * logits.len()) as u64);
        let loss = buffers::storage(device, "loss", 4);
        let correct = buffers::storage(device, "correct", 4);
        let shape = Shape {
            features: 0,
            classes: classes as u32,
            batch: rows as u32,
            _pad: 0,
        };
        let logits_buf = self.storage("logits", logits);
        let labels = buffers::storage_with(device, "labels", &labels);
        let order = buffers::storage_with(device, "order", bytemuck::cast_slice(&identity));
        let dense = self.storage("targets", &dense);
        let shape = buffers::uniform_with(device, "shape", bytemuck::bytes_of(&shape));
        let kernel = PreparedKernel {
            pipeline: self.kernels.softmax_xent(dense_targets, write_grad),
            bind_group: self.kernels.bind_group(
                &self.kernels.xent_layout,
                &[
                    whole(&logits_buf),
                    whole(&grad),
                    whole(&labels),
                    whole(&order),
                    whole(&dense),
                    whole(&loss),
                    whole(&correct),
                    whole(&shape),
                ],
            ),
            table: self.one_step(rows),
            groups: (1, 1, 1),
            output: grad,
            output_bytes: (4 * logits.len()) as u64,
        };
        let grad = self.run(&kernel)?;
        let loss = buffers::f32s(&self.read(&loss, 4)?)[0];
        let correct = buffers::u32s(&self.read(&correct, 4)?)[0];
        Ok((grad, loss, correct))
    }

    /// One optimizer update at 1-based step `t`; returns the new parameters and
    /// updates `state` (as many vectors as `spec.state_slots()`).
    pub fn optimizer_step(
        &self,
        spec: &OptimizerSpec,
        t: u64,
        params: &[f32],
        grads: &[f32],
        state: &mut [Vec<f32>],
    ) -> Result<Vec<f32>, GpuError> {
        let device = &self.ctx.device;
        let n = params.len();
        // The kernel works in vec4s: pad with zeros (which stay zero).
        let count = n.next_multiple_of(4);
        let padded = |values: &[f32]| {
            let mut v = values.to_vec();
            v.resize(count, 0.0);
            v
        };
        let params_buf = self.storage("params", &padded(params));
        let grads = self.storage("grads", &padded(grads));
        let slot =
            |i: usize| self.storage("state", &padded(state.get(i).map_or(&[][..], |v| &v[..])));
        let (s1, s2) = (slot(0), slot(1));
        // The probe's step table has slot 0, so steps_before = t - 1 gives step t.
        let hyper = buffers::uniform_with(
            device,
            "hyper",
            bytemuck::bytes_of(&hyper(spec, count as u64, t - 1)),
        );
        let kernel = PreparedKernel {
            pipeline: self.kernels.optimizer(optimizer_rule(spec)),
            bind_group: self.kernels.bind_group(
                &self.kernels.optimizer_layout,
                &[
                    whole(&params_buf),
                    whole(&grads),
                    whole(&s1),
                    whole(&s2),
                    whole(&hyper),
                ],
            ),
            table: self.one_step(1),
            groups: (
                ((count / 4).div_ceil(LINEAR_WORKGROUP as usize) as u32).clamp(1, 1024),
                1,
                1,
            ),
            output: params_buf,
            output_bytes: (4 * n) as u64,
        };
        let out = self.run(&kernel)?;
        for (i, s) in state.iter_mut().enumerate() {
            let buffer = if i == 0 { &s1 } else { &s2 };
            *s = buffers::f32s(&self.read(buffer, (4 * n) as u64)?);
        }
        Ok(out)
    }

    /// The normalised batch for `indices` in buffers of `batch >= indices.len()`
    /// rows: the batch, the one-hot targets (when asked) and the transposed batch
    /// (features x batch, rows past the indices zero).
    pub fn gather(
        &self,
        data: &Dataset,
        indices: &[u32],
        batch: usize,
        one_hot: bool,
    ) -> Result<GatheredBatch, GpuError> {
        let device = &self.ctx.device;
        let rows = indices.len();
        let images = buffers::storage_with(device, "images", &buffers::pack_bytes(&data.images));
        let labels = buffers::storage_with(device, "labels", &buffers::pack_bytes(&data.labels));
        let order = buffers::storage_with(device, "order", bytemuck::cast_slice(indices));
        let x_bytes = (4 * batch * data.features) as u64;
        let x = buffers::storage(device, "x", x_bytes);
        let xt = buffers::storage(device, "xt", x_bytes);
        let targets_bytes = (4 * rows * data.classes) as u64;
        let targets = buffers::storage(device, "targets", targets_bytes);
        let shape = Shape {
            features: data.features as u32,
            classes: data.classes as u32,
            batch: batch as u32,
            _pad: 0,
        };
        let shape = buffers::uniform_with(device, "shape", bytemuck::bytes_of(&shape));
        let kernel = PreparedKernel {
            pipeline: self.kernels.gather(one_hot, true),
            bind_group: self.kernels.bind_group(
                &self.kernels.gather_layout,
                &[
                    whole(&images),
                    whole(&labels),
                    whole(&order),
                    whole(&x),
                    whole(&targets),
                    whole(&shape),
                    whole(&xt),
                ],
            ),
            table: self.one_step(rows),
            groups: (
                data.features.div_ceil(LINEAR_WORKGROUP as usize) as u32,
                batch as u32,
                1,
            ),
            output: x,
            output_bytes: (4 * rows * data.features) as u64,
        };
        let x = self.run(&kernel)?;
        let targets = buffers::f32s(&self.read(&targets, targets_bytes)?);
        let xt = buffers::f32s(&self.read(&xt, x_bytes)?);
        Ok(GatheredBatch { x, targets, xt })
    }
}
