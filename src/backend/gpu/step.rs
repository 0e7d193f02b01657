//! Records training and evaluation steps into a compute pass: the pipelines and
//! bind groups are built once, and a step is only dispatches with a dynamic
//! offset into the step table.

use wgpu::{BindGroup, ComputePass, ComputePipeline};

use super::kernels::{BatchDim, Epilogue, Kernels, MatmulKernel, MatmulVariant, LINEAR_WORKGROUP};

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
    pub fn new(kernels: &Kernels, one_hot: bool, optimizer_rule: u32) -> Self {
        Self {
            gather: kernels.gather(one_hot),
            column_sums: kernels.column_sums(),
            xent_train: kernels.softmax_xent(one_hot, true),
            xent_eval: kernels.softmax_xent(one_hot, false),
            optimizer: kernels.optimizer(optimizer_rule),
        }
    }
}

/// A matmul pipeline with the bind group it runs on and its workgroup grid.
pub struct Matmul {
    pub pipeline: ComputePipeline,
    pub bind_group: BindGroup,
    pub groups: (u32, u32, u32),
}

impl Matmul {
    fn record(&self, pass: &mut ComputePass) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let (x, y, z) = self.groups;
        pass.dispatch_workgroups(x, y, z);
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
    let v = |transpose_a, transpose_b, epilogue, batch_dim| MatmulVariant {
        transpose_a,
        transpose_b,
        epilogue,
        batch_dim,
        kernel: MatmulKernel::Scalar,
    };
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

impl StepRecorder {
    /// Gather, forward through every layer, and the loss; returns dispatches.
    fn record_forward(&self, pass: &mut ComputePass, source: &SourceBindings, train: bool) -> u64 {
        let p = &self.pipelines;
        pass.set_pipeline(&p.gather);
        pass.set_bind_group(0, &source.gather, &[]);
        pass.dispatch_workgroups(blocks(self.features, LINEAR_WORKGROUP), self.batch, 1);
        for layer in &self.layers {
            layer.forward.record(pass);
        }
        pass.set_pipeline(if train { &p.xent_train } else { &p.xent_eval });
        pass.set_bind_group(0, &source.xent, &[]);
        pass.dispatch_workgroups(1, 1, 1);
        2 + self.layers.len() as u64
    }

    /// Records step `offset` of a step table: forward, loss, backward and the
    /// optimizer update. Returns the number of dispatches.
    pub fn record_train(
        &self,
        pass: &mut ComputePass,
        source: &SourceBindings,
        steps: &BindGroup,
        offset: u32,
    ) -> u64 {
        pass.set_bind_group(1, steps, &[offset]);
        let mut dispatches = self.record_forward(pass, source, true);
        let p = &self.pipelines;
        for layer in self.layers.iter().rev() {
            layer.grad_weights.record(pass);
            pass.set_pipeline(&p.column_sums);
            pass.set_bind_group(0, &layer.grad_bias, &[]);
            pass.dispatch_workgroups(blocks(layer.fan_out, LINEAR_WORKGROUP), 1, 1);
            dispatches += 2;
            if let Some(grad_input) = &layer.grad_input {
                grad_input.record(pass);
                dispatches += 1;
            }
        }
        pass.set_pipeline(&p.optimizer);
        pass.set_bind_group(0, &self.optimizer, &[]);
        pass.dispatch_workgroups(self.optimizer_groups, 1, 1);
        dispatches + 1
    }

    /// Records a forward-only step that fills the step's metric slot.
    pub fn record_eval(
        &self,
        pass: &mut ComputePass,
        source: &SourceBindings,
        steps: &BindGroup,
        offset: u32,
    ) -> u64 {
        pass.set_bind_group(1, steps, &[offset]);
        self.record_forward(pass, source, false)
    }
}
