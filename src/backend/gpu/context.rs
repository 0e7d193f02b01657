//! Choosing an adapter and opening a device on it, with the limits this engine needs.

use wgpu::{Adapter, Backends, DeviceType};

use super::kernels::matmul::SUBGROUP_LANES;
use super::GpuError;

/// What `gpu-mnist devices` prints about one adapter.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdapterSummary {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub timestamp_queries: bool,
    pub subgroups: bool,
    /// Lanes per subgroup the adapter may use (0 when it has no subgroups).
    pub subgroup_sizes: (u32, u32),
}

impl AdapterSummary {
    /// A software rasteriser such as lavapipe or llvmpipe: slower than the
    /// CPU device, so used only when asked for by name.
    pub fn is_software(&self) -> bool {
        self.device_type == format!("{:?}", DeviceType::Cpu)
    }
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}] {} ({}, {}, driver: {}) max storage binding {} MiB, max buffer {} MiB, \
             {} invocations/workgroup, {} KiB workgroup memory, timestamps: {}, subgroups: {}",
            self.index,
            self.name,
            self.backend,
            self.device_type,
            self.driver,
            self.max_storage_buffer_binding_size >> 20,
            self.max_buffer_size >> 20,
            self.max_compute_invocations_per_workgroup,
            self.max_compute_workgroup_storage_size >> 10,
            if self.timestamp_queries { "yes" } else { "no" },
            if self.subgroups {
                format!("{}-{} lanes", self.subgroup_sizes.0, self.subgroup_sizes.1)
            } else {
                "no".to_string()
            },
        )
    }
}

fn summarise(index: usize, adapter: &Adapter) -> AdapterSummary {
    let info = adapter.get_info();
    let limits = adapter.limits();
    AdapterSummary {
        index,
        name: info.name.clone(),
        backend: format!("{:?}", info.backend).to_lowercase(),
        device_type: format!("{:?}", info.device_type),
        driver: [info.driver.clone(), info.driver_info.clone()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
        max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
        max_buffer_size: limits.max_buffer_size,
        max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
        max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
        timestamp_queries: adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY),
        subgroups: adapter.features().contains(wgpu::Features::SUBGROUP),
        subgroup_sizes: if adapter.features().contains(wgpu::Features::SUBGROUP) {
            (info.subgroup_min_size, info.subgroup_max_size)
        } else {
            (0, 0)
        },
    }
}

fn instance(backends: Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// Adapters of `backends`, most capable kind first (discrete, integrated,
/// virtual, then software), so index 0 is the one `auto` picks. (A browser
/// offers one, its choice.)
pub async fn adapters(backends: Backends) -> Vec<Adapter> {
    let rank = |t: DeviceType| match t {
        DeviceType::DiscreteGpu => 0,
        DeviceType::IntegratedGpu => 1,
        DeviceType::VirtualGpu => 2,
        DeviceType::Cpu => 3,
        DeviceType::Other => 4,
    };
    let mut found = instance(backends).enumerate_adapters(backends).await;
    found.sort_by_key(|a| rank(a.get_info().device_type));
    found
}

pub async fn list(backends: Backends) -> Vec<AdapterSummary> {
    adapters(backends)
        .await
        .iter()
        .enumerate()
        .map(|(i, a)| summarise(i, a))
        .collect()
}

/// An open device and what it can do (handles: clones share the device).
#[derive(Clone)]
pub(crate) struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub summary: AdapterSummary,
    pub limits: wgpu::Limits,
    /// The subgroup size, when the device runs every subgroup at one size the
    /// subgroup kernel is built for (lavapipe: 4, 8 or 16 lanes).
    pub subgroup_lanes: Option<u32>,
    /// The adapter runs compute shaders (every WebGPU one does; some GL ones not).
    pub compute_shaders: bool,
    /// Errors the device reported on its own (see [`Faults`]).
    pub faults: std::sync::Arc<Faults>,
}

/// The first error the device reported outside any call that returns one: a
/// validation or out-of-memory error (wgpu's default handler would panic), or
/// the device's loss. Checked where the executor hands back control.
#[derive(Debug, Default)]
pub(crate) struct Faults(std::sync::Mutex<Option<String>>);

impl Faults {
    fn record(&self, what: String) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(what);
    }

    /// The recorded fault, as an error (once).
    pub fn check(&self) -> Result<(), GpuError> {
        match self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(what) => Err(GpuError::Device(what)),
            None => Ok(()),
        }
    }

    /// Routes `device`'s uncaptured errors and loss here.
    fn watch(self: &std::sync::Arc<Self>, device: &wgpu::Device) {
        let faults = self.clone();
        device.on_uncaptured_error(std::sync::Arc::new(move |e: wgpu::Error| {
            faults.record(one_line(&e.to_string()));
        }));
        let faults = self.clone();
        device.set_device_lost_callback(move |reason, message| {
            faults.record(one_line(&format!(
                "the device was lost ({reason:?}): {message}"
            )));
        });
    }
}

/// What to do when no adapter of `requested` (as [`backend_names`] writes
/// it) is found: the platform's own APIs exist only on that platform.
pub(crate) fn missing_adapter_hint(requested: &str) -> &'static str {
    match requested {
        "metal" if !cfg!(target_vendor = "apple") => {
            "Metal exists only on Apple systems: use --backend vulkan, gl or cpu"
        }
        "dx12" if !cfg!(windows) => {
            "Direct3D 12 exists only on Windows: use --backend vulkan, gl or cpu"
        }
        _ => {
            "install a driver (on Debian/Ubuntu, `apt-get install mesa-vulkan-drivers` \
             gives a software Vulkan device) or use the CPU"
        }
    }
}

/// wgpu's multi-line error reports (the call, the resource's label, the
/// cause) as one line.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl GpuContext {
    /// [`Self::open_async`], blocking (for tests).
    #[cfg(test)]
    pub fn open(backends: Backends, index: Option<usize>) -> Result<Self, GpuError> {
        pollster::block_on(Self::open_async(backends, index))
    }

    /// Opens adapter `index` (default: the first in [`adapters`] order) of `backends`.
    pub async fn open_async(backends: Backends, index: Option<usize>) -> Result<Self, GpuError> {
        let mut found = adapters(backends).await;
        if found.is_empty() {
            return Err(GpuError::NoAdapter {
                requested: backend_names(backends),
            });
        }
        let index = index.unwrap_or(0);
        if index >= found.len() {
            return Err(GpuError::AdapterIndex {
                index,
                available: found
                    .iter()
                    .enumerate()
                    .map(|(i, a)| summarise(i, a).to_string())
                    .collect(),
            });
        }
        let adapter = found.swap_remove(index);
        let summary = summarise(index, &adapter);
        // Ask for everything the adapter offers: the data set needs a large storage binding.
        let limits = adapter.limits();
        let mut features = wgpu::Features::empty();
        if summary.timestamp_queries {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        if summary.subgroups {
            features |= wgpu::Features::SUBGROUP;
        }
        let info = adapter.get_info();
        let lanes = info.subgroup_min_size;
        let subgroup_lanes = (summary.subgroups
            && info.subgroup_max_size == lanes
            && SUBGROUP_LANES.contains(&lanes))
        .then_some(lanes);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("gpu-mnist"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::RequestDevice(e.to_string()))?;
        let faults = std::sync::Arc::new(Faults::default());
        faults.watch(&device);
        let compute_shaders = adapter
            .get_downlevel_capabilities()
            .flags
            .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS);
        Ok(Self {
            device,
            queue,
            summary,
            limits,
            subgroup_lanes,
            compute_shaders,
            faults,
        })
    }

    /// What the matmul kernel choice depends on.
    pub fn matmul_caps(&self) -> super::kernels::matmul::MatmulCaps {
        super::kernels::matmul::MatmulCaps::new(&self.limits, self.subgroup_lanes)
    }

    /// Byte stride of the step table's entries (the dynamic-offset alignment).
    pub fn step_stride(&self) -> u64 {
        (self.limits.min_uniform_buffer_offset_alignment as u64).max(16)
    }
}

/// Lowercase names of the backends in a set, for messages.
pub fn backend_names(backends: Backends) -> String {
    let names: Vec<&str> = [
        (Backends::VULKAN, "vulkan"),
        (Backends::GL, "gl"),
        (Backends::METAL, "metal"),
        (Backends::DX12, "dx12"),
    ]
    .into_iter()
    .filter(|(b, _)| backends.contains(*b))
    .map(|(_, n)| n)
    .collect();
    names.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn a_missing_platform_api_is_named_as_such() {
        let err = GpuError::NoAdapter {
            requested: backend_names(Backends::METAL),
        };
        assert_eq!(
            err.to_string(),
            "no metal GPU adapter found; Metal exists only on Apple systems: use --backend vulkan, gl or cpu"
        );
        let err = GpuError::NoAdapter {
            requested: backend_names(Backends::VULKAN),
        };
        assert!(err
            .to_string()
            .ends_with("gives a software Vulkan device) or use the CPU"));
    }

    #[test]
    fn a_validation_error_becomes_one_line_instead_of_a_panic() {
        let Ok(ctx) = GpuContext::open(Backends::VULKAN, None) else {
            assert!(
                std::env::var("GPU_MNIST_REQUIRE_ADAPTER").is_err(),
                "no Vulkan adapter"
            );
            return;
        };
        // A buffer beyond the device's limit: wgpu reports it to the handler.
        let _ = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("far too large"),
            size: ctx.limits.max_buffer_size + 4,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let err = ctx.faults.check().unwrap_err().to_string();
        assert!(err.starts_with("the GPU reported an error: "), "{err}");
        assert!(err.contains("far too large"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        // Reported once.
        assert!(ctx.faults.check().is_ok());
    }
}
