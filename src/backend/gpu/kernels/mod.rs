//! The WGSL kernels. Each module owns one kernel's interface in one place: its
//! WGSL files, uniform structs, bindings, override constants and workgroup
//! grid, and the one method on [`Kernels`] (`Kernels::matmul`,
//! `Kernels::gather`, ...) that turns buffers into a [`Launch`]. Training,
//! profiling, the benches and the tests all launch through it.

pub(crate) mod elementwise;
pub(crate) mod gather;
pub(crate) mod image;
pub(crate) mod matmul;
pub(crate) mod optimizer;
pub(crate) mod softmax_xent;

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use wgpu::{BindGroup, BindGroupLayout, ComputePass, ComputePipeline, Device, ShaderModule};

use super::shader::{self, uniform_struct};

uniform_struct! {
    /// A matrix problem's sizes at the full batch (`matmul_*.wgsl`), and the
    /// rows of its batch dimension per example (a convolution's positions).
    pub(crate) struct Dims {
        m: u32,
        k: u32,
        n: u32,
        positions: u32,
    }
}

uniform_struct! {
    /// The data set's shape (`gather.wgsl`, `softmax_xent.wgsl`).
    pub(crate) struct Shape {
        features: u32,
        classes: u32,
        /// Rows of the batch buffers (the largest step).
        batch: u32,
        pad: u32,
    }
}

impl Shape {
    /// The shape of `plan`'s data and batch.
    pub fn of(plan: &crate::plan::Plan) -> Self {
        Self {
            features: plan.features as u32,
            classes: plan.classes as u32,
            batch: plan.batch as u32,
            pad: 0,
        }
    }
}

/// A copy recorded before a launch (outside any compute pass): a matmul's B
/// from its buffer into the texture the kernel reads.
pub(crate) struct Upload {
    pub buffer: wgpu::Buffer,
    pub offset: u64,
    pub texture: matmul::BTexture,
}

/// One kernel launch, bound and ready to record any number of times.
pub(crate) struct Launch {
    pub label: String,
    pub pipeline: ComputePipeline,
    pub bind_group: BindGroup,
    pub groups: (u32, u32, u32),
    pub upload: Option<Upload>,
}

impl Launch {
    /// Records the dispatch into a pass whose step table is already bound.
    pub fn record(&self, pass: &mut ComputePass) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let (x, y, z) = self.groups;
        pass.dispatch_workgroups(x, y, z);
    }
}

/// One WGSL module with its bind group layout, and its pipelines per
/// specialisation `K`, built on first use.
pub(crate) struct Family<K> {
    label: &'static str,
    module: ShaderModule,
    pub layout: BindGroupLayout,
    pipelines: Mutex<HashMap<K, ComputePipeline>>,
}

impl<K: Hash + Eq + Copy> Family<K> {
    pub fn new(
        device: &Device,
        label: &'static str,
        slots: &[shader::Slot],
        source: String,
    ) -> Self {
        Self {
            label,
            module: shader::module(device, label, source),
            layout: shader::layout(device, label, slots),
            pipelines: Mutex::default(),
        }
    }

    pub fn pipeline(
        &self,
        ctx: &KernelContext,
        key: K,
        constants: &[(&str, f64)],
    ) -> ComputePipeline {
        let mut cache = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(key)
            .or_insert_with(|| {
                shader::pipeline(
                    &ctx.device,
                    self.label,
                    &self.module,
                    &self.layout,
                    &ctx.step_layout,
                    constants,
                )
            })
            .clone()
    }
}

/// What binding a kernel needs of the device.
pub(crate) struct KernelContext {
    pub device: Device,
    pub step_layout: BindGroupLayout,
}

/// Every kernel of one device, compiled once.
pub(crate) struct Kernels {
    pub ctx: KernelContext,
    pub gather: gather::Gather,
    pub elementwise: elementwise::Elementwise,
    pub image: image::Image,
    pub matmul: matmul::Matmuls,
    pub softmax_xent: softmax_xent::SoftmaxXent,
    pub optimizer: optimizer::Optimizer,
}

impl Kernels {
    pub fn new(device: &Device, caps: matmul::MatmulCaps) -> Self {
        Self {
            ctx: KernelContext {
                device: device.clone(),
                step_layout: shader::step_layout(device),
            },
            gather: gather::Gather::new(device),
            elementwise: elementwise::Elementwise::new(device),
            image: image::Image::new(device),
            matmul: matmul::Matmuls::new(device, caps),
            softmax_xent: softmax_xent::SoftmaxXent::new(device),
            optimizer: optimizer::Optimizer::new(device),
        }
    }

    /// A uniform buffer holding `value`.
    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        super::buffers::uniform_with(&self.ctx.device, label, bytemuck::bytes_of(value))
    }
}

/// Every kernel's bindings, by kernel name.
pub(crate) fn all_slots() -> [(&'static str, &'static [shader::Slot]); 7] {
    [
        ("gather", gather::GatherBindings::SLOTS),
        ("elementwise", elementwise::ElementwiseBindings::SLOTS),
        ("image", image::ImageBindings::SLOTS),
        ("softmax_xent", softmax_xent::XentBindings::SLOTS),
        ("matmul", matmul::MatmulBindings::SLOTS),
        (
            "matmul (B in a texture)",
            matmul::MatmulTextureBindings::SLOTS,
        ),
        ("optimizer", optimizer::OptimizerBindings::SLOTS),
    ]
}

/// WGSL constants `{PREFIX}_{NAME}` for the values of a kernel's override
/// (`OP`, `RULE`), so the shader names each value the host defines.
pub(crate) fn override_constants(
    prefix: &str,
    values: impl IntoIterator<Item = (&'static str, u32)>,
) -> String {
    values
        .into_iter()
        .map(|(name, code)| format!("const {prefix}_{}: u32 = {code}u;\n", name.to_uppercase()))
        .collect()
}

/// Workgroups of `per` invocations covering `n`, at least one.
pub(crate) fn blocks(n: usize, per: u32) -> u32 {
    (n.div_ceil(per as usize) as u32).max(1)
}

/// Every kernel's WGSL in every variant, for validation without a device.
#[cfg(test)]
pub(crate) fn all_sources() -> Vec<(String, String)> {
    let mut out = vec![
        ("gather".to_string(), gather::source()),
        ("elementwise".to_string(), elementwise::source()),
        ("image".to_string(), image::source()),
        ("softmax_xent".to_string(), softmax_xent::source()),
        ("optimizer".to_string(), optimizer::source()),
    ];
    out.extend(matmul::all_sources());
    out
}
