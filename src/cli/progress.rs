//! What the user sees while work runs: a progress bar per epoch (hidden when
//! stderr is not a terminal) with a line per epoch, and download bars.

use gpu_mnist::data::download::Progress;
use gpu_mnist::{EpochRecord, Metrics, Observer};

/// Keras-style epoch lines, with a bar of the running loss and accuracy.
pub struct EpochLines {
    pub epochs: usize,
    steps: u64,
    bar: Option<indicatif::ProgressBar>,
}

impl EpochLines {
    pub fn new(epochs: usize) -> Self {
        Self {
            epochs,
            steps: 0,
            bar: None,
        }
    }
}

impl Observer for EpochLines {
    fn epoch_begin(&mut self, _epoch: usize, steps: u64) {
        let bar = indicatif::ProgressBar::new(steps);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{pos}/{len} [{bar:30}] {elapsed_precise} {msg}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        self.steps = steps;
        self.bar = Some(bar);
    }

    fn progress(&mut self, _epoch: usize, running: &Metrics) {
        if let Some(bar) = &self.bar {
            bar.set_position(running.steps);
            bar.set_message(format!(
                "loss: {:.4} - accuracy: {:.4}",
                running.loss(),
                running.accuracy()
            ));
        }
    }

    fn epoch_end(&mut self, record: &EpochRecord) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        println!(
            "Epoch {}/{}: {steps}/{steps} - {:.2}s - loss: {:.4} - accuracy: {:.4}",
            record.epoch,
            self.epochs,
            record.seconds,
            record.loss,
            record.accuracy,
            steps = self.steps,
        );
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
    }
}
