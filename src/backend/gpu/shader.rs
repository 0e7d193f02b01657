//! How a kernel's WGSL is assembled: the Rust side owns every fact the host and
//! the shader share (uniform structs, binding declarations, constants), and
//! writes them as WGSL in front of the kernel's own file, so nothing is
//! mirrored by hand.

use wgpu::{BindGroupLayout, BindingResource, Device};

/// Invocations per workgroup of the one-dimensional kernels (`LINEAR_WORKGROUP`
/// in WGSL).
pub(crate) const LINEAR_WORKGROUP: u32 = 64;

/// A `#[repr(C)]` uniform struct of `u32`/`f32` fields and its WGSL declaration
/// (`Self::WGSL`), from one definition. Uniform structs are 16-byte multiples.
macro_rules! uniform_struct {
    ($(#[$meta:meta])* $vis:vis struct $name:ident {
        $($(#[$fmeta:meta])* $field:ident : $ty:ident),* $(,)?
    }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name { $($(#[$fmeta])* pub $field: $ty),* }

        impl $name {
            pub const WGSL: &'static str = concat!(
                "struct ", stringify!($name), " {\n",
                $("    ", stringify!($field), ": ", stringify!($ty), ",\n",)*
                "}\n"
            );
        }

        const _: () = assert!(std::mem::size_of::<$name>() % 16 == 0);
    };
}
pub(crate) use uniform_struct;

/// How a kernel accesses one binding of group 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    ReadWrite,
    Uniform,
    /// A sampled 2D float texture read with `textureLoad`.
    Texture,
}

/// One binding of group 0: its WGSL name, access and type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub name: &'static str,
    pub access: Access,
    pub ty: &'static str,
}

/// A kernel's bind group as a struct whose fields are its bindings in order:
/// the struct, the WGSL declarations and the layout come from this one list.
macro_rules! bindings {
    ($(#[$meta:meta])* $vis:vis struct $name:ident {
        $($(#[$fmeta:meta])* $field:ident : $access:ident $ty:literal),* $(,)?
    }) => {
        $(#[$meta])*
        $vis struct $name<'a> { $($(#[$fmeta])* pub $field: wgpu::BindingResource<'a>),* }

        impl<'a> $name<'a> {
            pub const SLOTS: &'static [$crate::backend::gpu::shader::Slot] = &[$(
                $crate::backend::gpu::shader::Slot {
                    name: stringify!($field),
                    access: $crate::backend::gpu::shader::Access::$access,
                    ty: $ty,
                }
            ),*];

            pub fn resources(self) -> Vec<wgpu::BindingResource<'a>> {
                vec![$(self.$field),*]
            }
        }
    };
}
pub(crate) use bindings;

uniform_struct! {
    /// Per-step parameters every kernel reads (bind group 1, selected by a
    /// dynamic offset into the step table).
    pub(crate) struct Step {
        /// Rows of this step (smaller for the last, partial batch).
        rows: u32,
        /// Where the step's rows start in the example order.
        row_offset: u32,
        /// The step's slot in the per-step metric arrays.
        slot: u32,
        pad: u32,
    }
}

/// WGSL declarations of `slots` as group 0, in binding order.
fn declarations(slots: &[Slot]) -> String {
    slots
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let var = match s.access {
                Access::Read => "var<storage, read>",
                Access::ReadWrite => "var<storage, read_write>",
                Access::Uniform => "var<uniform>",
                Access::Texture => "var",
            };
            format!("@group(0) @binding({i}) {var} {}: {};\n", s.name, s.ty)
        })
        .collect()
}

/// The full source of a kernel: shared constants, the step uniform, the
/// kernel's structs and bindings, then its files in order.
pub(crate) fn source(structs: &[&str], slots: &[Slot], files: &[&str]) -> String {
    let mut out = format!(
        "const LINEAR_WORKGROUP: u32 = {LINEAR_WORKGROUP}u;\n\
         const PIXEL_SCALE: f32 = {:?};\n{}\
         @group(1) @binding(0) var<uniform> step: Step;\n",
        crate::data::PIXEL_SCALE,
        Step::WGSL
    );
    for s in structs {
        out.push_str(s);
    }
    out.push_str(&declarations(slots));
    for f in files {
        out.push_str(f);
    }
    out
}

/// The bind group layout of `slots` for a compute kernel.
pub(crate) fn layout(device: &Device, label: &str, slots: &[Slot]) -> BindGroupLayout {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = slots
        .iter()
        .enumerate()
        .map(|(i, s)| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: match s.access {
                Access::Texture => wgpu::BindingType::Texture {
                    sample_type: wgpu::TextureSampleType::Float { filterable: false },
                    view_dimension: wgpu::TextureViewDimension::D2,
                    multisampled: false,
                },
                Access::Read | Access::ReadWrite => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: s.access == Access::Read,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                Access::Uniform => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
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

/// The layout of bind group 1: the step table's entry, by dynamic offset.
pub(crate) fn step_layout(device: &Device) -> BindGroupLayout {
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("step"),
        entries: &[wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: true,
                min_binding_size: wgpu::BufferSize::new(std::mem::size_of::<Step>() as u64),
            },
            count: None,
        }],
    })
}

/// A bind group of `resources` in binding order.
pub(crate) fn bind_group(
    device: &Device,
    layout: &BindGroupLayout,
    resources: Vec<BindingResource>,
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = resources
        .into_iter()
        .enumerate()
        .map(|(i, resource)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource,
        })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout,
        entries: &entries,
    })
}

/// A compute pipeline of `module`'s `main` over group 0 `layout` and the step
/// table, specialised by override `constants`.
pub(crate) fn pipeline(
    device: &Device,
    label: &str,
    module: &wgpu::ShaderModule,
    layout: &BindGroupLayout,
    step_layout: &BindGroupLayout,
    constants: &[(&str, f64)],
) -> wgpu::ComputePipeline {
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(label),
        bind_group_layouts: &[Some(layout), Some(step_layout)],
        immediate_size: 0,
    });
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
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

/// A shader module from WGSL source.
pub(crate) fn module(device: &Device, label: &str, source: String) -> wgpu::ShaderModule {
    device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    })
}

/// A boolean override constant's value.
pub(crate) fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}
