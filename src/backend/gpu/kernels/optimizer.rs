//! One optimizer update over every parameter at once (`optimizer.wgsl`).

use super::{blocks, Family, Kernels, Launch};
use crate::backend::gpu::shader::{self, bindings, uniform_struct, LINEAR_WORKGROUP};
use crate::optim::{OptimizerKind, OptimizerSpec};

uniform_struct! {
    /// The optimizer's hyper-parameters, as Keras names them.
    pub(crate) struct Hyper {
        lr: f32,
        momentum: f32,
        rho: f32,
        beta1: f32,
        beta2: f32,
        epsilon: f32,
        /// Parameters / 4: the kernel updates a vec4 at a time.
        count4: u32,
        /// Optimizer steps taken before the submitted steps (the step's slot
        /// counts from there).
        steps_before: u32,
    }
}

/// Byte offset of `Hyper::steps_before`, rewritten before each epoch.
pub(crate) const STEPS_BEFORE_OFFSET: u64 = std::mem::offset_of!(Hyper, steps_before) as u64;

impl Hyper {
    /// The uniforms of `spec` for `count` parameters (a multiple of 4).
    pub fn new(spec: &OptimizerSpec, count: u64, steps_before: u64) -> Self {
        debug_assert_eq!(count % 4, 0, "the optimizer kernel updates vec4s");
        Self {
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
}

/// The `RULE` override of `optimizer.wgsl`.
fn rule(spec: &OptimizerSpec) -> u32 {
    match spec.kind {
        OptimizerKind::Sgd if spec.momentum == 0.0 => 0,
        OptimizerKind::Sgd if spec.nesterov => 2,
        OptimizerKind::Sgd => 1,
        OptimizerKind::Rmsprop if spec.momentum == 0.0 => 3,
        OptimizerKind::Rmsprop => 5,
        OptimizerKind::Adam => 4,
    }
}

bindings! {
    pub(crate) struct OptimizerBindings {
        params: ReadWrite "array<vec4<f32>>",
        grads: Read "array<vec4<f32>>",
        state1: ReadWrite "array<vec4<f32>>",
        state2: ReadWrite "array<vec4<f32>>",
        /// Per-step losses, made NaN when a parameter stops being finite.
        loss_sums: ReadWrite "array<f32>",
        hyper: Uniform "Hyper",
    }
}

pub(crate) fn source() -> String {
    shader::source(
        &[Hyper::WGSL],
        OptimizerBindings::SLOTS,
        &[include_str!("../../../../shaders/optimizer.wgsl")],
    )
}

pub(crate) struct Optimizer(Family<u32>);

impl Optimizer {
    pub fn new(device: &wgpu::Device) -> Self {
        Self(Family::new(
            device,
            "optimizer",
            OptimizerBindings::SLOTS,
            source(),
        ))
    }
}

impl Kernels {
    /// One update of `count` parameters (a multiple of 4) by `spec`; `hyper`
    /// holds [`Hyper`]. The grid-stride loop lets any count fit `max_groups`.
    pub fn optimizer(
        &self,
        spec: &OptimizerSpec,
        bindings: OptimizerBindings,
        count: u64,
        max_groups: u32,
    ) -> Launch {
        let family = &self.optimizer.0;
        let rule = rule(spec);
        Launch {
            label: format!("optimizer ({count} parameters)"),
            pipeline: family.pipeline(&self.ctx, rule, &[("RULE", rule as f64)]),
            bind_group: shader::bind_group(&self.ctx.device, &family.layout, bindings.resources()),
            groups: (
                blocks((count / 4) as usize, LINEAR_WORKGROUP).min(max_groups),
                1,
                1,
            ),
            upload: None,
        }
    }
}
