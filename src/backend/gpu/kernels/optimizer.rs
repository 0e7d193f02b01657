//! One optimizer update over every parameter at once (`optimizer.wgsl`).

use super::{blocks, override_constants, Family, Kernels, Launch};
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

/// The update rule (the `RULE` override of `optimizer.wgsl`, whose
/// `RULE_*` constants are generated from this list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Rule {
    Sgd = 0,
    SgdMomentum = 1,
    SgdNesterov = 2,
    Rmsprop = 3,
    Adam = 4,
    RmspropMomentum = 5,
}

impl Rule {
    const ALL: [Rule; 6] = [
        Rule::Sgd,
        Rule::SgdMomentum,
        Rule::SgdNesterov,
        Rule::Rmsprop,
        Rule::Adam,
        Rule::RmspropMomentum,
    ];

    fn of(spec: &OptimizerSpec) -> Self {
        match spec.kind {
            OptimizerKind::Sgd if spec.momentum == 0.0 => Rule::Sgd,
            OptimizerKind::Sgd if spec.nesterov => Rule::SgdNesterov,
            OptimizerKind::Sgd => Rule::SgdMomentum,
            OptimizerKind::Rmsprop if spec.momentum == 0.0 => Rule::Rmsprop,
            OptimizerKind::Rmsprop => Rule::RmspropMomentum,
            OptimizerKind::Adam => Rule::Adam,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Rule::Sgd => "sgd",
            Rule::SgdMomentum => "sgd_momentum",
            Rule::SgdNesterov => "sgd_nesterov",
            Rule::Rmsprop => "rmsprop",
            Rule::Adam => "adam",
            Rule::RmspropMomentum => "rmsprop_momentum",
        }
    }
}

bindings! {
    pub(crate) struct OptimizerBindings {
        params: ReadWrite "array<vec4<f32>>",
        grads: Read "array<vec4<f32>>",
        /// The optimizer's slots one after another: slot `s` of vec4 `i` at
        /// `s * count4 + i`.
        state: ReadWrite "array<vec4<f32>>",
        /// Per-step losses, made NaN when a parameter stops being finite.
        loss_sums: ReadWrite "array<f32>",
        hyper: Uniform "Hyper",
    }
}

pub(crate) fn source() -> String {
    let rules = override_constants("RULE", Rule::ALL.map(|r| (r.name(), r as u32)));
    shader::source(
        &[Hyper::WGSL, &rules],
        OptimizerBindings::SLOTS,
        &[include_str!("../../../../shaders/optimizer.wgsl")],
    )
}

pub(crate) struct Optimizer(Family<Rule>);

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
        let rule = Rule::of(spec);
        Launch {
            label: format!("optimizer ({count} parameters)"),
            pipeline: family.pipeline(&self.ctx, rule, &[("RULE", rule as u32 as f64)]),
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
