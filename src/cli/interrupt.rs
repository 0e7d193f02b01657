//! Ctrl-C and SIGTERM during training: the first asks the run to stop at its
//! next progress report (so it can save and say how to resume); a second one
//! of the same kind ends the process at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use gpu_mnist::{EpochRecord, Metrics, Observer};

/// A signal that asked the run to stop, and the exit status it calls for
/// (128 + the signal's number, as shells report it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal {
    pub name: &'static str,
    pub exit_code: u8,
}

const SIGNALS: [(i32, Signal); 2] = [
    (
        signal_hook::consts::SIGINT,
        Signal {
            name: "SIGINT",
            exit_code: 130,
        },
    ),
    (
        signal_hook::consts::SIGTERM,
        Signal {
            name: "SIGTERM",
            exit_code: 143,
        },
    ),
];

/// The flags the handlers set, one per signal.
pub struct Interrupts {
    received: Vec<(Arc<AtomicBool>, Signal)>,
}

impl Interrupts {
    pub fn install() -> std::io::Result<Self> {
        let mut received = Vec::new();
        for (number, signal) in SIGNALS {
            let flag = Arc::new(AtomicBool::new(false));
            // Registered first, so it sees the flag before the second handler
            // sets it: the second signal exits, the first only sets the flag.
            signal_hook::flag::register_conditional_shutdown(
                number,
                i32::from(signal.exit_code),
                Arc::clone(&flag),
            )?;
            signal_hook::flag::register(number, Arc::clone(&flag))?;
            received.push((flag, signal));
        }
        Ok(Self { received })
    }

    /// The first signal received, if any.
    pub fn received(&self) -> Option<Signal> {
        self.received
            .iter()
            .find(|(flag, _)| flag.load(Ordering::SeqCst))
            .map(|&(_, signal)| signal)
    }
}

/// An observer that also stops when a signal arrives.
pub struct Interruptible<'a> {
    pub inner: &'a mut dyn Observer,
    pub interrupts: &'a Interrupts,
}

impl Observer for Interruptible<'_> {
    fn epoch_begin(&mut self, epoch: usize, steps: u64) {
        self.inner.epoch_begin(epoch, steps);
    }

    fn progress(&mut self, epoch: usize, running: &Metrics) {
        self.inner.progress(epoch, running);
    }

    fn epoch_end(&mut self, record: &EpochRecord) {
        self.inner.epoch_end(record);
    }

    fn stop(&mut self) -> bool {
        self.interrupts.received().is_some()
    }
}
