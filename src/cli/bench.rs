//! The `bench` subcommand's measurement: training throughput on the real data,
//! with the device's own counters and, on request, time per kernel.

use std::time::Instant;

use gpu_mnist::{Counters, EpochOrder, Error, ModelSpec, Profile, Trainer};

#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub backend: String,
    pub batch_size: usize,
    pub steps: u64,
    pub samples: u64,
    pub seconds: f64,
    pub samples_per_second: f64,
    pub ms_per_step: f64,
    /// Model FLOPs (forward and backward matmuls) per second.
    pub gflops: f64,
    pub peak_rss_mib: Option<f64>,
    /// What the device counted during the measured steps.
    pub counters: Counters,
    pub profile: Option<Profile>,
}

/// Peak resident memory of this process (Linux: `VmHWM`), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Trains `steps` steps of a shuffled epoch (after one warm-up step) and
/// measures them; `steps` is capped at one epoch.
pub fn run(
    trainer: &mut Trainer,
    spec: &ModelSpec,
    train_len: usize,
    steps: usize,
    seed: u64,
    profile: bool,
) -> Result<BenchReport, Error> {
    let batch_size = trainer.config().batch_size;
    let mut order = EpochOrder::new(train_len, true, seed);
    let order = order.next_epoch().to_vec();
    let samples = steps.saturating_mul(batch_size).min(train_len);
    // The warm-up step compiles pipelines and faults in memory.
    trainer.train_on(&order[..batch_size.min(train_len)], &mut |_| {})?;
    let before = trainer.counters();
    let start = Instant::now();
    let metrics = trainer.train_on(&order[..samples], &mut |_| {})?;
    let seconds = start.elapsed().as_secs_f64();
    let counters = trainer.counters().since(&before);
    let profile = if profile {
        trainer.profile_step()?
    } else {
        None
    };
    Ok(BenchReport {
        backend: trainer.describe().to_string(),
        batch_size,
        steps: metrics.steps,
        samples: metrics.samples,
        seconds,
        samples_per_second: metrics.samples as f64 / seconds,
        ms_per_step: 1e3 * seconds / metrics.steps as f64,
        gflops: spec.train_flops_per_sample() as f64 * metrics.samples as f64 / seconds / 1e9,
        peak_rss_mib: peak_rss_mib(),
        counters,
        profile,
    })
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "backend: {}", self.backend)?;
        writeln!(
            f,
            "{} steps of batch {} ({} samples) in {:.3} s: {:.0} samples/s, {:.3} ms/step, {:.1} GFLOP/s",
            self.steps, self.batch_size, self.samples, self.seconds, self.samples_per_second, self.ms_per_step, self.gflops
        )?;
        if let Some(rss) = self.peak_rss_mib {
            writeln!(f, "peak RSS: {rss:.0} MiB")?;
        }
        let c = &self.counters;
        if c.dispatches > 0 {
            writeln!(
                f,
                "over these steps: {:.1} dispatches/step, {} submits, {} blocking host syncs, \
                 {} bytes host->device, {} bytes device->host",
                c.dispatches as f64 / self.steps.max(1) as f64,
                c.submits,
                c.blocking_syncs,
                c.bytes_to_device,
                c.bytes_from_device
            )?;
        }
        if let Some(profile) = &self.profile {
            writeln!(f, "time per kernel of one step ({}):", profile.method)?;
            for k in &profile.kernels {
                writeln!(f, "  {:<48} {:>8.3} ms", k.label, k.ms)?;
            }
            let total: f64 = profile.kernels.iter().map(|k| k.ms).sum();
            writeln!(f, "  {:<48} {:>8.3} ms", "total", total)?;
        }
        Ok(())
    }
}
