//! `gpu-mnist train`: a run from flags, or continued from a checkpoint, with
//! its files (history, CSV, checkpoints) written after every epoch so that a
//! run that fails or is interrupted keeps what it did.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gpu_mnist::checkpoint::{self, Checkpoint};
use gpu_mnist::{
    EarlyStopping, EpochRecord, ModelSpec, Observer, Params, Split, TrainConfig, TrainState,
    Trainer,
};

use super::args::TrainArgs;
use super::commands::{load_data, write_json, CliError, Exit};
use super::interrupt::{Interrupts, Signal};
use super::model_args::layers_text;
use super::outputs::{same_file, Outputs, Writes};
use super::progress::EpochLines;

/// Metadata keys of the data a run trained on, checked when it resumes.
const TRAIN_EXAMPLES_KEY: &str = "train_examples";
const VALIDATION_EXAMPLES_KEY: &str = "validation_examples";
/// [`gpu_mnist::data::Dataset::fingerprint`] of the training and validation examples.
const EXAMPLES_KEY: &str = "examples_sha256";

pub fn train(args: &TrainArgs) -> Result<(), CliError> {
    check_outputs(args)?;
    // Another model is seen in the checkpoint's header, before the data or
    // the whole checkpoint are read.
    if let Some(path) = &args.resume {
        if let Some(saved) = checkpoint::read_spec(path) {
            check_model(path, &saved, &args.model.spec())?;
        }
    }
    let mut data = load_data(&args.data)?;
    if let Some(n) = args.train_samples {
        if n as usize > data.train.len {
            return Err(Exit {
                code: 2,
                message: format!(
                    "error: --train-samples {n} is more than the {} training images",
                    data.train.len
                ),
            }
            .into());
        }
        data.train = data.train.truncated(n as usize);
    }
    if let Some(fraction) = args.validation_split {
        // A flag that does not fit the data: a usage error, as above.
        data = data.hold_out(fraction).map_err(|why| Exit {
            code: 2,
            message: format!("error: {why} (--validation-split)"),
        })?;
    }
    let examples = (
        data.train.len,
        data.validation.as_ref().map_or(0, |v| v.len),
    );
    // Hashing the examples costs a tenth of a second or so: only when a
    // checkpoint is read or may be written.
    let checkpoints = args.resume.is_some() || interrupted_checkpoint(args).is_some();
    let fingerprint = checkpoints.then(|| {
        format!(
            "train {} validation {}",
            data.train.fingerprint(),
            data.validation
                .as_ref()
                .map_or("none".into(), |v| v.fingerprint())
        )
    });
    let spec = args.model.spec();
    let config = args.config();
    let device = args.device.open()?;
    let data = Arc::new(data);
    let (mut trainer, history) = match (&args.resume, &args.init_from) {
        (Some(path), _) => {
            let trained_on = TrainedOn {
                dataset: args.data.dataset.0.name,
                examples,
                fingerprint: fingerprint.as_deref(),
            };
            let patience = args.early_stopping.map(|p| p as usize);
            let (config, state) = resumable(path, &spec, (config, patience), &trained_on)?;
            let trainer = Trainer::resume(&device, &spec, &state, data, config)?;
            (trainer, state.history)
        }
        (None, Some(path)) => {
            let saved = checkpoint::read_model(path)?;
            check_model(path, &saved.spec, &spec)?;
            (
                Trainer::new(&device, &spec, &saved.params, data, config)?,
                Vec::new(),
            )
        }
        (None, None) => {
            let params = Params::init(&spec, args.init(), args.seed);
            (
                Trainer::new(&device, &spec, &params, data, config)?,
                Vec::new(),
            )
        }
    };
    let epochs_before = history.len();
    let total_epochs = epochs_before + args.epochs as usize;
    if !args.quiet {
        outln!(
            "backend: {} | {:?} lr {} | {} {} training images{}\n{spec}",
            trainer.describe(),
            config.optimizer.kind,
            config.optimizer.lr,
            examples.0,
            args.data.dataset.0.title,
            match examples.1 {
                0 => String::new(),
                n => format!(", {n} validation images"),
            },
        );
    }
    let mut lines = EpochLines::new(total_epochs);
    let mut metadata = HashMap::from([
        ("format".to_string(), "gpu-mnist".to_string()),
        (
            checkpoint::DATASET_KEY.to_string(),
            args.data.dataset.0.name.to_string(),
        ),
        ("seed".to_string(), args.seed.to_string()),
        (TRAIN_EXAMPLES_KEY.to_string(), examples.0.to_string()),
        (VALIDATION_EXAMPLES_KEY.to_string(), examples.1.to_string()),
    ]);
    if let Some(fingerprint) = fingerprint {
        metadata.insert(EXAMPLES_KEY.to_string(), fingerprint);
    }
    // From here on, Ctrl-C and SIGTERM stop the run at its next read-back.
    let mut interrupts = Interrupts::install()?;
    let mut silent = ();
    let progress: &mut dyn Observer = if args.quiet { &mut silent } else { &mut lines };
    let mut files = RunFiles {
        args,
        spec: &spec,
        config: &config,
        metadata: &metadata,
        history,
        written: 0,
        pace: WritePace::default(),
    };
    let stopping = args
        .early_stopping
        .map(|patience| EarlyStopping::new(patience as usize));
    let mut observer = (progress, (&mut interrupts, &mut files));
    let fitted = trainer.fit_with(args.epochs as usize, stopping, &mut observer);
    // The epochs the pace left out, whatever ended the fit; its failure is
    // told once the run is saved.
    let flushed = files.flush();
    let history = files.history;
    let fitted = match fitted {
        Ok(fitted) => {
            flushed?;
            fitted
        }
        Err(gpu_mnist::Error::Interrupted { epoch, step, steps }) => {
            let signal = interrupts.received().expect("only signals stop a run");
            let saved = match interrupted_checkpoint(args) {
                Some(path) => {
                    save(&mut trainer, &path, &spec, &config, &history, &metadata)
                        .map_err(|e| unsaved(signal, e))?;
                    Some(path)
                }
                None => None,
            };
            flushed?;
            let remaining = total_epochs - (epoch - 1);
            return Err(interrupted_message(signal, (epoch, step, steps), saved, remaining).into());
        }
        // The run's own files failed to write: its message, as it was.
        Err(gpu_mnist::Error::Observer(e)) => return Err(e),
        Err(e) => {
            flushed?;
            return Err(e.into());
        }
    };
    let (fit_seconds, best_epoch) = (fitted.fit_seconds, fitted.best_epoch);
    if fitted.stopped_early && !args.quiet {
        outln!(
            "early stopping: no lower val_loss for {} epochs",
            args.early_stopping.unwrap_or_default()
        );
    }
    if let (Some(epoch), false) = (best_epoch, args.quiet) {
        outln!("restored the weights of epoch {epoch} (lowest val_loss)");
    }
    // Asked to stop after the last step: the training is done, so save it as
    // it stands and leave the test evaluation out.
    if let Some(signal) = interrupts.received() {
        let saved = match interrupted_checkpoint(args) {
            Some(path) => {
                save(&mut trainer, &path, &spec, &config, &history, &metadata)
                    .map_err(|e| unsaved(signal, e))?;
                format!("saved the run to {}", path.display())
            }
            None => "nothing saved (no --save, --history or --csv was given)".into(),
        };
        return Err(Exit {
            code: signal.exit_code,
            message: format!(
                "interrupted by {} after the last epoch, before the test evaluation: {saved}",
                signal.name
            ),
        }
        .into());
    }
    let test = trainer.evaluate(Split::Test)?;
    outln!(
        "test_loss: {:.4}  test_acc: {:.4}",
        test.loss(),
        test.accuracy()
    );
    if let Some(path) = &args.save {
        let mut metadata = metadata.clone();
        metadata.insert("test_acc".into(), format!("{:.4}", test.accuracy()));
        save(&mut trainer, path, &spec, &config, &history, &metadata)?;
    }
    if let Some(path) = &args.history {
        let json = serde_json::json!({
            "backend": trainer.describe(),
            "epochs": history,
            "fit_seconds": fit_seconds,
            "best_epoch": best_epoch,
            "test_loss": test.loss(),
            "test_acc": test.accuracy(),
            "counters": trainer.counters(),
        });
        write_json(path, &json)?;
    }
    // A request that came while finishing: everything is written, but the
    // exit status still says the run was interrupted.
    if let Some(signal) = interrupts.received() {
        return Err(Exit {
            code: signal.exit_code,
            message: format!(
                "interrupted by {} while finishing: the run is complete and every output written",
                signal.name
            ),
        }
        .into());
    }
    Ok(())
}

/// The CLI run's files: after epochs, the history files (as [`WritePace`]
/// allows, and whatever is left by [`RunFiles::flush`]) and the periodic
/// checkpoint.
struct RunFiles<'a> {
    args: &'a TrainArgs,
    spec: &'a ModelSpec,
    config: &'a TrainConfig,
    metadata: &'a HashMap<String, String>,
    /// Every epoch of the run, those before a `--resume` included.
    history: Vec<EpochRecord>,
    /// Epochs of `history` in the files.
    written: usize,
    pace: WritePace,
}

impl RunFiles<'_> {
    /// Writes the epochs not yet in the files.
    fn flush(&mut self) -> Result<(), CliError> {
        if self.written < self.history.len() {
            write_epoch_files(self.args, &self.history)?;
            self.written = self.history.len();
        }
        Ok(())
    }
}

/// When the history files are written again. Each write is whole (atomic),
/// so its cost grows with the epochs: written after every epoch, a run of
/// 100,000 short epochs spent nearly all its time rewriting them. So a
/// write waits until the time since the last one is [`WritePace::RATIO`]
/// times what that one took: epochs of seconds still write after each one,
/// and writing never takes more than about 1/RATIO of a run.
#[derive(Default)]
struct WritePace {
    /// When the last write ended, and how long it took.
    last: Option<(Instant, Duration)>,
}

impl WritePace {
    const RATIO: u32 = 20;

    fn due(&self, now: Instant) -> bool {
        self.last
            .is_none_or(|(ended, took)| now.duration_since(ended) >= took * Self::RATIO)
    }

    fn wrote(&mut self, started: Instant, ended: Instant) {
        self.last = Some((ended, ended.duration_since(started)));
    }
}

impl Observer for RunFiles<'_> {
    fn after_epoch(&mut self, trainer: &mut Trainer, record: &EpochRecord) -> Result<(), CliError> {
        self.history.push(record.clone());
        let started = Instant::now();
        if self.pace.due(started) {
            self.flush()?;
            self.pace.wrote(started, Instant::now());
        }
        if let (Some(every), Some(path)) = (self.args.checkpoint_every, &self.args.save) {
            // Counted from the run's start, so a resumed run saves when the
            // straight run would have.
            if record.epoch.is_multiple_of(every as usize) {
                save(
                    trainer,
                    path,
                    self.spec,
                    self.config,
                    &self.history,
                    self.metadata,
                )?;
            }
        }
        Ok(())
    }
}

/// Where an interrupted run is saved: `--save`, else beside the first other
/// output asked for; none when no output was asked for.
fn interrupted_checkpoint(args: &TrainArgs) -> Option<PathBuf> {
    if let Some(path) = &args.save {
        return Some(path.clone());
    }
    let beside = args.history.as_ref().or(args.csv.as_ref())?;
    Some(beside.with_extension("resume.safetensors"))
}

/// An interrupted run whose checkpoint could not be written: the signal's
/// exit status, and the reason (the previous checkpoint, if any, is whole).
fn unsaved(signal: Signal, e: CliError) -> CliError {
    Exit {
        code: signal.exit_code,
        message: format!(
            "interrupted by {}, but the run could not be saved: {e}",
            signal.name
        ),
    }
    .into()
}

/// The one line an interrupted run ends with, and its exit status.
fn interrupted_message(
    signal: Signal,
    (epoch, step, steps): (usize, u64, u64),
    saved: Option<PathBuf>,
    remaining: usize,
) -> Exit {
    let at = format!(
        "interrupted by {} at epoch {epoch}, step {step} of {steps}",
        signal.name
    );
    let message = match saved {
        Some(path) => format!(
            "{at}: saved the run to {}; continue it with: gpu-mnist {}",
            path.display(),
            resume_command(&path, remaining)
        ),
        None => format!("{at}: nothing saved (no --save, --history or --csv was given)"),
    };
    Exit {
        code: signal.exit_code,
        message,
    }
}

/// This process's own arguments, resuming from `path` for `epochs` more
/// epochs, quoted for a POSIX shell.
fn resume_command(path: &Path, epochs: usize) -> String {
    let mut kept: Vec<OsString> = Vec::new();
    // args_os: a path need not be UTF-8 (std::env::args would panic).
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        let flag = text.split('=').next().unwrap_or_default();
        // What starts a run (--init, --init-from) cannot go with --resume.
        if ["--epochs", "--resume", "--init-from", "--init"].contains(&flag) {
            if !text.contains('=') {
                args.next();
            }
            continue;
        }
        kept.push(arg);
    }
    kept.extend([
        "--resume".into(),
        path.as_os_str().to_owned(),
        "--epochs".into(),
        epochs.to_string().into(),
    ]);
    kept.iter()
        .map(|a| shell_quoted(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `word` as a POSIX shell reads it back: as it is when it is plain, in
/// single quotes when it is text, and as `$'\xNN'` escapes when it is not
/// (a file name need not be UTF-8).
fn shell_quoted(word: &std::ffi::OsStr) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    match word.to_str() {
        Some(text) if !text.is_empty() && text.chars().all(plain) => text.to_string(),
        Some(text) => format!("'{}'", text.replace('\'', r"'\''")),
        None => {
            #[cfg(unix)]
            let bytes = std::os::unix::ffi::OsStrExt::as_bytes(word).to_vec();
            #[cfg(not(unix))]
            let bytes = word.to_string_lossy().into_owned().into_bytes();
            let escaped: String = bytes.iter().map(|b| format!("\\x{b:02x}")).collect();
            format!("$'{escaped}'")
        }
    }
}

/// Every file the run will write, checked before the data is read. The run's
/// checkpoint (`--save`, or the one an interruption writes beside the history)
/// may be the `--resume` checkpoint: it is replaced whole, only once the new
/// one is written. No other output may be.
fn check_outputs(args: &TrainArgs) -> Result<(), CliError> {
    let mut outputs = Outputs::default()
        .overwrite(args.overwrite)
        .reads_data(&args.data);
    if let Some(path) = &args.init_from {
        outputs = outputs.reads("--init-from", path);
    }
    // Before --resume is read: a resumed run may save over its checkpoint.
    if let Some(path) = &args.save {
        outputs.check("--save", path, Writes::Checkpoint)?;
    }
    if let Some(path) = &args.resume {
        outputs = outputs.reads("--resume", path);
    }
    let named = [
        ("--history", args.history.as_ref(), Writes::Json),
        ("--csv", args.csv.as_ref(), Writes::Csv),
        ("--plot", args.plot.as_ref(), Writes::Picture),
    ];
    for (flag, path, writes) in named {
        if let Some(path) = path {
            outputs.check(flag, path, writes)?;
        }
    }
    // Last, so that a problem with a file the user named is told of it,
    // not of the checkpoint beside it; which may be the --resume file (the
    // run continued as its interruption said).
    match (&args.save, interrupted_checkpoint(args)) {
        (None, Some(beside))
            if !args
                .resume
                .as_deref()
                .is_some_and(|r| same_file(r, &beside)) =>
        {
            outputs.check(
                "the checkpoint an interruption saves",
                &beside,
                Writes::Checkpoint,
            )
        }
        _ => Ok(()),
    }
}

/// The history (JSON, without test metrics yet), CSV and plot after an epoch.
fn write_epoch_files(args: &TrainArgs, history: &[EpochRecord]) -> Result<(), CliError> {
    if let Some(path) = &args.history {
        write_json(path, &serde_json::json!({ "epochs": history }))?;
    }
    if let Some(path) = &args.csv {
        gpu_mnist::atomic_file::write_atomically(path, csv(history).as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        super::plot::write(path, history)?;
    }
    Ok(())
}

/// Keras' CSVLogger format: a header of `epoch` then the metric names sorted,
/// one row per epoch, `epoch` counted from 0.
fn csv(history: &[EpochRecord]) -> String {
    let validation = history.iter().any(|r| r.val_loss.is_some());
    let mut out = String::from(if validation {
        "epoch,accuracy,loss,val_accuracy,val_loss\n"
    } else {
        "epoch,accuracy,loss\n"
    });
    for r in history {
        out += &format!("{},{},{}", r.epoch - 1, r.accuracy, r.loss);
        if validation {
            let value = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
            out += &format!(",{},{}", value(r.val_accuracy), value(r.val_loss));
        }
        out.push('\n');
    }
    out
}

fn save(
    trainer: &mut Trainer,
    path: &Path,
    spec: &ModelSpec,
    config: &TrainConfig,
    history: &[EpochRecord],
    metadata: &HashMap<String, String>,
) -> Result<(), CliError> {
    let state = trainer.state(history)?;
    Ok(checkpoint::save_run(
        path,
        spec,
        config,
        &state,
        metadata.clone(),
    )?)
}

/// The saved run in `path`, checked against what this run asks for.
/// The data a run trains on, as its checkpoints record it.
struct TrainedOn<'a> {
    dataset: &'a str,
    /// Training and validation examples.
    examples: (usize, usize),
    /// Known whenever a run is resumed.
    fingerprint: Option<&'a str>,
}

/// The run saved at `path`, if this run (`spec`, `config` and early
/// stopping's patience) continues it.
fn resumable(
    path: &Path,
    spec: &ModelSpec,
    (mut config, patience): (TrainConfig, Option<usize>),
    now: &TrainedOn<'_>,
) -> Result<(TrainConfig, TrainState), CliError> {
    let (dataset, examples) = (now.dataset, now.examples);
    let Checkpoint {
        spec: saved_spec,
        run,
        metadata,
        ..
    } = checkpoint::read(path)?;
    check_model(path, &saved_spec, spec)?;
    if let Some(trained) = metadata.get(checkpoint::DATASET_KEY) {
        if trained != dataset {
            return Err(format!(
                "checkpoint {}: its run trained on {trained}; this run asks for {dataset} (--dataset)",
                path.display()
            )
            .into());
        }
    }
    let Some((saved, state)) = run else {
        return Err(format!(
            "checkpoint {}: holds weights but no training state to resume (use --init-from to start from its weights)",
            path.display()
        )
        .into());
    };
    // How often progress is read back does not change the run.
    config.report_every = saved.report_every;
    if saved != config {
        let (was, asked) = differences(&saved, &config);
        return Err(format!(
            "checkpoint {}: saved by a run with {was}; this run asks for {asked} (resume with the same training flags)",
            path.display(),
        )
        .into());
    }
    let saved_patience = state.early_stopping.as_ref().map(|s| s.patience());
    if saved_patience != patience {
        let flag = |p: Option<usize>| {
            p.map_or("no --early-stopping".into(), |p| {
                format!("--early-stopping {p}")
            })
        };
        return Err(format!(
            "checkpoint {}: saved by a run with {}; this run asks for {} (resume with the same training flags)",
            path.display(),
            flag(saved_patience),
            flag(patience)
        )
        .into());
    }
    let count = |key: &str| metadata.get(key).and_then(|v| v.parse::<usize>().ok());
    let saved_examples = (count(TRAIN_EXAMPLES_KEY), count(VALIDATION_EXAMPLES_KEY));
    if saved_examples != (Some(examples.0), Some(examples.1)) {
        return Err(format!(
            "checkpoint {}: its run trained on {} examples and validated on {}; this run has {} and {} (pass the same --train-samples and --validation-split)",
            path.display(),
            shown(saved_examples.0),
            shown(saved_examples.1),
            examples.0,
            examples.1
        )
        .into());
    }
    // Older checkpoints did not record it.
    if let (Some(saved), Some(fingerprint)) = (metadata.get(EXAMPLES_KEY), now.fingerprint) {
        if saved != fingerprint {
            return Err(format!(
                "checkpoint {}: its run trained on other examples than this run's, though as many (its data files differ): resume with the same data files",
                path.display()
            )
            .into());
        }
    }
    if state.history.len() != state.epochs_done {
        return Err(format!(
            "checkpoint {}: its run state is inconsistent ({} epochs done, {} in its history)",
            path.display(),
            state.epochs_done,
            state.history.len()
        )
        .into());
    }
    Ok((config, state))
}

fn shown(count: Option<usize>) -> String {
    count.map_or("an unknown number of".into(), |c| c.to_string())
}

/// A training configuration as the flags that set it.
/// The training flags that make `c`, as a user types them (a flag that is
/// off is shown as `no`), each as (flag, value).
fn flags_of(c: &TrainConfig) -> Vec<(&'static str, String)> {
    let o = &c.optimizer;
    let on = |b: bool| if b { "yes" } else { "no" }.to_string();
    vec![
        ("--optimizer", format!("{:?}", o.kind).to_lowercase()),
        ("--lr", o.lr.to_string()),
        ("--momentum", o.momentum.to_string()),
        ("--nesterov", on(o.nesterov)),
        ("--loss", super::args::loss_flag_value(c.loss)),
        ("--batch-size", c.batch_size.to_string()),
        ("--seed", c.seed.to_string()),
        ("--no-shuffle", on(!c.shuffle)),
        // Keras' names of the settings without a flag (a file saved
        // through the library may hold others).
        ("rho", o.rho.to_string()),
        ("beta_1", o.beta1.to_string()),
        ("beta_2", o.beta2.to_string()),
        ("epsilon", o.epsilon.to_string()),
    ]
}

/// The flags where `a` and `b` differ, each run's values in turn.
fn differences(a: &TrainConfig, b: &TrainConfig) -> (String, String) {
    let (mut was, mut asked) = (Vec::new(), Vec::new());
    for ((flag, x), (_, y)) in flags_of(a).into_iter().zip(flags_of(b)) {
        if x != y {
            was.push(format!("{flag} {x}"));
            asked.push(format!("{flag} {y}"));
        }
    }
    if was.is_empty() {
        // Values that print alike and differ (a NaN): the settings whole.
        let json = |c: &TrainConfig| serde_json::to_string(c).unwrap_or_default();
        return (json(a), json(b));
    }
    (was.join(" "), asked.join(" "))
}

fn check_model(path: &Path, saved: &ModelSpec, wanted: &ModelSpec) -> Result<(), CliError> {
    if saved != wanted {
        return Err(format!(
            "checkpoint {}: its model is {}; this run asks for {} (--model, --hidden, --layers)",
            path.display(),
            layers_text(saved),
            layers_text(wanted)
        )
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_written_again_once_training_took_twenty_times_the_last_write() {
        let mut pace = WritePace::default();
        let t0 = Instant::now();
        assert!(pace.due(t0));
        let ms = Duration::from_millis;
        pace.wrote(t0, t0 + ms(10));
        assert!(!pace.due(t0 + ms(10)));
        assert!(!pace.due(t0 + ms(209)));
        assert!(pace.due(t0 + ms(210)));
    }

    #[test]
    fn csv_has_keras_columns() {
        let record = |epoch, val: Option<f64>| EpochRecord {
            epoch,
            loss: 0.5,
            accuracy: 0.25,
            val_loss: val,
            val_accuracy: val.map(|v| v / 2.0),
            seconds: 1.0,
        };
        assert_eq!(
            csv(&[record(1, None), record(2, None)]),
            "epoch,accuracy,loss\n0,0.25,0.5\n1,0.25,0.5\n"
        );
        assert_eq!(
            csv(&[record(1, Some(0.75))]),
            "epoch,accuracy,loss,val_accuracy,val_loss\n0,0.25,0.5,0.375,0.75\n"
        );
    }

    #[test]
    fn resume_commands_quote_what_a_shell_would_split_or_mangle() {
        use std::ffi::OsStr;
        assert_eq!(shell_quoted(OsStr::new("run-1/h.json")), "run-1/h.json");
        assert_eq!(shell_quoted(OsStr::new("my run.st")), "'my run.st'");
        assert_eq!(shell_quoted(OsStr::new("it's")), r"'it'\''s'");
        assert_eq!(shell_quoted(OsStr::new("")), "''");
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            let raw = OsStr::from_bytes(b"x\xff.st");
            assert_eq!(shell_quoted(raw), r"$'\x78\xff\x2e\x73\x74'");
        }
    }
}
