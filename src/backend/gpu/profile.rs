//! GPU time per kernel of one training step: timestamp queries around each
//! dispatch where the adapter has them, else host timing of one submit per kernel.

use std::time::Instant;

use wgpu::BindGroup;

use super::buffers;
use super::step::Dispatch;
use super::{GpuContext, GpuError};
use crate::backend::{Counters, KernelTime, Profile};

/// Runs `dispatches` (one step, at `offset` of the step table `steps`) once,
/// each in a compute pass of its own, and returns the time of each.
pub fn time_dispatches(
    ctx: &GpuContext,
    dispatches: &[Dispatch],
    steps: &BindGroup,
    offset: u32,
) -> Result<Profile, GpuError> {
    if ctx.summary.timestamp_queries {
        with_timestamps(ctx, dispatches, steps, offset)
    } else {
        with_host_timing(ctx, dispatches, steps, offset)
    }
}

fn wait(ctx: &GpuContext, submission: wgpu::SubmissionIndex) -> Result<(), GpuError> {
    ctx.device
        .poll(wgpu::PollType::Wait {
            submission_index: Some(submission),
            timeout: None,
        })
        .map(|_| ())
        .map_err(|e| GpuError::Device(e.to_string()))
}

fn with_timestamps(
    ctx: &GpuContext,
    dispatches: &[Dispatch],
    steps: &BindGroup,
    offset: u32,
) -> Result<Profile, GpuError> {
    let count = 2 * dispatches.len() as u32;
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
    for (i, dispatch) in dispatches.iter().enumerate() {
        if let Some(upload) = dispatch.upload {
            upload
                .texture
                .record_copy(&mut encoder, &upload.buffer, upload.offset);
        }
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(dispatch.label),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: &queries,
                beginning_of_pass_write_index: Some(2 * i as u32),
                end_of_pass_write_index: Some(2 * i as u32 + 1),
            }),
        });
        pass.set_bind_group(1, steps, &[offset]);
        dispatch.record(&mut pass);
    }
    encoder.resolve_query_set(&queries, 0..count, &resolved, 0);
    wait(ctx, ctx.queue.submit([encoder.finish()]))?;
    let bytes = buffers::read_blocking(
        &ctx.device,
        &ctx.queue,
        &resolved,
        0,
        8 * count as u64,
        &mut Counters::default(),
    )?;
    let ticks: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let ns_per_tick = ctx.queue.get_timestamp_period() as f64;
    Ok(Profile {
        method: "timestamp queries",
        kernels: dispatches
            .iter()
            .zip(ticks.chunks_exact(2))
            .map(|(d, t)| KernelTime {
                label: d.label,
                ms: t[1].saturating_sub(t[0]) as f64 * ns_per_tick / 1e6,
            })
            .collect(),
    })
}

fn with_host_timing(
    ctx: &GpuContext,
    dispatches: &[Dispatch],
    steps: &BindGroup,
    offset: u32,
) -> Result<Profile, GpuError> {
    let mut kernels = Vec::with_capacity(dispatches.len());
    for dispatch in dispatches {
        let start = Instant::now();
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        super::step::record_steps(
            &mut encoder,
            std::slice::from_ref(dispatch),
            steps,
            [offset].into_iter(),
        );
        wait(ctx, ctx.queue.submit([encoder.finish()]))?;
        kernels.push(KernelTime {
            label: dispatch.label,
            ms: start.elapsed().as_secs_f64() * 1e3,
        });
    }
    Ok(Profile {
        method: "host timing (no timestamp queries; includes submit overhead)",
        kernels,
    })
}
