//! The batch from the `u8` data set by example order (`gather.wgsl`): pixel
//! values, one-hot targets, and optionally the batch transposed.

use super::{blocks, Family, Kernels, Launch, Shape};
use crate::backend::gpu::shader::{self, bindings, flag, LINEAR_WORKGROUP};

bindings! {
    pub(crate) struct GatherBindings {
        images: Read "array<u32>",
        labels: Read "array<u32>",
        order: Read "array<u32>",
        x: ReadWrite "array<f32>",
        targets: ReadWrite "array<f32>",
        /// Written only with `transposed`; any storage buffer otherwise.
        xt: ReadWrite "array<f32>",
        shape: Uniform "Shape",
    }
}

pub(crate) fn source() -> String {
    shader::source(
        &[Shape::WGSL],
        GatherBindings::SLOTS,
        &[include_str!("../../../../shaders/gather.wgsl")],
    )
}

/// The grid: an invocation per pixel (and per class, for the one-hot
/// targets) of each of the batch's rows.
pub(crate) fn groups(shape: &Shape) -> (u32, u32, u32) {
    let width = shape.features.max(shape.classes) as usize;
    (blocks(width, LINEAR_WORKGROUP), shape.batch, 1)
}

pub(crate) struct Gather(Family<(bool, bool)>);

impl Gather {
    pub fn new(device: &wgpu::Device) -> Self {
        Self(Family::new(
            device,
            "gather",
            GatherBindings::SLOTS,
            source(),
        ))
    }
}

impl Kernels {
    /// Gathers a step's rows; `shape` holds [`Shape`]. With `transposed`, also
    /// writes the batch as `features x batch` into `xt`, zero past the step's
    /// rows, so `Xᵀ·delta` is a plain product over a fixed K.
    pub fn gather(
        &self,
        bindings: GatherBindings,
        shape: &Shape,
        one_hot: bool,
        transposed: bool,
    ) -> Launch {
        let family = &self.gather.0;
        Launch {
            label: "gather".into(),
            pipeline: family.pipeline(
                &self.ctx,
                (one_hot, transposed),
                &[("ONE_HOT", flag(one_hot)), ("TRANSPOSED", flag(transposed))],
            ),
            bind_group: shader::bind_group(&self.ctx.device, &family.layout, bindings.resources()),
            groups: groups(shape),
            upload: None,
        }
    }
}
