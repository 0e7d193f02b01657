//! GPU time per kernel of one training step: timestamp queries around each
//! launch where the adapter has them, else host timing of one submit per kernel.

use web_time::Instant;

use wgpu::BindGroup;

use super::buffers::{self, DeviceWaits, Region};
use super::kernels::Launch;
use super::{GpuContext, GpuError};
use crate::backend::{Counters, KernelTime, Profile};

/// Runs `launches` (one step, at `offset` of the step table `steps`) once,
/// each in a compute pass of its own, and returns the time of each.
pub(super) async fn time_launches(
    ctx: &GpuContext,
    waits: &DeviceWaits,
    launches: &[Launch],
    steps: &BindGroup,
    offset: u32,
) -> Result<Profile, GpuError> {
    if ctx.summary.timestamp_queries {
        with_timestamps(ctx, waits, launches, steps, offset).await
    } else {
        with_host_timing(ctx, waits, launches, steps, offset).await
    }
}

async fn with_timestamps(
    ctx: &GpuContext,
    waits: &DeviceWaits,
    launches: &[Launch],
    steps: &BindGroup,
    offset: u32,
) -> Result<Profile, GpuError> {
    let count = 2 * launches.len() as u32;
    let queries = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("kernel timestamps"),
        ty: wgpu::QueryType::Timestamp,
        count,
    });
    let resolved = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("resolved timestamps"),
        size: 8 * count as u64,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    for (i, launch) in launches.iter().enumerate() {
        if let Some(upload) = &launch.upload {
            upload
                .texture
                .record_copy(&mut encoder, &upload.buffer, upload.offset);
        }
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(&launch.label),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: &queries,
                beginning_of_pass_write_index: Some(2 * i as u32),
                end_of_pass_write_index: Some(2 * i as u32 + 1),
            }),
        });
        pass.set_bind_group(1, steps, &[offset]);
        launch.record(&mut pass);
    }
    encoder.resolve_query_set(&queries, 0..count, &resolved, 0);
    // The read-back's copy runs after this submission.
    ctx.queue.submit([encoder.finish()]);
    let mut counters = Counters::default();
    let read = buffers::read(
        &ctx.device,
        &ctx.queue,
        waits,
        Region::whole(&resolved),
        &mut counters,
    );
    let bytes = read.await?;
    let ticks: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let ns_per_tick = ctx.queue.get_timestamp_period() as f64;
    Ok(Profile {
        method: "timestamp queries",
        kernels: launches
            .iter()
            .zip(ticks.chunks_exact(2))
            .map(|(l, t)| KernelTime {
                label: l.label.clone(),
                ms: t[1].saturating_sub(t[0]) as f64 * ns_per_tick / 1e6,
            })
            .collect(),
    })
}

async fn with_host_timing(
    ctx: &GpuContext,
    waits: &DeviceWaits,
    launches: &[Launch],
    steps: &BindGroup,
    offset: u32,
) -> Result<Profile, GpuError> {
    let mut kernels = Vec::with_capacity(launches.len());
    for launch in launches {
        let start = Instant::now();
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        super::record_steps(
            &mut encoder,
            std::slice::from_ref(launch),
            steps,
            [offset].into_iter(),
        );
        let submission = ctx.queue.submit([encoder.finish()]);
        buffers::work_done(&ctx.queue, waits, submission).await?;
        kernels.push(KernelTime {
            label: launch.label.clone(),
            ms: start.elapsed().as_secs_f64() * 1e3,
        });
    }
    Ok(Profile {
        method: "host timing (no timestamp queries; includes submit overhead)",
        kernels,
    })
}
