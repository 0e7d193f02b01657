//! The WGSL kernels: bind group layouts, and pipelines specialised through
//! override constants, built once and reused for every step.

use std::collections::HashMap;
use std::sync::Mutex;

use wgpu::{BindGroupLayout, BindingResource, Buffer, ComputePipeline, Device, ShaderModule};

/// Every kernel source is prefixed with `step.wgsl`, the per-step uniform, and
/// the matmul kernels also with `matmul_common.wgsl` (and the vec4 ones with
/// `matmul_epilogue4.wgsl`).
macro_rules! kernel_source {
    ($($file:literal),+) => {
        concat!(
            include_str!("../../../shaders/step.wgsl"),
            $(include_str!(concat!("../../../shaders/", $file))),+
        )
    };
}

/// The fused operation after a matmul (see `matmul.wgsl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Epilogue {
    None = 0,
    Bias = 1,
    BiasRelu = 2,
    ReluMask = 3,
}

/// Which matmul dimension is the batch and takes the step's row count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchDim {
    None = 0,
    M = 1,
    K = 2,
}

/// Which WGSL matmul computes a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatmulKernel {
    /// `matmul.wgsl`: any shape, 4 x 4 outputs per invocation.
    Scalar,
    /// `matmul_vec4.wgsl`: vec4 loads, 8 x 8 outputs per invocation.
    Vec4,
    /// `matmul_subgroup.wgsl`: vec4 loads shared across 8-lane subgroups.
    Subgroup8,
    /// The same with B copied into a texture before each dispatch.
    Subgroup8Texture,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MatmulVariant {
    pub transpose_a: bool,
    pub transpose_b: bool,
    pub epilogue: Epilogue,
    pub batch_dim: BatchDim,
    pub kernel: MatmulKernel,
}

impl MatmulVariant {
    /// A form on the scalar kernel (any shape); see [`Self::fastest_for`].
    pub fn new(
        transpose_a: bool,
        transpose_b: bool,
        epilogue: Epilogue,
        batch_dim: BatchDim,
    ) -> Self {
        Self {
            transpose_a,
            transpose_b,
            epilogue,
            batch_dim,
            kernel: MatmulKernel::Scalar,
        }
    }

    /// Whether the vec4 kernels compute this form for an `m x k x n` problem:
    /// the dimensions they load four at a time must be multiples of 4, and never
    /// the batch dimension, whose size changes with the last batch.
    pub fn vec4_fits(&self, m: usize, k: usize, n: usize) -> bool {
        let vector_dim_is_batch = match self.batch_dim {
            BatchDim::None => false,
            BatchDim::M => self.transpose_a,
            BatchDim::K => !self.transpose_a,
        };
        let vector_dim = if self.transpose_a { m } else { k };
        !(vector_dim_is_batch || self.transpose_a && self.transpose_b)
            && n.is_multiple_of(4)
            && vector_dim.is_multiple_of(4)
    }

    /// This form with the fastest kernel that fits the shape; `subgroups_of_8`
    /// says whether the device runs subgroups of exactly 8 lanes.
    pub fn fastest_for(self, m: usize, k: usize, n: usize, subgroups_of_8: bool) -> Self {
        let kernel = match (self.vec4_fits(m, k, n), subgroups_of_8 && !self.transpose_b) {
            (false, _) => MatmulKernel::Scalar,
            (true, false) => MatmulKernel::Vec4,
            (true, true) if BTexture::fits(k, n) => MatmulKernel::Subgroup8Texture,
            (true, true) => MatmulKernel::Subgroup8,
        };
        Self { kernel, ..self }
    }
}

/// Workgroups of a matmul whose C is `m x n`. A workgroup covers 8 x 8
/// invocations of 4 x 4 outputs (scalar) or 8 x 8 outputs (vec4), or 8 subgroups
/// of 16 rows x 32 columns (subgroup).
pub fn matmul_groups(variant: MatmulVariant, m: usize, n: usize) -> (u32, u32, u32) {
    let (rows, cols) = match variant.kernel {
        MatmulKernel::Scalar => (32, 32),
        MatmulKernel::Vec4 => (64, 64),
        MatmulKernel::Subgroup8 | MatmulKernel::Subgroup8Texture => (128, 32),
    };
    (
        n.div_ceil(cols).max(1) as u32,
        m.div_ceil(rows).max(1) as u32,
        1,
    )
}

/// Invocations per workgroup of the one-dimensional kernels.
pub const LINEAR_WORKGROUP: u32 = 64;

/// Matches `Dims` in the WGSL sources.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Dims {
    pub m: u32,
    pub k: u32,
    pub n: u32,
    pub _pad: u32,
}

/// Matches `Shape` in `gather.wgsl` and `softmax_xent.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Shape {
    pub features: u32,
    pub classes: u32,
    /// Rows of the batch buffers (the largest step).
    pub batch: u32,
    pub _pad: u32,
}

/// Matches `Step` in `step.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepParams {
    pub rows: u32,
    pub row_offset: u32,
    pub slot: u32,
    pub _pad: u32,
}

/// Matches `Hyper` in `optimizer.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Hyper {
    pub lr: f32,
    pub momentum: f32,
    pub rho: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
    /// Parameters / 4: the kernel updates a vec4 at a time.
    pub count4: u32,
    pub steps_before: u32,
}

/// Byte offset of `Hyper::steps_before`, rewritten once per epoch.
pub const STEPS_BEFORE_OFFSET: u64 = 28;

#[derive(Clone, Copy)]
enum Binding {
    Texture,
    Read,
    ReadWrite,
    Uniform,
    DynamicUniform,
}

fn layout(device: &Device, label: &str, bindings: &[Binding]) -> BindGroupLayout {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: match b {
                Binding::Texture => wgpu::BindingType::Texture {
                    sample_type: wgpu::TextureSampleType::Float { filterable: false },
                    view_dimension: wgpu::TextureViewDimension::D2,
                    multisampled: false,
                },
                Binding::Read | Binding::ReadWrite => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: matches!(b, Binding::Read),
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                Binding::Uniform | Binding::DynamicUniform => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: matches!(b, Binding::DynamicUniform),
                    min_binding_size: None,
                },
            },
            count: None,
        })
        .collect();
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(label),
        entries: &entries,
    })
}

pub struct Kernels {
    device: Device,
    pub step_layout: BindGroupLayout,
    pub matmul_layout: BindGroupLayout,
    /// `matmul_layout` with B as a texture.
    pub matmul_texture_layout: BindGroupLayout,
    pub gather_layout: BindGroupLayout,
    pub xent_layout: BindGroupLayout,
    pub column_sums_layout: BindGroupLayout,
    pub optimizer_layout: BindGroupLayout,
    matmul: ShaderModule,
    matmul_vec4: ShaderModule,
    /// B in a buffer and in a texture; built only on devices with subgroups.
    matmul_subgroup: Option<[ShaderModule; 2]>,
    matmuls: Mutex<HashMap<MatmulVariant, ComputePipeline>>,
    gather: ShaderModule,
    xent: ShaderModule,
    column_sums: ShaderModule,
    optimizer: ShaderModule,
}

impl Kernels {
    /// `subgroups`: the device was opened with `Features::SUBGROUP`.
    pub fn new(device: &Device, subgroups: bool) -> Self {
        use Binding::*;
        let module = |label: &str, source: &'static str| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            })
        };
        Self {
            device: device.clone(),
            step_layout: layout(device, "step", &[DynamicUniform]),
            matmul_layout: layout(device, "matmul", &[Read, Read, ReadWrite, Read, Uniform]),
            matmul_texture_layout: layout(
                device,
                "matmul",
                &[Read, Texture, ReadWrite, Read, Uniform],
            ),
            gather_layout: layout(
                device,
                "gather",
                &[Read, Read, Read, ReadWrite, ReadWrite, Uniform, ReadWrite],
            ),
            xent_layout: layout(
                device,
                "softmax_xent",
                &[
                    Read, ReadWrite, Read, Read, Read, ReadWrite, ReadWrite, Uniform,
                ],
            ),
            column_sums_layout: layout(device, "column_sums", &[Read, ReadWrite, Uniform]),
            optimizer_layout: layout(
                device,
                "optimizer",
                &[ReadWrite, Read, ReadWrite, ReadWrite, Uniform],
            ),
            matmul: module(
                "matmul",
                kernel_source!("matmul_common.wgsl", "matmul.wgsl"),
            ),
            matmul_vec4: module(
                "matmul_vec4",
                kernel_source!(
                    "matmul_common.wgsl",
                    "matmul_epilogue4.wgsl",
                    "matmul_vec4.wgsl"
                ),
            ),
            matmul_subgroup: subgroups.then(|| {
                [
                    module(
                        "matmul_subgroup",
                        kernel_source!(
                            "matmul_common.wgsl",
                            "matmul_epilogue4.wgsl",
                            "matmul_subgroup_buffer.wgsl",
                            "matmul_subgroup.wgsl"
                        ),
                    ),
                    module(
                        "matmul_subgroup_texture",
                        kernel_source!(
                            "matmul_common.wgsl",
                            "matmul_epilogue4.wgsl",
                            "matmul_subgroup_texture.wgsl",
                            "matmul_subgroup.wgsl"
                        ),
                    ),
                ]
            }),
            matmuls: Mutex::default(),
            gather: module("gather", kernel_source!("gather.wgsl")),
            xent: module("softmax_xent", kernel_source!("softmax_xent.wgsl")),
            column_sums: module("column_sums", kernel_source!("column_sums.wgsl")),
            optimizer: module("optimizer", kernel_source!("optimizer.wgsl")),
        }
    }

    fn pipeline(
        &self,
        label: &str,
        module: &ShaderModule,
        layout: &BindGroupLayout,
        constants: &[(&str, f64)],
    ) -> ComputePipeline {
        let pipeline_layout = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(label),
                bind_group_layouts: &[Some(layout), Some(&self.step_layout)],
                immediate_size: 0,
            });
        self.device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout: Some(&pipeline_layout),
                module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            })
    }

    /// The pipeline of a matmul variant, built on first use (layers of the same
    /// shape share one).
    pub fn matmul(&self, v: MatmulVariant) -> ComputePipeline {
        let mut cache = self.matmuls.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(v)
            .or_insert_with(|| self.build_matmul(v))
            .clone()
    }

    fn build_matmul(&self, v: MatmulVariant) -> ComputePipeline {
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let subgroup = |i: usize| {
            &self
                .matmul_subgroup
                .as_ref()
                .expect("subgroup kernels are chosen only on devices with subgroups")[i]
        };
        let module = match v.kernel {
            MatmulKernel::Scalar => &self.matmul,
            MatmulKernel::Vec4 => &self.matmul_vec4,
            MatmulKernel::Subgroup8 => subgroup(0),
            MatmulKernel::Subgroup8Texture => subgroup(1),
        };
        self.pipeline(
            "matmul",
            module,
            self.matmul_layout_for(v),
            &[
                ("TRANSPOSE_A", flag(v.transpose_a)),
                ("TRANSPOSE_B", flag(v.transpose_b)),
                ("EPILOGUE", v.epilogue as u32 as f64),
                ("BATCH_DIM", v.batch_dim as u32 as f64),
            ],
        )
    }

    /// The bind group layout of a matmul variant's kernel.
    pub fn matmul_layout_for(&self, v: MatmulVariant) -> &BindGroupLayout {
        if v.kernel == MatmulKernel::Subgroup8Texture {
            &self.matmul_texture_layout
        } else {
            &self.matmul_layout
        }
    }

    /// `transposed`: also write the batch transposed (see `gather.wgsl`).
    pub fn gather(&self, one_hot: bool, transposed: bool) -> ComputePipeline {
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        self.pipeline(
            "gather",
            &self.gather,
            &self.gather_layout,
            &[("ONE_HOT", flag(one_hot)), ("TRANSPOSED", flag(transposed))],
        )
    }

    pub fn softmax_xent(&self, dense_targets: bool, write_grad: bool) -> ComputePipeline {
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        self.pipeline(
            "softmax_xent",
            &self.xent,
            &self.xent_layout,
            &[
                ("DENSE_TARGETS", flag(dense_targets)),
                ("WRITE_GRAD", flag(write_grad)),
            ],
        )
    }

    pub fn column_sums(&self) -> ComputePipeline {
        self.pipeline(
            "column_sums",
            &self.column_sums,
            &self.column_sums_layout,
            &[],
        )
    }

    /// `rule` as in `optimizer.wgsl`: 0 sgd, 1 momentum, 2 nesterov, 3 rmsprop, 4 adam.
    pub fn optimizer(&self, rule: u32) -> ComputePipeline {
        self.pipeline(
            "optimizer",
            &self.optimizer,
            &self.optimizer_layout,
            &[("RULE", rule as f64)],
        )
    }

    /// A bind group over whole buffers or sub-ranges, bound in order.
    pub fn bind_group(
        &self,
        layout: &BindGroupLayout,
        resources: &[BindingResource],
    ) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = resources
            .iter()
            .enumerate()
            .map(|(i, r)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: r.clone(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout,
            entries: &entries,
        })
    }
}

/// B of a matmul as an rgba32float texture of (N / 4) x K texels, refreshed from
/// its buffer by a copy before each dispatch (`matmul_subgroup_texture.wgsl`).
pub struct BTexture {
    pub texture: wgpu::Texture,
    pub view: wgpu::TextureView,
}

impl BTexture {
    /// Texture sides every WebGPU device supports.
    const MAX_SIDE: usize = 8192;

    /// Whether a K x N operand fits: copies need rows of a multiple of 256
    /// bytes (N % 64 == 0) and both sides within the guaranteed limit.
    pub fn fits(k: usize, n: usize) -> bool {
        n.is_multiple_of(64) && n / 4 <= Self::MAX_SIDE && k <= Self::MAX_SIDE
    }

    pub fn new(device: &Device, k: usize, n: usize) -> Self {
        let texture = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("matmul B"),
            size: wgpu::Extent3d {
                width: (n / 4) as u32,
                height: k as u32,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Float,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let view = texture.create_view(&Default::default());
        Self { texture, view }
    }

    /// Records the copy of the K x N row-major matrix at `offset` of `buffer`.
    pub fn record_copy(&self, encoder: &mut wgpu::CommandEncoder, buffer: &Buffer, offset: u64) {
        let size = self.texture.size();
        encoder.copy_buffer_to_texture(
            wgpu::TexelCopyBufferInfo {
                buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset,
                    bytes_per_row: Some(16 * size.width),
                    rows_per_image: Some(size.height),
                },
            },
            self.texture.as_image_copy(),
            size,
        );
    }
}

/// The whole of a buffer as a binding.
pub fn whole(buffer: &Buffer) -> BindingResource<'_> {
    buffer.as_entire_binding()
}
