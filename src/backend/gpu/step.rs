//! Records training and evaluation steps into a compute pass: the pipelines and
//! bind groups are built once, and a step is only dispatches with a dynamic
//! offset into the step table.

use wgpu::{BindGroup, ComputePass, ComputePipeline};

use super::kernels::{BatchDim, Epilogue, Kernels, MatmulVariant, LINEAR_WORKGROUP, MATMUL_BLOCK};

/// Pipelines of one training configuration.
pub struct Pipelines {
    pub gather: ComputePipeline,
    pub forward_hidden: ComputePipeline,
    pub forward_output: ComputePipeline,
    pub grad_weights: ComputePipeline,
    pub grad_input: ComputePipeline,
    pub column_sums: ComputePipeline,
    pub xent_train: ComputePipeline,
    pub xent_eval: ComputePipeline,
    pub optimizer: ComputePipeline,
}

impl Pipelines {
    pub fn new(kernels: &Kernels, one_hot: bool, optimizer_rule: u32) -> Self {
        let mm = |transpose_a, transpose_b, epilogue, batch_dim| {
            kernels.matmul(MatmulVariant {
                transpose_a,
                transpose_b,
                epilogue,
                batch_dim,
            })
        };
        Self {
            gather: kernels.gather(one_hot),
            forward_hidden: mm(false, false, Epilogue::BiasRelu, BatchDim::M),
            forward_output: mm(false, false, Epilogue::Bias, BatchDim::M),
            // dW = Xᵀ · delta, the batch being the reduced dimension.
            grad_weights: mm(true, false, Epilogue::None, BatchDim::K),
            // delta_below = (delta · Wᵀ) * relu'(activation below).
            grad_input: mm(false, true, Epilogue::ReluMask, BatchDim::M),
            column_sums: kernels.column_sums(),
            xent_train: kernels.softmax_xent(one_hot, true),
            xent_eval: kernels.softmax_xent(one_hot, false),
            optimizer: kernels.optimizer(optimizer_rule),
        }
    }
}

/// Bind groups of one dense layer.
pub struct LayerBindings {
    pub fan_in: u32,
    pub fan_out: u32,
    pub forward: BindGroup,
    pub grad_weights: BindGroup,
    pub grad_bias: BindGroup,
    /// Absent for the first layer: nobody needs the input's gradient.
    pub grad_input: Option<BindGroup>,
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
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            pass.set_pipeline(if l == last {
                &p.forward_output
            } else {
                &p.forward_hidden
            });
            pass.set_bind_group(0, &layer.forward, &[]);
            pass.dispatch_workgroups(
                blocks(layer.fan_out, MATMUL_BLOCK),
                blocks(self.batch, MATMUL_BLOCK),
                1,
            );
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
            pass.set_pipeline(&p.grad_weights);
            pass.set_bind_group(0, &layer.grad_weights, &[]);
            pass.dispatch_workgroups(
                blocks(layer.fan_out, MATMUL_BLOCK),
                blocks(layer.fan_in, MATMUL_BLOCK),
                1,
            );
            pass.set_pipeline(&p.column_sums);
            pass.set_bind_group(0, &layer.grad_bias, &[]);
            pass.dispatch_workgroups(blocks(layer.fan_out, LINEAR_WORKGROUP), 1, 1);
            dispatches += 2;
            if let Some(grad_input) = &layer.grad_input {
                pass.set_pipeline(&p.grad_input);
                pass.set_bind_group(0, grad_input, &[]);
                pass.dispatch_workgroups(
                    blocks(layer.fan_in, MATMUL_BLOCK),
                    blocks(self.batch, MATMUL_BLOCK),
                    1,
                );
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
