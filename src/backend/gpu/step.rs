//! Records training and evaluation steps into a compute pass: the pipelines and
//! bind groups are built once, and a step is only dispatches with a dynamic
//! offset into the step table.

use wgpu::{BindGroup, Buffer, CommandEncoder, ComputePass, ComputePipeline};

use super::kernels::{
    BTexture, BatchDim, Epilogue, Kernels, MatmulKernel, MatmulVariant, LINEAR_WORKGROUP,
};

/// Pipelines of one training configuration (the matmuls are per layer, in
/// [`LayerBindings`], since each layer's shape picks its kernel).
pub struct Pipelines {
    pub gather: ComputePipeline,
    pub column_sums: ComputePipeline,
    pub xent_train: ComputePipeline,
    pub xent_eval: ComputePipeline,
    pub optimizer: ComputePipeline,
}

impl Pipelines {
    pub fn new(
        kernels: &Kernels,
        one_hot: bool,
        transposed_input: bool,
        optimizer_rule: u32,
    ) -> Self {
        Self {
            gather: kernels.gather(one_hot, transposed_input),
            column_sums: kernels.column_sums(),
            xent_train: kernels.softmax_xent(one_hot, true),
            xent_eval: kernels.softmax_xent(one_hot, false),
            optimizer: kernels.optimizer(optimizer_rule),
        }
    }
}

/// The copy of a matmul's B from its buffer into its texture, recorded before
/// each dispatch of the matmul (B changes every step: weights or deltas).
pub struct Upload {
    pub buffer: Buffer,
    pub offset: u64,
    pub texture: BTexture,
}

/// One kernel launch of a step: what `--profile` times and a pass records.
pub struct Dispatch<'a> {
    pub label: &'static str,
    pub pipeline: &'a ComputePipeline,
    pub bind_group: &'a BindGroup,
    pub groups: (u32, u32, u32),
    pub upload: Option<&'a Upload>,
}

impl Dispatch<'_> {
    pub fn record(&self, pass: &mut ComputePass) {
        pass.set_pipeline(self.pipeline);
        pass.set_bind_group(0, self.bind_group, &[]);
        let (x, y, z) = self.groups;
        pass.dispatch_workgroups(x, y, z);
    }
}

/// A matmul pipeline with the bind group it runs on, its workgroup grid, and
/// for the texture kernel the upload of B.
pub struct Matmul {
    pub pipeline: ComputePipeline,
    pub bind_group: BindGroup,
    pub groups: (u32, u32, u32),
    pub upload: Option<Upload>,
}

impl Matmul {
    fn dispatch(&self, label: &'static str) -> Dispatch<'_> {
        Dispatch {
            label,
            pipeline: &self.pipeline,
            bind_group: &self.bind_group,
            groups: self.groups,
            upload: self.upload.as_ref(),
        }
    }
}

/// The three matmul forms of a dense layer with `fan_in` inputs and `fan_out`
/// outputs in a batch of `batch` rows.
pub fn layer_variants(
    batch: usize,
    fan_in: usize,
    fan_out: usize,
    output_layer: bool,
    subgroups_of_8: bool,
) -> (MatmulVariant, MatmulVariant, MatmulVariant) {
    let v = MatmulVariant::new;
    let activation = if output_layer {
        Epilogue::Bias
    } else {
        Epilogue::BiasRelu
    };
    (
        // Z = X · W + b, relu for hidden layers.
        v(false, false, activation, BatchDim::M).fastest_for(
            batch,
            fan_in,
            fan_out,
            subgroups_of_8,
        ),
        // dW = Xᵀ · delta, the batch being the reduced dimension.
        v(true, false, Epilogue::None, BatchDim::K).fastest_for(
            fan_in,
            batch,
            fan_out,
            subgroups_of_8,
        ),
        // delta_below = (delta · Wᵀ) * relu'(activation below).
        v(false, true, Epilogue::ReluMask, BatchDim::M).fastest_for(
            batch,
            fan_out,
            fan_in,
            subgroups_of_8,
        ),
    )
}

/// The first layer's weight gradient as a plain matmul of the transposed batch
/// (`gather.wgsl` writes it, padded with zero rows to the full batch) when a
/// vectorised kernel fits: Xᵀ·delta is then an NN product over a fixed K, which
/// runs about twice as fast as the TN form on lavapipe.
pub fn transposed_input_grad(
    batch: usize,
    fan_in: usize,
    fan_out: usize,
    subgroups_of_8: bool,
) -> Option<MatmulVariant> {
    let variant = MatmulVariant::new(false, false, Epilogue::None, BatchDim::None).fastest_for(
        fan_in,
        batch,
        fan_out,
        subgroups_of_8,
    );
    (variant.kernel != MatmulKernel::Scalar).then_some(variant)
}

/// Pipelines and bind groups of one dense layer.
pub struct LayerBindings {
    pub fan_in: u32,
    pub fan_out: u32,
    pub forward: Matmul,
    pub grad_weights: Matmul,
    pub grad_bias: BindGroup,
    /// Absent for the first layer: nobody needs the input's gradient.
    pub grad_input: Option<Matmul>,
}

/// Bind groups that read one example source (images, labels, order).
pub struct SourceBindings {
    pub gather: BindGroup,
    pub xent: BindGroup,
}

pub struct StepRecorder {
    pub pipelines: Pipelines,
    pub layers: Vec<LayerBindings>,
    pub optimizer: BindGroup,
    pub batch: u32,
    pub features: u32,
    /// Workgroups of the optimizer's grid-stride loop.
    pub optimizer_groups: u32,
}

fn blocks(n: u32, per: u32) -> u32 {
    n.div_ceil(per).max(1)
}

/// Records `dispatches` once per step-table offset into `encoder`, in compute
/// passes that an upload (a copy, which cannot happen inside a pass) splits.
/// Returns the number of dispatches recorded.
pub fn record_steps(
    encoder: &mut CommandEncoder,
    dispatches: &[Dispatch],
    steps: &BindGroup,
    offsets: impl Iterator<Item = u32>,
) -> u64 {
    let mut count = 0;
    let mut pass: Option<ComputePass<'static>> = None;
    for offset in offsets {
        if let Some(pass) = pass.as_mut() {
            pass.set_bind_group(1, steps, &[offset]);
        }
        for dispatch in dispatches {
            if let Some(upload) = dispatch.upload {
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
            dispatch.record(pass);
            count += 1;
        }
    }
    count
}

impl StepRecorder {
    /// Gather, forward through every layer, and the loss.
    fn forward<'a>(&'a self, source: &'a SourceBindings, train: bool, out: &mut Vec<Dispatch<'a>>) {
        let p = &self.pipelines;
        out.push(Dispatch {
            label: "gather",
            pipeline: &p.gather,
            bind_group: &source.gather,
            groups: (blocks(self.features, LINEAR_WORKGROUP), self.batch, 1),
            upload: None,
        });
        out.extend(
            self.layers
                .iter()
                .map(|layer| layer.forward.dispatch("matmul forward")),
        );
        out.push(Dispatch {
            label: "softmax_xent",
            pipeline: if train { &p.xent_train } else { &p.xent_eval },
            bind_group: &source.xent,
            groups: (1, 1, 1),
            upload: None,
        });
    }

    /// The dispatches of a training step: forward, loss, backward, update.
    pub fn train_step<'a>(&'a self, source: &'a SourceBindings) -> Vec<Dispatch<'a>> {
        let mut out = Vec::new();
        self.forward(source, true, &mut out);
        let p = &self.pipelines;
        for layer in self.layers.iter().rev() {
            out.push(layer.grad_weights.dispatch("matmul grad weights"));
            out.push(Dispatch {
                label: "column_sums",
                pipeline: &p.column_sums,
                bind_group: &layer.grad_bias,
                groups: (blocks(layer.fan_out, LINEAR_WORKGROUP), 1, 1),
                upload: None,
            });
            if let Some(grad_input) = &layer.grad_input {
                out.push(grad_input.dispatch("matmul grad input"));
            }
        }
        out.push(Dispatch {
            label: "optimizer",
            pipeline: &p.optimizer,
            bind_group: &self.optimizer,
            groups: (self.optimizer_groups, 1, 1),
            upload: None,
        });
        out
    }

    /// The dispatches of an evaluation step (forward and loss only).
    pub fn eval_step<'a>(&'a self, source: &'a SourceBindings) -> Vec<Dispatch<'a>> {
        let mut out = Vec::new();
        self.forward(source, false, &mut out);
        out
    }
}
