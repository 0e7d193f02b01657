//! Fused softmax + cross-entropy, and the softmax alone for predictions
//! (`softmax_xent.wgsl`).

use super::{Family, Kernels, Launch, Shape};
use crate::backend::gpu::shader::{self, bindings, flag};

/// What the kernel writes (the `MODE` override).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum XentMode {
    /// The loss sum and correct count of the step.
    Loss = 0,
    /// The same and the gradient of the mean loss into `out`.
    LossAndGradient = 1,
    /// Only the class probabilities into `out`.
    Probabilities = 2,
}

bindings! {
    pub(crate) struct XentBindings {
        logits: Read "array<f32>",
        /// The gradient or the probabilities (any storage buffer in `Loss` mode).
        out: ReadWrite "array<f32>",
        labels: Read "array<u32>",
        order: Read "array<u32>",
        targets: Read "array<f32>",
        loss_sums: ReadWrite "array<f32>",
        correct_counts: ReadWrite "array<u32>",
        shape: Uniform "Shape",
    }
}

/// Workgroup memory the kernel's reduction uses: a loss (f32) and a count
/// (u32) per invocation.
pub(crate) const WORKGROUP_BYTES: u32 = 2 * 4 * crate::backend::gpu::shader::LINEAR_WORKGROUP;

pub(crate) fn source() -> String {
    let modes = format!(
        "const MODE_LOSS: u32 = {}u;\nconst MODE_LOSS_AND_GRADIENT: u32 = {}u;\n\
         const MODE_PROBABILITIES: u32 = {}u;\n",
        XentMode::Loss as u32,
        XentMode::LossAndGradient as u32,
        XentMode::Probabilities as u32
    );
    shader::source(
        &[Shape::WGSL, &modes],
        XentBindings::SLOTS,
        &[include_str!("../../../../shaders/softmax_xent.wgsl")],
    )
}

pub(crate) struct SoftmaxXent(Family<(bool, XentMode)>);

impl SoftmaxXent {
    pub fn new(device: &wgpu::Device) -> Self {
        Self(Family::new(
            device,
            "softmax_xent",
            XentBindings::SLOTS,
            source(),
        ))
    }
}

impl Kernels {
    /// The loss (and gradient, or probabilities) of the step's rows, in one
    /// workgroup that reduces in a fixed order: no float atomics, so a seed
    /// gives the same run twice.
    pub fn softmax_xent(
        &self,
        bindings: XentBindings,
        dense_targets: bool,
        mode: XentMode,
    ) -> Launch {
        let family = &self.softmax_xent.0;
        Launch {
            label: match mode {
                XentMode::Probabilities => "softmax".into(),
                _ => "softmax_xent".into(),
            },
            pipeline: family.pipeline(
                &self.ctx,
                (dense_targets, mode),
                &[
                    ("DENSE_TARGETS", flag(dense_targets)),
                    ("MODE", mode as u32 as f64),
                ],
            ),
            bind_group: shader::bind_group(&self.ctx.device, &family.layout, bindings.resources()),
            groups: (1, 1, 1),
            upload: None,
        }
    }
}
