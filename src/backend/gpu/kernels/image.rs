//! The image ops over a step's examples (`image.wgsl`), channels-last: a
//! convolution's windows (im2col) and their adjoint (col2im), max-pooling
//! and its gradient. Each invocation writes one value, gathering what it
//! needs (no atomics), summing in the CPU's order.

use super::{blocks, override_constants, Family, Kernels, Launch};
use crate::backend::gpu::shader::{self, bindings, uniform_struct, LINEAR_WORKGROUP};
use crate::plan::{ConvGeometry, PoolGeometry};

/// Which op (the `OP` override).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ImageOp {
    /// `dst` = the windows of `src`, `positions x patch` per example.
    Im2col = 0,
    /// `dst` = each input value's sum over the windows (`src`) reading it.
    Col2im = 1,
    /// `dst` = each window's maximum of `src`.
    MaxPool = 2,
    /// `dst` = the gradient `grad` at each window's first maximum of `src`.
    MaxPoolGrad = 3,
}

impl ImageOp {
    const ALL: [ImageOp; 4] = [
        ImageOp::Im2col,
        ImageOp::Col2im,
        ImageOp::MaxPool,
        ImageOp::MaxPoolGrad,
    ];

    fn name(self) -> &'static str {
        match self {
            ImageOp::Im2col => "im2col",
            ImageOp::Col2im => "col2im",
            ImageOp::MaxPool => "max_pool",
            ImageOp::MaxPoolGrad => "max_pool_grad",
        }
    }
}

uniform_struct! {
    /// An image op's geometry: the input image, the window (`size`: a
    /// convolution's kernel or the pool's), padding and output.
    pub(crate) struct ImageParams {
        height: u32,
        width: u32,
        channels: u32,
        size: u32,
        pad_top: u32,
        pad_left: u32,
        out_height: u32,
        out_width: u32,
        /// Values per example the invocations cover (the output of
        /// `Im2col` and `MaxPool`, the input of `Col2im` and `MaxPoolGrad`).
        count: u32,
        /// `MaxPoolGrad`: 1 to apply relu's derivative at the maximum.
        relu: u32,
        pad0: u32,
        pad1: u32,
    }
}

impl ImageParams {
    pub fn conv(op: ImageOp, conv: &ConvGeometry) -> Self {
        Self {
            height: conv.input.height as u32,
            width: conv.input.width as u32,
            channels: conv.input.channels as u32,
            size: conv.kernel as u32,
            pad_top: conv.pad_top as u32,
            pad_left: conv.pad_left as u32,
            out_height: conv.out_height as u32,
            out_width: conv.out_width as u32,
            count: match op {
                ImageOp::Im2col => conv.positions() * conv.patch(),
                _ => conv.input.len(),
            } as u32,
            ..Self::default()
        }
    }

    pub fn pool(op: ImageOp, pool: &PoolGeometry, relu: bool) -> Self {
        Self {
            height: pool.input.height as u32,
            width: pool.input.width as u32,
            channels: pool.input.channels as u32,
            size: pool.size as u32,
            out_height: pool.out_height as u32,
            out_width: pool.out_width as u32,
            count: match op {
                ImageOp::MaxPool => pool.output_len(),
                _ => pool.input.len(),
            } as u32,
            relu: relu as u32,
            ..Self::default()
        }
    }
}

bindings! {
    pub(crate) struct ImageBindings {
        src: Read "array<f32>",
        /// `MaxPoolGrad`: the gradient at the pool's output (any storage
        /// buffer otherwise).
        grad: Read "array<f32>",
        dst: ReadWrite "array<f32>",
        params: Uniform "ImageParams",
    }
}

pub(crate) fn source() -> String {
    let ops = override_constants("OP", ImageOp::ALL.map(|op| (op.name(), op as u32)));
    shader::source(
        &[ImageParams::WGSL, &ops],
        ImageBindings::SLOTS,
        &[include_str!("../../../../shaders/image.wgsl")],
    )
}

/// The grid: an invocation per value of each of the batch's examples.
pub(crate) fn groups(count: u32, batch: usize) -> (u32, u32, u32) {
    (blocks(count as usize, LINEAR_WORKGROUP), batch as u32, 1)
}

pub(crate) struct Image(Family<ImageOp>);

impl Image {
    pub fn new(device: &wgpu::Device) -> Self {
        Self(Family::new(device, "image", ImageBindings::SLOTS, source()))
    }
}

impl Kernels {
    /// `op` over the step's examples of a batch of `batch`.
    pub fn image(
        &self,
        op: ImageOp,
        bindings: ImageBindings,
        params: &ImageParams,
        batch: usize,
    ) -> Launch {
        let family = &self.image.0;
        Launch {
            label: op.name().into(),
            pipeline: family.pipeline(&self.ctx, op, &[("OP", op as u32 as f64)]),
            bind_group: shader::bind_group(&self.ctx.device, &family.layout, bindings.resources()),
            groups: groups(params.count, batch),
            upload: None,
        }
    }
}
