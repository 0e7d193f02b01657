//! Device buffers: creation, regions of them, the per-step uniform table, and
//! read-backs. Read-backs are futures: the core awaits them and never blocks;
//! [`Driver::block_on`](crate::backend::host::Driver::block_on) is the native
//! host's edge that drives the device meanwhile.

use std::sync::{Arc, Mutex};

use futures_intrusive::channel::shared::{oneshot_channel, OneshotReceiver};
use wgpu::util::DeviceExt;
use wgpu::{BindingResource, Buffer, BufferUsages, Device, Queue, SubmissionIndex};

use super::shader::{self, Step};
use super::GpuError;
use crate::backend::Counters;

/// WGSL storage arrays may not be empty, and copies move multiples of 4 bytes.
fn padded(len: u64) -> u64 {
    len.max(16).next_multiple_of(4)
}

pub(crate) fn storage(device: &Device, label: &str, bytes: u64) -> Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: padded(bytes),
        usage: BufferUsages::STORAGE | BufferUsages::COPY_DST | BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

/// A storage buffer holding `bytes` (zero-padded to a valid size).
pub(crate) fn storage_with(device: &Device, label: &str, bytes: &[u8]) -> Buffer {
    let mut contents = bytes.to_vec();
    contents.resize(padded(bytes.len() as u64) as usize, 0);
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: &contents,
        usage: BufferUsages::STORAGE | BufferUsages::COPY_DST | BufferUsages::COPY_SRC,
    })
}

pub(crate) fn uniform_with(device: &Device, label: &str, bytes: &[u8]) -> Buffer {
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: bytes,
        usage: BufferUsages::UNIFORM | BufferUsages::COPY_DST,
    })
}

/// Bytes packed four to a `u32` word, as the WGSL kernels read `u8` data.
pub(crate) fn pack_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut packed = bytes.to_vec();
    packed.resize(bytes.len().next_multiple_of(4), 0);
    packed
}

/// Little-endian `f32`s from bytes of any alignment.
pub(crate) fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

pub(crate) fn u32s(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// `size` bytes at `offset` of a buffer: what one plan buffer occupies.
#[derive(Clone, Copy)]
pub(crate) struct Region<'a> {
    pub buffer: &'a Buffer,
    pub offset: u64,
    pub size: u64,
}

impl<'a> Region<'a> {
    pub fn whole(buffer: &'a Buffer) -> Self {
        Self {
            buffer,
            offset: 0,
            size: buffer.size(),
        }
    }

    pub fn binding(&self) -> BindingResource<'a> {
        BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buffer,
            offset: self.offset,
            size: wgpu::BufferSize::new(padded(self.size)),
        })
    }
}

/// The submission a pending read-back waits for. The async core records it;
/// whoever drives the device (the native `Driver::block_on`, or a browser's event
/// loop) waits for that submission and polls the core again.
#[derive(Default)]
pub(crate) struct DeviceWaits(Mutex<Option<SubmissionIndex>>);

impl DeviceWaits {
    fn want(&self, submission: SubmissionIndex) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(submission);
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn take(&self) -> Option<SubmissionIndex> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Waits until the device has run `submission`.
pub(crate) async fn work_done(
    queue: &Queue,
    waits: &DeviceWaits,
    submission: SubmissionIndex,
) -> Result<(), GpuError> {
    let (sender, receiver) = oneshot_channel();
    queue.on_submitted_work_done(move || {
        // The receiver only goes away with the device; nothing to report then.
        let _ = sender.send(());
    });
    waits.want(submission);
    receiver
        .receive()
        .await
        .ok_or_else(|| GpuError::Device("the device was lost".into()))
}

/// A `map_async` under way on a staging buffer.
struct PendingMap {
    submission: SubmissionIndex,
    receiver: OneshotReceiver<Result<(), wgpu::BufferAsyncError>>,
}

impl PendingMap {
    fn start(staging: &Buffer, submission: SubmissionIndex) -> Self {
        let (sender, receiver) = oneshot_channel();
        staging.map_async(wgpu::MapMode::Read, .., move |result| {
            // The receiver only goes away with the device; nothing to report then.
            let _ = sender.send(result);
        });
        Self {
            submission,
            receiver,
        }
    }

    /// Waits for the copy and the mapping, then copies the first `size` bytes
    /// out and unmaps the buffer for its next use.
    async fn bytes(
        self,
        waits: &DeviceWaits,
        staging: &Buffer,
        size: u64,
        counters: &mut Counters,
    ) -> Result<Vec<u8>, GpuError> {
        waits.want(self.submission);
        counters.blocking_syncs += 1;
        match self.receiver.receive().await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(GpuError::Device(e.to_string())),
            None => return Err(GpuError::Device("the buffer mapping was dropped".into())),
        }
        let bytes = staging
            .get_mapped_range(..size)
            .map_err(|e| GpuError::Device(e.to_string()))?
            .to_vec();
        staging.unmap();
        counters.bytes_from_device += size;
        Ok(bytes)
    }
}

/// Copies `region` to the host.
pub(crate) async fn read(
    device: &Device,
    queue: &Queue,
    waits: &DeviceWaits,
    region: Region<'_>,
    counters: &mut Counters,
) -> Result<Vec<u8>, GpuError> {
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("read-back"),
        size: region.size.max(4),
        usage: BufferUsages::MAP_READ | BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(region.buffer, region.offset, &staging, 0, region.size);
    let submission = queue.submit([encoder.finish()]);
    counters.submits += 1;
    PendingMap::start(&staging, submission)
        .bytes(waits, &staging, region.size, counters)
        .await
}

/// Per-step uniforms of one example source at the device's dynamic-offset
/// stride, written once per source length (not per step).
pub(crate) struct StepTable {
    pub buffer: Buffer,
    pub bind_group: wgpu::BindGroup,
    stride: u64,
    pub len: usize,
    pub steps: usize,
}

impl StepTable {
    pub fn new(
        device: &Device,
        layout: &wgpu::BindGroupLayout,
        stride: u64,
        max_steps: usize,
    ) -> Self {
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step table"),
            size: stride * max_steps.max(1) as u64,
            usage: BufferUsages::UNIFORM | BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind_group = shader::bind_group(
            device,
            layout,
            vec![BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &buffer,
                offset: 0,
                size: wgpu::BufferSize::new(std::mem::size_of::<Step>() as u64),
            })],
        );
        Self {
            buffer,
            bind_group,
            stride,
            len: 0,
            steps: 0,
        }
    }

    /// Fills the table for `len` examples in batches of `batch` rows; a no-op
    /// when it already holds that length.
    pub fn fill(&mut self, queue: &Queue, len: usize, batch: usize, counters: &mut Counters) {
        if self.len == len && self.steps > 0 {
            return;
        }
        let steps = len.div_ceil(batch);
        let mut bytes = vec![0u8; self.stride as usize * steps];
        for s in 0..steps {
            let entry = Step {
                rows: (len - s * batch).min(batch) as u32,
                row_offset: (s * batch) as u32,
                slot: s as u32,
                pad: 0,
            };
            let at = s * self.stride as usize;
            bytes[at..at + std::mem::size_of::<Step>()].copy_from_slice(bytemuck::bytes_of(&entry));
        }
        queue.write_buffer(&self.buffer, 0, &bytes);
        counters.bytes_to_device += bytes.len() as u64;
        self.len = len;
        self.steps = steps;
    }

    pub fn offset(&self, step: usize) -> u32 {
        (step as u64 * self.stride) as u32
    }
}

/// Reads the per-step loss sums and correct counts back in windows, double
/// buffered: while the host waits for window `w`, the device runs window `w + 1`.
pub(crate) struct MetricsReadback {
    staging: [Buffer; 2],
    pending: Option<(usize, std::ops::Range<usize>, PendingMap)>,
    next: usize,
}

/// Per-step metrics of a finished window: (loss sum, correct count) per step.
pub(crate) type StepMetrics = Vec<(f32, u32)>;

impl MetricsReadback {
    pub fn new(device: &Device, max_steps: usize) -> Self {
        let make = || {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("metrics staging"),
                size: 8 * max_steps.max(1) as u64,
                usage: BufferUsages::MAP_READ | BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        Self {
            staging: [make(), make()],
            pending: None,
            next: 0,
        }
    }

    /// Records the copy of steps `window` of the metric arrays into the next
    /// staging buffer; call [`Self::submitted`] once the encoder is submitted.
    pub fn record_copy(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        loss_sums: &Buffer,
        correct_counts: &Buffer,
        window: std::ops::Range<usize>,
    ) {
        let staging = &self.staging[self.next];
        let bytes = 4 * window.len() as u64;
        let from = 4 * window.start as u64;
        encoder.copy_buffer_to_buffer(loss_sums, from, staging, 0, bytes);
        encoder.copy_buffer_to_buffer(correct_counts, from, staging, bytes, bytes);
    }

    /// Starts mapping the window just submitted, and returns the metrics of the
    /// window before it (waiting for it if needed).
    pub async fn submitted(
        &mut self,
        waits: &DeviceWaits,
        window: std::ops::Range<usize>,
        submission: SubmissionIndex,
        counters: &mut Counters,
    ) -> Result<Option<(std::ops::Range<usize>, StepMetrics)>, GpuError> {
        let earlier = self.finish(waits, counters).await?;
        let map = PendingMap::start(&self.staging[self.next], submission);
        self.pending = Some((self.next, window, map));
        self.next = 1 - self.next;
        Ok(earlier)
    }

    /// Waits for the last window under way, if any.
    pub async fn finish(
        &mut self,
        waits: &DeviceWaits,
        counters: &mut Counters,
    ) -> Result<Option<(std::ops::Range<usize>, StepMetrics)>, GpuError> {
        let Some((index, window, map)) = self.pending.take() else {
            return Ok(None);
        };
        let count = window.len();
        let bytes = map
            .bytes(waits, &self.staging[index], 8 * count as u64, counters)
            .await?;
        let (losses, corrects) = bytes.split_at(4 * count);
        Ok(Some((
            window,
            f32s(losses).into_iter().zip(u32s(corrects)).collect(),
        )))
    }
}

/// Shared handle to the waits, so the edge and the core can hold it at once.
pub(crate) type Waits = Arc<DeviceWaits>;
