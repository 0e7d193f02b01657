//! Which device runs a model: the CPU, a wgpu adapter, or `Auto`.

use crate::backend::gpu::context::{self, AdapterSummary, GpuContext};
use crate::backend::gpu::GpuError;

/// A graphics API wgpu can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuApi {
    /// Whichever the platform offers.
    #[default]
    Any,
    Vulkan,
    Gl,
    Metal,
    Dx12,
}

impl GpuApi {
    pub(crate) fn backends(self) -> wgpu::Backends {
        match self {
            GpuApi::Any => wgpu::Backends::all(),
            GpuApi::Vulkan => wgpu::Backends::VULKAN,
            GpuApi::Gl => wgpu::Backends::GL,
            GpuApi::Metal => wgpu::Backends::METAL,
            GpuApi::Dx12 => wgpu::Backends::DX12,
        }
    }
}

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// A hardware GPU if wgpu finds one, else the CPU. Software adapters
    /// (lavapipe, llvmpipe) are skipped: the CPU device is many times faster
    /// than an emulated GPU. Name them with [`Device::Gpu`].
    #[default]
    Auto,
    Cpu,
    /// Adapter `adapter` of [`adapters`]`(api)` (default: the first, which is
    /// the most capable kind).
    Gpu {
        api: GpuApi,
        adapter: Option<usize>,
    },
}

/// A device, opened.
pub(crate) enum Opened {
    Cpu,
    Gpu(Box<GpuContext>),
}

impl Device {
    /// Opens the device; for `Auto`, also says why it chose it.
    pub(crate) async fn open(&self) -> Result<(Opened, Option<String>), GpuError> {
        match *self {
            Device::Cpu => Ok((Opened::Cpu, None)),
            Device::Gpu { api, adapter } => {
                let ctx = GpuContext::open_async(api.backends(), adapter).await?;
                Ok((Opened::Gpu(Box::new(ctx)), None))
            }
            Device::Auto => {
                let all = adapters_async(GpuApi::Any).await;
                match all.iter().find(|a| !a.is_software()) {
                    Some(hardware) => {
                        let ctx =
                            GpuContext::open_async(GpuApi::Any.backends(), Some(hardware.index))
                                .await?;
                        Ok((Opened::Gpu(Box::new(ctx)), Some("a hardware GPU".into())))
                    }
                    None => {
                        let why = if all.is_empty() {
                            "no GPU adapter"
                        } else {
                            "only software GPU adapters, slower than the CPU; name one to use it"
                        };
                        Ok((Opened::Cpu, Some(why.to_string())))
                    }
                }
            }
        }
    }
}

/// The adapters wgpu finds for `api`, most capable kind first (discrete,
/// integrated, virtual, then software).
#[cfg(not(target_arch = "wasm32"))]
pub fn adapters(api: GpuApi) -> Vec<AdapterSummary> {
    pollster::block_on(adapters_async(api))
}

/// [`adapters`], awaited (in a browser: the one adapter it offers, if any).
pub async fn adapters_async(api: GpuApi) -> Vec<AdapterSummary> {
    context::list(api.backends()).await
}
