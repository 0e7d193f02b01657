//! Ctrl-C and SIGTERM during training: the first asks the run to stop at its
//! next progress report (so it can save and say how to resume); another one
//! a second or more later ends the process at once.

use std::sync::{Arc, OnceLock};
#[cfg(unix)]
use std::time::{Duration, Instant};

#[cfg(unix)]
use signal_hook::iterator::Signals;

use gpu_mnist::Observer;

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

/// A repeat within this long is the same request delivered twice, as
/// `timeout` and `kill` on a process group do, not the user insisting.
#[cfg(unix)]
const REPEAT_GRACE: Duration = Duration::from_secs(1);

/// The first signal received, set by a thread that waits for them.
pub struct Interrupts {
    first: Arc<OnceLock<Signal>>,
}

impl Interrupts {
    /// Replaces the signals' default (ending the process at once) with a
    /// request to stop; a further one a second or more later ends it at once.
    #[cfg(unix)]
    pub fn install() -> std::io::Result<Self> {
        let mut signals = Signals::new(SIGNALS.map(|(number, _)| number))?;
        let first = Arc::new(OnceLock::new());
        let seen = Arc::clone(&first);
        // A thread of its own, not a handler: it may take the time and print.
        // (Two different signals pending at once come in number order, so the
        // first recorded may not be the first sent; either stops the run.)
        std::thread::spawn(move || {
            let mut since: Option<Instant> = None;
            for number in signals.forever() {
                let Some(&(_, signal)) = SIGNALS.iter().find(|(n, _)| *n == number) else {
                    continue;
                };
                match since {
                    None => {
                        let _ = seen.set(signal);
                        since = Some(Instant::now());
                    }
                    Some(at) if at.elapsed() >= REPEAT_GRACE => {
                        eprintln!("\n{}: stopping at once, without saving", signal.name);
                        // _exit, not exit: no atexit handlers (a GPU driver's
                        // teardown) run under the main thread's feet.
                        // SAFETY: ends the process; nothing is touched after.
                        unsafe { libc::_exit(i32::from(signal.exit_code)) }
                    }
                    Some(_) => {}
                }
            }
        });
        Ok(Self { first })
    }

    /// Without POSIX signals, only the first request is seen; the runtime's
    /// console handling does the rest.
    #[cfg(not(unix))]
    pub fn install() -> std::io::Result<Self> {
        let first = Arc::new(OnceLock::new());
        for (number, signal) in SIGNALS {
            let seen = Arc::clone(&first);
            // SAFETY: on Windows the handler runs on a thread of its own (the
            // console's control events), where taking a lock is allowed.
            unsafe {
                signal_hook::low_level::register(number, move || {
                    let _ = seen.set(signal);
                })?;
            }
        }
        Ok(Self { first })
    }

    /// The first signal received, if any.
    pub fn received(&self) -> Option<Signal> {
        self.first.get().copied()
    }
}

/// As an observer: stops the run at its next read-back once a signal has
/// arrived.
impl Observer for Interrupts {
    fn stop(&mut self) -> bool {
        self.received().is_some()
    }
}
