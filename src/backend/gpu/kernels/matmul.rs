//! `C = op(A) · op(B)` with a fused epilogue, in kernels that share one
//! interface: `matmul.wgsl` (any shape), `matmul_tiled.wgsl` (tiles in
//! workgroup memory, any shape), `matmul_split_k.wgsl` (narrow outputs: the
//! reduction split across a workgroup), `matmul_vec4.wgsl` (vec4 loads), and
//! `matmul_subgroup.wgsl` (vec4 loads shared across a subgroup, built for the
//! device's subgroup size) with B in a buffer or in a texture.

use std::collections::HashMap;

use wgpu::{BindingResource, Buffer, Device};

use super::{Dims, Family, Kernels, Launch, Upload};
use crate::backend::gpu::buffers::Region;
use crate::backend::gpu::shader::{self, bindings, flag};
use crate::plan::{BatchDim, Epilogue, MatmulForm};

/// Which WGSL kernel computes a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum MatmulKernel {
    /// `matmul.wgsl`: any shape, 4 x 4 outputs per invocation.
    Scalar,
    /// `matmul_tiled.wgsl`: any shape, workgroups of `side` x `side`
    /// invocations staging A and B in workgroup memory, 4 x 4 outputs each.
    Tiled { side: u32 },
    /// `matmul_split_k.wgsl`: narrow outputs, a workgroup per 2 x 16 block of
    /// C with the reduction split across its invocations.
    SplitK,
    /// `matmul_vec4.wgsl`: vec4 loads, 8 x 8 outputs per invocation.
    Vec4,
    /// `matmul_subgroup.wgsl`: vec4 loads shared across subgroups of exactly
    /// `lanes` lanes; with `texture`, B is copied into a texture before each
    /// dispatch.
    Subgroup { lanes: u32, texture: bool },
}

/// Subgroup sizes the subgroup kernel is built for.
pub(crate) const SUBGROUP_LANES: [u32; 5] = [4, 8, 16, 32, 64];

/// The workgroup sides of the tiled kernel: blocks of C of 32 x 32 and 64 x 64.
const TILED_SIDES: [u32; 2] = [8, 16];

/// Floats of K each tile of the tiled kernel holds.
const TILE_K: u32 = 16;

/// Every kernel a device with `caps` can run, simplest first.
fn kernels_for(caps: MatmulCaps) -> Vec<MatmulKernel> {
    let mut out = vec![MatmulKernel::Scalar];
    out.extend(TILED_SIDES.map(|side| MatmulKernel::Tiled { side }));
    out.extend([MatmulKernel::SplitK, MatmulKernel::Vec4]);
    out.retain(|k| caps.runs(*k));
    if let Some(lanes) = caps.subgroup_lanes {
        for texture in [false, true] {
            out.push(MatmulKernel::Subgroup { lanes, texture });
        }
    }
    out
}

impl MatmulKernel {
    fn files(self) -> Vec<&'static str> {
        let common = include_str!("../../../../shaders/matmul_common.wgsl");
        let epilogue1 = include_str!("../../../../shaders/matmul_epilogue.wgsl");
        let epilogue4 = include_str!("../../../../shaders/matmul_epilogue4.wgsl");
        let subgroup = include_str!("../../../../shaders/matmul_subgroup.wgsl");
        match self {
            Self::Scalar => vec![
                common,
                epilogue1,
                include_str!("../../../../shaders/matmul.wgsl"),
            ],
            Self::Tiled { .. } => vec![
                common,
                epilogue1,
                include_str!("../../../../shaders/matmul_tiled.wgsl"),
            ],
            Self::SplitK => vec![
                common,
                epilogue1,
                include_str!("../../../../shaders/matmul_split_k.wgsl"),
            ],
            Self::Vec4 => vec![
                common,
                epilogue4,
                include_str!("../../../../shaders/matmul_vec4.wgsl"),
            ],
            Self::Subgroup { texture: false, .. } => vec![
                common,
                epilogue4,
                include_str!("../../../../shaders/matmul_subgroup_buffer.wgsl"),
                subgroup,
            ],
            Self::Subgroup { texture: true, .. } => vec![
                common,
                epilogue4,
                include_str!("../../../../shaders/matmul_subgroup_texture.wgsl"),
                subgroup,
            ],
        }
    }

    /// The workgroup's shape and the block of C each invocation computes
    /// (each subgroup, for the subgroup kernels, whose lanes take 4 columns
    /// each). The host passes them in as `WORKGROUP_X`, `WORKGROUP_Y`,
    /// `TILE_ROWS`, `TILE_COLS`; the scalar and vec4 bodies are written for
    /// these values, the tiled and split-K ones for any.
    fn geometry(self) -> Geometry {
        match self {
            Self::Scalar => Geometry {
                workgroup: (8, 8),
                rows: 4,
                cols: 4,
            },
            Self::Tiled { side } => Geometry {
                workgroup: (side, side),
                rows: 4,
                cols: 4,
            },
            // 64 invocations, at least one per output for the final sums.
            Self::SplitK => Geometry {
                workgroup: (64, 1),
                rows: 2,
                cols: 16,
            },
            Self::Vec4 => Geometry {
                workgroup: (8, 8),
                rows: 8,
                cols: 8,
            },
            // 8 subgroups a workgroup (fewer for wide subgroups, so a
            // workgroup stays within WebGPU's default 256 invocations).
            Self::Subgroup { lanes, .. } => Geometry {
                workgroup: (lanes * (256 / lanes).min(8), 1),
                rows: 16,
                cols: 4 * lanes,
            },
        }
    }

    /// Rows and columns of C one workgroup covers.
    fn tile(self) -> (usize, usize) {
        let g = self.geometry();
        let (x, y) = (g.workgroup.0 as usize, g.workgroup.1 as usize);
        match self {
            Self::Scalar | Self::Vec4 | Self::Tiled { .. } => {
                (y * g.rows as usize, x * g.cols as usize)
            }
            Self::SplitK => (g.rows as usize, g.cols as usize),
            // The subgroups stack their row blocks.
            Self::Subgroup { lanes, .. } => (x / lanes as usize * g.rows as usize, g.cols as usize),
        }
    }

    /// A short name for profiles and logs.
    pub fn name(self) -> String {
        match self {
            Self::Scalar => "scalar".into(),
            Self::Tiled { .. } => {
                let (rows, cols) = self.tile();
                format!("tiled{rows}x{cols}")
            }
            Self::SplitK => "split-k".into(),
            Self::Vec4 => "vec4".into(),
            Self::Subgroup { lanes, texture } => {
                format!("subgroup{lanes}{}", if texture { "-texture" } else { "" })
            }
        }
    }

    /// The lines of the NN loop that depend on the subgroup size (see
    /// `matmul_subgroup.wgsl`): each lane loads rows `j * lanes + lane` of the
    /// 16, and row `i` is broadcast from lane `i % lanes` of load `i / lanes`.
    fn subgroup_lines(lanes: u32) -> (String, String) {
        let loads = (16 / lanes).max(1);
        let rows: String = (0..loads)
            .map(|j| {
                format!(
                    "        let r{j} = min(row0 + {}u + lane, m - 1u) * k4;\n",
                    j * lanes
                )
            })
            .collect();
        let mut step: String = (0..loads)
            .map(|j| format!("            let x{j} = a[r{j} + q];\n"))
            .collect();
        for i in 0..16 {
            step += &format!(
                "            acc[{i}] = madd4(subgroupBroadcast(x{}, {}u), y0, y1, y2, y3, acc[{i}]);\n",
                i / lanes,
                i % lanes
            );
        }
        (rows, step)
    }

    /// Bytes of workgroup memory the kernel declares.
    fn workgroup_bytes(self) -> u32 {
        let g = self.geometry();
        match self {
            Self::Tiled { .. } => {
                let (rows, cols) = self.tile();
                4 * TILE_K * (rows + cols) as u32
            }
            Self::SplitK => 4 * g.workgroup.0 * g.rows * g.cols,
            Self::Scalar | Self::Vec4 | Self::Subgroup { .. } => 0,
        }
    }

    /// Whether the kernel loads vec4s (its bindings hold `vec4<f32>`).
    fn vectorised(self) -> bool {
        matches!(self, Self::Vec4 | Self::Subgroup { .. })
    }

    /// The kernel's source: element type, the constants of the forms, its
    /// bindings, then its files.
    fn source(self) -> String {
        let elem = if self.vectorised() {
            "vec4<f32>"
        } else {
            "f32"
        };
        let g = self.geometry();
        let constants = format!(
            "alias Elem = {elem};\n\
             const WORKGROUP_X: u32 = {}u;\nconst WORKGROUP_Y: u32 = {}u;\n\
             const TILE_ROWS: u32 = {}u;\nconst TILE_COLS: u32 = {}u;\nconst TILE_K: u32 = {TILE_K}u;\n\
             const EPILOGUE_NONE: u32 = {}u;\nconst EPILOGUE_BIAS: u32 = {}u;\n\
             const EPILOGUE_BIAS_RELU: u32 = {}u;\nconst EPILOGUE_RELU_MASK: u32 = {}u;\n\
             const BATCH_M: u32 = {}u;\nconst BATCH_K: u32 = {}u;\n",
            g.workgroup.0,
            g.workgroup.1,
            g.rows,
            g.cols,
            epilogue_code(Epilogue::None),
            epilogue_code(Epilogue::Bias),
            epilogue_code(Epilogue::BiasRelu),
            epilogue_code(Epilogue::ReluMask),
            batch_code(BatchDim::M),
            batch_code(BatchDim::K),
        );
        let mut source = shader::source(&[Dims::WGSL, &constants], self.slots(), &self.files());
        if let Self::Subgroup { lanes, .. } = self {
            let (rows, step) = Self::subgroup_lines(lanes);
            source = format!("const LANES: u32 = {lanes}u;\n{source}")
                .replace("//@nn_rows\n", &rows)
                .replace("//@nn_step\n", &step);
        }
        source
    }

    fn slots(self) -> &'static [shader::Slot] {
        if let Self::Subgroup { texture: true, .. } = self {
            MatmulTextureBindings::SLOTS
        } else {
            MatmulBindings::SLOTS
        }
    }
}

/// A matmul kernel's workgroup shape and block of outputs.
struct Geometry {
    workgroup: (u32, u32),
    rows: u32,
    cols: u32,
}

/// The `EPILOGUE` override of the matmul kernels.
fn epilogue_code(e: Epilogue) -> u32 {
    match e {
        Epilogue::None => 0,
        Epilogue::Bias => 1,
        Epilogue::BiasRelu => 2,
        Epilogue::ReluMask => 3,
    }
}

/// The `BATCH_DIM` override of the matmul kernels.
fn batch_code(b: BatchDim) -> u32 {
    match b {
        BatchDim::None => 0,
        BatchDim::M => 1,
        BatchDim::K => 2,
    }
}

bindings! {
    pub(crate) struct MatmulBindings {
        a: Read "array<Elem>",
        b: Read "array<Elem>",
        c: ReadWrite "array<Elem>",
        /// The bias (epilogues with a bias) or the relu mask; any storage
        /// buffer for the others.
        extra: Read "array<Elem>",
        dims: Uniform "Dims",
    }
}

bindings! {
    /// [`MatmulBindings`] with B as an rgba32float texture of (N / 4) x K texels.
    pub(crate) struct MatmulTextureBindings {
        a: Read "array<Elem>",
        b: Texture "texture_2d<f32>",
        c: ReadWrite "array<Elem>",
        extra: Read "array<Elem>",
        dims: Uniform "Dims",
    }
}

/// What the choice of a matmul kernel depends on in a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MatmulCaps {
    /// The subgroup size, when the device has subgroup operations and runs
    /// every subgroup at that one size (min = max, one of [`SUBGROUP_LANES`]).
    pub subgroup_lanes: Option<u32>,
    /// The largest 2D texture side (B as a texture).
    pub max_texture_side: u32,
    /// Invocations a workgroup may have, in all and along x and y.
    pub max_invocations: u32,
    pub max_workgroup: (u32, u32),
    /// Bytes of workgroup memory a kernel may declare.
    pub max_workgroup_bytes: u32,
    /// Workgroups a dispatch may have in each dimension.
    pub max_groups: u32,
}

impl MatmulCaps {
    /// The caps of a device with `limits` and subgroups of exactly
    /// `subgroup_lanes` lanes (if any).
    pub fn new(limits: &wgpu::Limits, subgroup_lanes: Option<u32>) -> Self {
        Self {
            subgroup_lanes,
            max_texture_side: limits.max_texture_dimension_2d,
            max_invocations: limits.max_compute_invocations_per_workgroup,
            max_workgroup: (
                limits.max_compute_workgroup_size_x,
                limits.max_compute_workgroup_size_y,
            ),
            max_workgroup_bytes: limits.max_compute_workgroup_storage_size,
            max_groups: limits.max_compute_workgroups_per_dimension,
        }
    }

    /// Whether the device can build `kernel` (the scalar kernel, the
    /// fallback, is checked at start-up instead: see `checks.rs`).
    fn runs(self, kernel: MatmulKernel) -> bool {
        let (x, y) = kernel.geometry().workgroup;
        kernel == MatmulKernel::Scalar
            || x * y <= self.max_invocations
                && x <= self.max_workgroup.0
                && y <= self.max_workgroup.1
                && kernel.workgroup_bytes() <= self.max_workgroup_bytes
    }
}

/// Whether the vec4 kernels compute `form` for an `m x k x n` problem: the
/// dimensions they load four at a time must be multiples of 4, and never the
/// batch dimension, whose size changes with the last batch.
pub(crate) fn vec4_fits(form: MatmulForm, m: usize, k: usize, n: usize) -> bool {
    let vector_dim_is_batch = match form.batch_dim {
        BatchDim::None => false,
        BatchDim::M => form.transpose_a,
        BatchDim::K => !form.transpose_a,
    };
    let vector_dim = if form.transpose_a { m } else { k };
    !(vector_dim_is_batch || form.transpose_a && form.transpose_b)
        && n.is_multiple_of(4)
        && vector_dim.is_multiple_of(4)
}

/// The fastest kernel that computes `form` at this shape on a device with `caps`.
pub(crate) fn fastest(
    form: MatmulForm,
    m: usize,
    k: usize,
    n: usize,
    caps: MatmulCaps,
) -> MatmulKernel {
    match (vec4_fits(form, m, k, n), caps.subgroup_lanes) {
        (false, _) => MatmulKernel::Scalar,
        (true, Some(lanes)) if !form.transpose_b => MatmulKernel::Subgroup {
            lanes,
            texture: BTexture::fits(k, n, caps.max_texture_side),
        },
        (true, _) => MatmulKernel::Vec4,
    }
}

/// A reduction at least this long has split-K among its candidates.
const LONG_REDUCTION: usize = 4096;

/// Every kernel that computes `form` at this shape on this device, simplest first.
pub(crate) fn candidates(
    form: MatmulForm,
    m: usize,
    k: usize,
    n: usize,
    caps: MatmulCaps,
) -> Vec<MatmulKernel> {
    let (split_rows, split_cols) = MatmulKernel::SplitK.tile();
    // Too few outputs to occupy a GPU, and a reduction worth splitting; or a
    // reduction so long (a convolution's weight gradient over the batch's
    // positions) that splitting it is the parallelism there is, and the
    // only form whose loops stay short: lavapipe miscompiles loops of
    // 32,768 iterations or more, as the tuner's check against the host shows.
    let narrow = (n <= split_cols || m <= split_rows || k >= LONG_REDUCTION) && k >= 64;
    let vec4 = vec4_fits(form, m, k, n);
    let grid_fits = |kernel: &MatmulKernel| {
        let (x, y, _) = groups(*kernel, m, n);
        x.max(y) <= caps.max_groups
    };
    kernels_for(caps)
        .into_iter()
        .filter(|kernel| match *kernel {
            MatmulKernel::Scalar | MatmulKernel::Tiled { .. } => true,
            MatmulKernel::SplitK => narrow,
            MatmulKernel::Vec4 => vec4,
            MatmulKernel::Subgroup { texture, .. } => {
                vec4 && !form.transpose_b
                    && (!texture || BTexture::fits(k, n, caps.max_texture_side))
            }
        })
        .filter(|kernel| *kernel == MatmulKernel::Scalar || grid_fits(kernel))
        .collect()
}

/// The `candidates` the tuner measures on a device: all of them, except on a
/// `software` one (lavapipe, llvmpipe, SwiftShader), where workgroup memory
/// is ordinary memory and a barrier a switch between coroutines, so the
/// tiled kernels never come close (2-27x the best kernel's time on all three:
/// `docs/performance.md`), and compiling them was most of the tuning's time
/// (6 of a page's 8 s on SwiftShader). The conformance suite still checks
/// every candidate.
pub(crate) fn worth_measuring(candidates: Vec<MatmulKernel>, software: bool) -> Vec<MatmulKernel> {
    candidates
        .into_iter()
        .filter(|k| !(software && matches!(k, MatmulKernel::Tiled { .. })))
        .collect()
}

/// The matmul kernels' modules and pipelines (per kernel and form).
pub(crate) struct Matmuls(HashMap<MatmulKernel, Family<MatmulForm>>);

impl Matmuls {
    /// The subgroup kernels are built only for a device with one subgroup size.
    pub fn new(device: &Device, caps: MatmulCaps) -> Self {
        Self(
            kernels_for(caps)
                .into_iter()
                .map(|k| (k, Family::new(device, "matmul", k.slots(), k.source())))
                .collect(),
        )
    }
}

/// The workgroup shapes of the matmul kernels a device with `caps` may run.
pub(crate) fn workgroup_shapes(caps: MatmulCaps) -> impl Iterator<Item = (u32, u32)> {
    kernels_for(caps)
        .into_iter()
        .map(|k| k.geometry().workgroup)
}

/// The workgroup grid of `kernel` for a C of `m x n`.
pub(crate) fn groups(kernel: MatmulKernel, m: usize, n: usize) -> (u32, u32, u32) {
    let (rows, cols) = kernel.tile();
    (
        n.div_ceil(cols).max(1) as u32,
        m.div_ceil(rows).max(1) as u32,
        1,
    )
}

/// The `m x k x n` problem of one launch and the operands it reads.
pub(crate) struct MatmulOperands<'a> {
    pub a: BindingResource<'a>,
    pub b: Region<'a>,
    pub c: BindingResource<'a>,
    /// The epilogue's operand, or any storage buffer.
    pub extra: BindingResource<'a>,
}

impl Kernels {
    /// A launch of `kernel` computing `form` at `m x k x n` (the full
    /// batch), the batch dimension counting `positions` rows per example.
    pub fn matmul(
        &self,
        kernel: MatmulKernel,
        form: MatmulForm,
        (m, k, n): (usize, usize, usize),
        positions: usize,
        operands: MatmulOperands,
    ) -> Launch {
        let device = &self.ctx.device;
        let family = &self.matmul.0[&kernel];
        let dims = self.uniform(
            "dims",
            &Dims {
                m: m as u32,
                k: k as u32,
                n: n as u32,
                positions: positions as u32,
            },
        );
        let texture = matches!(kernel, MatmulKernel::Subgroup { texture: true, .. })
            .then(|| BTexture::new(device, k, n));
        let MatmulOperands { a, b, c, extra } = operands;
        let resources = match &texture {
            Some(texture) => MatmulTextureBindings {
                a,
                b: BindingResource::TextureView(&texture.view),
                c,
                extra,
                dims: dims.as_entire_binding(),
            }
            .resources(),
            None => MatmulBindings {
                a,
                b: b.binding(),
                c,
                extra,
                dims: dims.as_entire_binding(),
            }
            .resources(),
        };
        Launch {
            label: format!("matmul {m}x{k}x{n} {:?} {}", form.epilogue, kernel.name()),
            pipeline: family.pipeline(
                &self.ctx,
                form,
                &[
                    ("TRANSPOSE_A", flag(form.transpose_a)),
                    ("TRANSPOSE_B", flag(form.transpose_b)),
                    ("EPILOGUE", epilogue_code(form.epilogue) as f64),
                    ("BATCH_DIM", batch_code(form.batch_dim) as f64),
                ],
            ),
            bind_group: shader::bind_group(device, &family.layout, resources),
            groups: groups(kernel, m, n),
            upload: texture.map(|texture| Upload {
                buffer: b.buffer.clone(),
                offset: b.offset,
                texture,
            }),
        }
    }
}

/// B of a matmul as an rgba32float texture of (N / 4) x K texels, refreshed from
/// its buffer by a copy before each dispatch (`matmul_subgroup_texture.wgsl`).
pub(crate) struct BTexture {
    pub texture: wgpu::Texture,
    pub view: wgpu::TextureView,
}

impl BTexture {
    /// Whether a K x N operand fits: copies need rows of a multiple of 256
    /// bytes (N % 64 == 0), and both sides within the device's `max_side`.
    pub fn fits(k: usize, n: usize, max_side: u32) -> bool {
        let max_side = max_side as usize;
        n.is_multiple_of(64) && n / 4 <= max_side && k <= max_side
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

#[cfg(test)]
pub(crate) fn all_sources() -> Vec<(String, String)> {
    let caps = |lanes| MatmulCaps::new(&wgpu::Limits::default(), lanes);
    let mut kernels = kernels_for(caps(None));
    for lanes in SUBGROUP_LANES {
        kernels.extend(
            kernels_for(caps(Some(lanes)))
                .into_iter()
                .filter(|k| matches!(k, MatmulKernel::Subgroup { .. })),
        );
    }
    kernels
        .into_iter()
        .map(|k| (format!("matmul {}", k.name()), k.source()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn form(transpose_a: bool, transpose_b: bool, batch_dim: BatchDim) -> MatmulForm {
        MatmulForm {
            transpose_a,
            transpose_b,
            epilogue: Epilogue::None,
            batch_dim,
        }
    }

    fn caps(subgroup_lanes: Option<u32>) -> MatmulCaps {
        MatmulCaps::new(&wgpu::Limits::default(), subgroup_lanes)
    }
    const fn subgroup(lanes: u32, texture: bool) -> MatmulKernel {
        MatmulKernel::Subgroup { lanes, texture }
    }

    #[test]
    fn kernel_choice_follows_shape_and_subgroups() {
        let (eight, none) = (caps(Some(8)), caps(None));
        let forward = form(false, false, BatchDim::M);
        let grad_w = form(true, false, BatchDim::K);
        let grad_in = form(false, true, BatchDim::M);
        // The book's first layer on an 8-lane device: the texture kernel.
        assert_eq!(fastest(forward, 128, 784, 512, eight), subgroup(8, true));
        assert_eq!(fastest(forward, 128, 784, 512, none), MatmulKernel::Vec4);
        // N = 10 is not a multiple of 4: the scalar kernel.
        assert_eq!(fastest(forward, 128, 512, 10, eight), MatmulKernel::Scalar);
        // Xᵀ·delta vectorises along M = fan_in, never along the batch.
        assert!(vec4_fits(grad_w, 784, 128, 512));
        assert!(!vec4_fits(form(true, false, BatchDim::M), 128, 784, 512));
        // B transposed never takes the subgroup kernels; N = 12 is not a texture.
        assert_eq!(fastest(grad_in, 128, 512, 784, eight), MatmulKernel::Vec4);
        assert_eq!(fastest(forward, 4, 8, 12, eight), subgroup(8, false));
        // Any one subgroup size the kernel is built for.
        assert_eq!(
            fastest(forward, 128, 784, 512, caps(Some(16))),
            subgroup(16, true)
        );
        // 8 subgroups of 16 rows; 8 lanes of 4 columns.
        assert_eq!(groups(subgroup(8, false), 128, 512), (16, 1, 1));
        // 4 subgroups of 64 lanes: 64 rows, 256 columns a workgroup.
        assert_eq!(groups(subgroup(64, true), 128, 512), (2, 2, 1));
        assert_eq!(groups(MatmulKernel::Scalar, 1, 1), (1, 1, 1));
        assert_eq!(
            groups(MatmulKernel::Tiled { side: 16 }, 128, 513),
            (9, 2, 1)
        );
        assert_eq!(groups(MatmulKernel::SplitK, 128, 10), (1, 64, 1));
    }

    #[test]
    fn candidates_are_the_kernels_that_fit_the_shape_and_the_device() {
        let forward = form(false, false, BatchDim::M);
        let tiled = TILED_SIDES.map(|side| MatmulKernel::Tiled { side });
        let [t32, t64] = tiled;
        use MatmulKernel::{Scalar, SplitK, Vec4};
        // Any shape: the scalar and tiled kernels.
        assert_eq!(
            candidates(forward, 3, 5, 7, caps(Some(8))),
            [Scalar, t32, t64]
        );
        // The wide layer: everything but split-K.
        assert_eq!(
            candidates(forward, 128, 784, 512, caps(Some(8))),
            [
                Scalar,
                t32,
                t64,
                Vec4,
                subgroup(8, false),
                subgroup(8, true)
            ]
        );
        // The 10-class layer and the column sums (M = 1): split-K too.
        assert_eq!(
            candidates(forward, 128, 512, 10, caps(None)),
            [Scalar, t32, t64, SplitK]
        );
        let sums = form(false, false, BatchDim::K);
        assert_eq!(
            candidates(sums, 1, 128, 512, caps(None)),
            [Scalar, t32, t64, SplitK]
        );
        // A device without room for the 64 x 64 tiles, or 256 invocations.
        let small = wgpu::Limits {
            max_compute_workgroup_storage_size: 4096,
            ..wgpu::Limits::default()
        };
        assert_eq!(
            candidates(forward, 128, 512, 10, MatmulCaps::new(&small, None)),
            [Scalar, t32]
        );
        let narrow = wgpu::Limits {
            max_compute_invocations_per_workgroup: 64,
            ..wgpu::Limits::default()
        };
        assert_eq!(
            candidates(forward, 128, 512, 10, MatmulCaps::new(&narrow, None)),
            [Scalar, t32, SplitK]
        );
        // A grid wider than the device allows.
        let few = wgpu::Limits {
            max_compute_workgroups_per_dimension: 16,
            ..wgpu::Limits::default()
        };
        assert_eq!(
            candidates(forward, 128, 512, 10, MatmulCaps::new(&few, None)),
            [Scalar, t32, t64]
        );
    }
}
