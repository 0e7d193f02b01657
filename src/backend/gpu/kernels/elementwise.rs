//! Element-wise ops over a step's rows (`elementwise.wgsl`): a bias added in
//! place, relu, relu's derivative, and dropout (forward and backward: the
//! same mask, a hash of the seed, the step and the position, as
//! `plan::dropout_hash` computes it on the host).

use super::optimizer::Hyper;
use super::{blocks, override_constants, Family, Kernels, Launch};
use crate::backend::gpu::shader::{self, bindings, uniform_struct, LINEAR_WORKGROUP};
use crate::plan::DropoutMask;

/// Which op (the `OP` override).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ElementwiseOp {
    /// `dst += aux[column]`.
    AddBias = 0,
    /// `dst = relu(src)`.
    Relu = 1,
    /// `dst = src * relu'(aux)`.
    ReluGrad = 2,
    /// `dst = src * keep / (1 - rate)`.
    Dropout = 3,
}

impl ElementwiseOp {
    const ALL: [ElementwiseOp; 4] = [
        ElementwiseOp::AddBias,
        ElementwiseOp::Relu,
        ElementwiseOp::ReluGrad,
        ElementwiseOp::Dropout,
    ];

    fn name(self) -> &'static str {
        match self {
            ElementwiseOp::AddBias => "add_bias",
            ElementwiseOp::Relu => "relu",
            ElementwiseOp::ReluGrad => "relu_grad",
            ElementwiseOp::Dropout => "dropout",
        }
    }
}

uniform_struct! {
    /// An element-wise op's sizes and, for dropout, its mask.
    pub(crate) struct ElementwiseParams {
        /// Values per example.
        width: u32,
        /// The bias's length (`AddBias`; a row holds `width / cols` of them).
        cols: u32,
        /// Dropout: a value whose hash is below this is dropped, a kept one
        /// multiplied by `scale`; the run's seed and the layer's stream.
        threshold: u32,
        scale: f32,
        seed_lo: u32,
        seed_hi: u32,
        stream: u32,
        pad: u32,
    }
}

impl ElementwiseParams {
    pub fn new(width: usize, cols: usize) -> Self {
        Self {
            width: width as u32,
            cols: cols.max(1) as u32,
            ..Self::default()
        }
    }

    /// The parameters of dropout with `mask`, in a run seeded `seed`.
    pub fn dropout(mask: &DropoutMask, seed: u64) -> Self {
        Self {
            threshold: mask.threshold(),
            scale: mask.scale(),
            seed_lo: seed as u32,
            seed_hi: (seed >> 32) as u32,
            stream: mask.stream,
            ..Self::new(mask.width, 1)
        }
    }
}

bindings! {
    pub(crate) struct ElementwiseBindings {
        /// The input (any storage buffer for `AddBias`).
        src: Read "array<f32>",
        /// The bias or the relu mask (any storage buffer otherwise).
        aux: Read "array<f32>",
        dst: ReadWrite "array<f32>",
        /// The optimizer's uniforms: the steps taken before the submitted
        /// window, which the dropout mask depends on.
        hyper: Uniform "Hyper",
        params: Uniform "ElementwiseParams",
    }
}

pub(crate) fn source() -> String {
    let ops = override_constants("OP", ElementwiseOp::ALL.map(|op| (op.name(), op as u32)));
    shader::source(
        &[Hyper::WGSL, ElementwiseParams::WGSL, &ops],
        ElementwiseBindings::SLOTS,
        &[include_str!("../../../../shaders/elementwise.wgsl")],
    )
}

/// The grid: an invocation per value of each of the batch's rows.
pub(crate) fn groups(width: usize, batch: usize) -> (u32, u32, u32) {
    (blocks(width, LINEAR_WORKGROUP), batch as u32, 1)
}

pub(crate) struct Elementwise(Family<ElementwiseOp>);

impl Elementwise {
    pub fn new(device: &wgpu::Device) -> Self {
        Self(Family::new(
            device,
            "elementwise",
            ElementwiseBindings::SLOTS,
            source(),
        ))
    }
}

impl Kernels {
    /// `op` over the step's rows of `params.width` values, for a batch of `batch`.
    pub fn elementwise(
        &self,
        op: ElementwiseOp,
        bindings: ElementwiseBindings,
        width: usize,
        batch: usize,
    ) -> Launch {
        let family = &self.elementwise.0;
        Launch {
            label: op.name().into(),
            pipeline: family.pipeline(&self.ctx, op, &[("OP", op as u32 as f64)]),
            bind_group: shader::bind_group(&self.ctx.device, &family.layout, bindings.resources()),
            groups: groups(width, batch),
            upload: None,
        }
    }
}
