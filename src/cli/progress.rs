//! What the user sees while work runs: Keras-style epoch progress, and
//! download bars.

use std::io::IsTerminal;

use gpu_mnist::data::download::Progress;
use gpu_mnist::{EpochRecord, Metrics, Observer};

/// Keras-style epoch progress: on a terminal, `Epoch 1/5` then a bar with
/// steps, ETA, ms/step and the running loss and accuracy (refreshed at each
/// read-back), left as one summary line; elsewhere (logs, CI, pipes) only
/// the summary line, one per epoch.
pub struct EpochLines {
    pub epochs: usize,
    steps: u64,
    bar: Option<indicatif::ProgressBar>,
    terminal: bool,
}

impl EpochLines {
    pub fn new(epochs: usize) -> Self {
        Self {
            epochs,
            steps: 0,
            bar: None,
            terminal: std::io::stdout().is_terminal(),
        }
    }
}

impl Observer for EpochLines {
    fn epoch_begin(&mut self, epoch: usize, steps: u64) {
        self.steps = steps;
        if !self.terminal {
            return;
        }
        outln!("Epoch {epoch}/{}", self.epochs);
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(steps),
            indicatif::ProgressDrawTarget::stdout(),
        );
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{pos:>4}/{len} [{bar:30}] - ETA: {eta} - {msg}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        self.bar = Some(bar);
    }

    fn progress(&mut self, _epoch: usize, running: &Metrics) {
        if let Some(bar) = &self.bar {
            let ms = bar.elapsed().as_secs_f64() * 1e3 / running.steps.max(1) as f64;
            bar.set_message(format!(
                "{ms:.0}ms/step - loss: {:.4} - accuracy: {:.4}",
                running.loss(),
                running.accuracy()
            ));
            bar.set_position(running.steps);
        }
    }

    fn epoch_end(&mut self, record: &EpochRecord) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let mut line = format!(
            "{steps}/{steps} - {:.1}s - {:.0}ms/step - loss: {:.4} - accuracy: {:.4}",
            record.seconds,
            record.seconds * 1e3 / self.steps.max(1) as f64,
            record.loss,
            record.accuracy,
            steps = self.steps,
        );
        if let (Some(loss), Some(accuracy)) = (record.val_loss, record.val_accuracy) {
            line += &format!(" - val_loss: {loss:.4} - val_accuracy: {accuracy:.4}");
        }
        if self.terminal {
            outln!("{line}");
        } else {
            outln!("Epoch {}/{} - {line}", record.epoch, self.epochs);
        }
    }
}

/// Draws the downloader's events as one progress bar per transfer on stderr.
pub fn download_bar() -> impl FnMut(Progress<'_>) {
    let mut bar: Option<indicatif::ProgressBar> = None;
    move |event| match event {
        Progress::Started { file, total } => {
            if let Some(old) = bar.take() {
                old.finish_and_clear();
            }
            let new = indicatif::ProgressBar::new(total.unwrap_or(0));
            new.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            new.set_message(file.to_string());
            bar = Some(new);
        }
        Progress::Advanced { bytes, .. } => {
            if let Some(bar) = &bar {
                bar.inc(bytes);
            }
        }
        Progress::Finished { .. } => {
            if let Some(done) = bar.take() {
                done.finish_and_clear();
            }
        }
        Progress::Failed { file, url, error } => {
            if let Some(failed) = bar.take() {
                failed.finish_and_clear();
            }
            eprintln!("warning: {file} from {url}: {error}; trying the next mirror");
        }
    }
}
