//! Bias gradients: the column sums of the step's rows (`column_sums.wgsl`).

use wgpu::BindingResource;

use super::{blocks, Dims, Family, Kernels, Launch};
use crate::backend::gpu::shader::{self, bindings, LINEAR_WORKGROUP};

bindings! {
    pub(crate) struct ColumnSumsBindings {
        grad: Read "array<f32>",
        sums: ReadWrite "array<f32>",
        dims: Uniform "Dims",
    }
}

pub(crate) fn source() -> String {
    shader::source(
        &[Dims::WGSL],
        ColumnSumsBindings::SLOTS,
        &[include_str!("../../../../shaders/column_sums.wgsl")],
    )
}

/// The grid: an invocation per column.
pub(crate) fn groups(cols: usize) -> (u32, u32, u32) {
    (blocks(cols, LINEAR_WORKGROUP), 1, 1)
}

pub(crate) struct ColumnSums(Family<()>);

impl ColumnSums {
    pub fn new(device: &wgpu::Device) -> Self {
        Self(Family::new(
            device,
            "column_sums",
            ColumnSumsBindings::SLOTS,
            source(),
        ))
    }
}

impl Kernels {
    /// `sums = column sums of the step's rows of grad` (`cols` wide).
    pub fn column_sums(&self, grad: BindingResource, sums: BindingResource, cols: usize) -> Launch {
        let family = &self.column_sums.0;
        let dims = self.uniform(
            "dims",
            &Dims {
                n: cols as u32,
                ..Default::default()
            },
        );
        let bindings = ColumnSumsBindings {
            grad,
            sums,
            dims: dims.as_entire_binding(),
        };
        Launch {
            label: format!("column_sums ({cols})"),
            pipeline: family.pipeline(&self.ctx, (), &[]),
            bind_group: shader::bind_group(&self.ctx.device, &family.layout, bindings.resources()),
            groups: groups(cols),
            upload: None,
        }
    }
}
