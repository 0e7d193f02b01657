//! What each subcommand does, between parsed flags and the library.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gpu_mnist::atomic_file::write_atomically;
use gpu_mnist::checkpoint::{self, Checkpoint};
use gpu_mnist::data::catalog::{CLASSES, FEATURES};
use gpu_mnist::data::download::Progress;
use gpu_mnist::data::source::FetchError;
use gpu_mnist::data::{digit_image, shape_text, DataSet, Dataset, Splits};
use gpu_mnist::report::ClassReport;
use gpu_mnist::{Evaluator, GpuApi, Init, Params, Split, TrainConfig, Trainer};

use super::args::{
    BenchArgs, Command, DataArgs, DevicesArgs, DownloadArgs, EvaluateArgs, ExportArgs, PlotArgs,
    PredictArgs,
};
use super::draw;
use super::outputs::{Outputs, Writes};
use super::progress::download_bar;

pub type CliError = Box<dyn std::error::Error + Send + Sync>;

/// An ending with its own exit status and message (printed as it is).
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

pub fn run(cli: super::args::Cli) -> Result<(), CliError> {
    if let Err(why) = super::args::check_combinations(&cli.command) {
        // A usage error, as clap's own.
        return Err(Exit {
            code: 2,
            message: format!("error: {why}"),
        }
        .into());
    }
    match cli.command {
        Command::Train(args) => super::train::train(&args),
        Command::Evaluate(args) => evaluate(&args),
        Command::Predict(args) => predict(&args),
        Command::Devices(args) => devices(&args),
        Command::Download(args) => download(&args),
        Command::Bench(args) => bench(&args),
        Command::Export(args) => export(&args),
        Command::Plot(args) => plot(&args),
        Command::Serve(args) => super::serve::serve(&args),
    }
}

fn export(args: &ExportArgs) -> Result<(), CliError> {
    Outputs::default()
        .overwrite(args.overwrite)
        .reads("the checkpoint", &args.checkpoint)
        .check("--output", &args.output, Writes::PytorchExport)?;
    let saved = checkpoint::read_model(&args.checkpoint)?;
    let module = checkpoint::export_pytorch(&args.output, &saved.spec, &saved.params)?;
    outln!(
        "wrote {}: load it into {module} with load_state_dict(safetensors.torch.load_file(...))",
        args.output.display()
    );
    Ok(())
}

pub(super) fn load_data(args: &DataArgs) -> Result<Splits, CliError> {
    let set = args.dataset.0;
    Ok(fetching(args, |download| {
        set.load(args.data_dir.as_deref(), download)
    })?)
}

/// The data set's four files, found (or downloaded) as for training.
pub(super) fn locate_data(args: &DataArgs) -> Result<[PathBuf; 4], CliError> {
    let set = args.dataset.0;
    Ok(fetching(args, |download| {
        set.locate(args.data_dir.as_deref(), download)
    })?)
}

/// The test split alone, for commands that only evaluate or predict. The
/// evaluator holds a training split too; the test images stand in for it, so
/// the 60,000 training images are never read.
fn load_test(args: &DataArgs) -> Result<Splits, CliError> {
    let set = args.dataset.0;
    let test = fetching(args, |download| {
        set.load_test(args.data_dir.as_deref(), download)
    })?;
    Ok(Splits::new(test.clone(), test))
}

/// `load` given the download progress bar, or no download with `--no-download`.
fn fetching<T>(args: &DataArgs, load: impl FnOnce(Option<&mut dyn FnMut(Progress<'_>)>) -> T) -> T {
    let mut bar = download_bar();
    load(if args.no_download {
        None
    } else {
        Some(&mut bar)
    })
}

pub(super) fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), CliError> {
    write_atomically(path, serde_json::to_string_pretty(value)?.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()).into())
}

/// Reads the checkpoint at `path` for a use on `set`: one trained on another
/// data set is refused. Read before the data is located, so that a bad
/// checkpoint is found without reading (or downloading) any data set file.
fn read_checkpoint(path: &Path, set: &DataSet) -> Result<Checkpoint, CliError> {
    let saved = checkpoint::read_model(path)?;
    if let Some(trained) = saved.metadata.get(checkpoint::DATASET_KEY) {
        if trained != set.name {
            let advice = match DataSet::named(trained) {
                Some(_) => format!("pass --dataset {trained}"),
                None => format!("{trained} is not a data set this version knows"),
            };
            return Err(format!(
                "checkpoint {} was trained on {trained}, not {}: {advice}",
                path.display(),
                set.name
            )
            .into());
        }
    }
    Ok(saved)
}

/// Opens `saved` (read from `path`) on the chosen device over `data`, a
/// load of `set`.
fn open_checkpoint(
    path: &Path,
    saved: Checkpoint,
    device: &super::args::DeviceArgs,
    data: Splits,
    set: &DataSet,
) -> Result<Evaluator, CliError> {
    let (spec, params) = (saved.spec, saved.params);
    let classes = spec.classes();
    if !data.test.fits_input(&spec.input_shape) || classes != data.test.classes {
        return Err(format!(
            "checkpoint {}: the network maps {} to {classes} classes, {} needs {} to {}",
            path.display(),
            shape_text(&spec.input_shape),
            set.title,
            shape_text(&data.test.shape),
            data.test.classes
        )
        .into());
    }
    Ok(Evaluator::new(
        &device.open()?,
        &spec,
        &params,
        Arc::new(data),
        128,
    )?)
}

/// The most confidently wrong test images `evaluate` lists.
const WORST_SHOWN: usize = 10;

fn evaluate(args: &EvaluateArgs) -> Result<(), CliError> {
    Outputs::default()
        .overwrite(args.overwrite)
        .reads("the checkpoint", &args.checkpoint)
        .reads_data(&args.data)
        .check_all([("--json", args.json.as_ref(), Writes::Json)])?;
    let set = args.data.dataset.0;
    let saved = read_checkpoint(&args.checkpoint, set)?;
    let data = load_test(&args.data)?;
    let test = data.test.clone();
    let mut model = open_checkpoint(&args.checkpoint, saved, &args.device, data, set)?;
    outln!("backend: {}", model.describe());
    outln!("dataset: {}", set.title);
    let metrics = model.evaluate(Split::Test)?;
    let probabilities = model.predict(&test.images)?;
    let report = ClassReport::new(&test.labels, &probabilities, WORST_SHOWN);
    outln!(
        "test_loss: {:.4}  test_acc: {:.4}\n",
        metrics.loss(),
        metrics.accuracy(),
    );
    let names: Vec<String> = set.classes.iter().map(|c| c.to_string()).collect();
    out!("{}", super::report::text(&report, &names));
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "backend": model.describe(),
            // As text: a path need not be UTF-8, which JSON cannot hold.
            "checkpoint": args.checkpoint.display().to_string(),
            "test_loss": metrics.loss(),
            "test_acc": metrics.accuracy(),
            "classes": names,
            "confusion": report.confusion,
            "per_class": report.per_class,
            "confidently_wrong": report.confidently_wrong,
        });
        write_json(path, &json)?;
    }
    Ok(())
}

/// Images `predict` shows: a header and the 28x28 pixels of each.
type Shown = Vec<(String, Vec<u8>)>;

fn predict(args: &PredictArgs) -> Result<(), CliError> {
    let set = args.data.dataset.0;
    let names: Vec<String> = set.classes.iter().map(|c| c.to_string()).collect();
    let saved = read_checkpoint(&args.checkpoint, set)?;
    let (data, shown) = if args.images.is_empty() {
        test_images(&args.data, &args.indices, &names)?
    } else {
        own_images(&args.images)?
    };
    let mut model = open_checkpoint(&args.checkpoint, saved, &args.device, data, set)?;
    let pixels: Vec<u8> = shown.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    let probs = model.predict(&pixels)?;
    for (n, ((header, image), row)) in shown.iter().zip(&probs).enumerate() {
        if n > 0 {
            outln!();
        }
        out!("{header}:\n{}", draw::shades(image, digit_image::SIDE));
        print_top(row, &names, 3);
    }
    Ok(())
}

/// The data set with the test images at `indices`, each headed by its index
/// and label.
fn test_images(
    args: &DataArgs,
    indices: &[u32],
    names: &[String],
) -> Result<(Splits, Shown), CliError> {
    let data = load_test(args)?;
    let test = &data.test;
    if let Some(&bad) = indices.iter().find(|&&i| i as usize >= test.len) {
        return Err(format!(
            "index {bad} is out of range: the test set has {} images",
            test.len
        )
        .into());
    }
    let shown = indices
        .iter()
        .map(|&i| {
            let label = usize::from(test.labels[i as usize]);
            let name = names.get(label).map_or("?", String::as_str);
            let header = format!("image {i} (label {name})");
            (header, test.image(i as usize).to_vec())
        })
        .collect();
    Ok((data, shown))
}

/// The user's pictures prepared as MNIST's were, each headed by its path, and a
/// data set of them alone: the evaluator wants one, and the data set's files
/// are not needed to predict (these labels, 0, are never read).
fn own_images(paths: &[PathBuf]) -> Result<(Splits, Shown), CliError> {
    let mut shown = Vec::with_capacity(paths.len());
    for path in paths {
        let image = digit_image::load(path)?;
        shown.push((path.display().to_string(), image.to_vec()));
    }
    let pixels = shown.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    let set = Dataset::new(pixels, vec![0; paths.len()], FEATURES, CLASSES)?;
    Ok((Splits::new(set.clone(), set), shown))
}

/// The `k` likeliest classes of one prediction, one line each.
fn print_top(probs: &[f32], names: &[String], k: usize) {
    let mut ranked: Vec<(&String, f32)> = names.iter().zip(probs.iter().copied()).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    for (rank, (name, p)) in ranked.iter().take(k).enumerate() {
        outln!("  {}. {name:<width$}  {:5.1}%", rank + 1, 100.0 * p);
    }
}

fn bench(args: &BenchArgs) -> Result<(), CliError> {
    Outputs::default()
        .overwrite(args.overwrite)
        .reads_data(&args.data)
        .check_all([("--json", args.json.as_ref(), Writes::Json)])?;
    let data = load_data(&args.data)?;
    let train_len = data.train.len;
    let spec = args.model.spec();
    let config = TrainConfig {
        batch_size: args.batch_size() as usize,
        loss: args.model.default_loss(),
        optimizer: gpu_mnist::OptimizerSpec::keras_default(args.optimizer.into()),
        seed: args.seed,
        ..TrainConfig::default()
    };
    let params = Params::init(&spec, Init::Glorot, args.seed);
    let mut trainer = Trainer::new(&args.device.open()?, &spec, &params, Arc::new(data), config)?;
    let epoch = train_len.div_ceil(args.batch_size() as usize);
    let steps = match args.steps {
        Some(steps) if steps as usize > epoch => {
            return Err(Exit {
                code: 2,
                message: format!(
                    "error: --steps {steps} is more than one epoch ({epoch} steps of {})",
                    args.batch_size()
                ),
            }
            .into())
        }
        Some(steps) => steps as usize,
        None => epoch,
    };
    let report = super::bench::run(
        &mut trainer,
        &spec,
        train_len,
        steps,
        args.seed,
        args.profile,
    )?;
    out!("{report}");
    if let Some(path) = &args.json {
        write_json(path, &report)?;
    }
    Ok(())
}

fn devices(args: &DevicesArgs) -> Result<(), CliError> {
    let adapters = gpu_mnist::adapters(GpuApi::Any);
    if adapters.is_empty() {
        return Err(gpu_mnist::GpuError::NoAdapter {
            requested: "vulkan/gl/metal/dx12".into(),
        }
        .into());
    }
    if args.retune {
        gpu_mnist::forget_kernel_choices()?;
    }
    for adapter in adapters {
        outln!("{adapter}");
        if args.kernels {
            print_kernel_choices(adapter.index)?;
        }
    }
    Ok(())
}

/// The kernels adapter `index` uses for the book's network, and why.
fn print_kernel_choices(index: usize) -> Result<(), CliError> {
    let device = gpu_mnist::Device::Gpu {
        api: GpuApi::Any,
        adapter: Some(index),
    };
    let spec = super::model_args::mlp(&[512]);
    let inputs = spec.input_len();
    let one = gpu_mnist::data::Dataset::new(vec![0; inputs], vec![0], inputs, spec.classes())?;
    let data = Arc::new(Splits::new(one.clone(), one));
    let params = Params::init(&spec, Init::Glorot, 1);
    let mut trainer = Trainer::new(&device, &spec, &params, data, TrainConfig::default())?;
    for choice in trainer.model().kernel_choices()? {
        let trials: Vec<String> = choice
            .trials
            .iter()
            .map(|t| match t.ms {
                Some(ms) => format!("{} {ms:.3} ms", t.kernel),
                None => format!("{} rejected", t.kernel),
            })
            .collect();
        let why = if trials.is_empty() {
            "the only candidate".to_string()
        } else {
            trials.join(", ")
        };
        outln!("    {}: {} ({why})", choice.product, choice.kernel);
    }
    Ok(())
}

fn download(args: &DownloadArgs) -> Result<(), CliError> {
    let set = args.dataset.0;
    let dir = args
        .dir
        .clone()
        .or_else(|| set.cache_dir())
        .ok_or(FetchError::NoCacheDir)?;
    if dir.exists() && !dir.is_dir() {
        return Err(format!("--dir {}: is not a directory", dir.display()).into());
    }
    let paths = set.download_all(&dir, &mut download_bar())?;
    for path in paths {
        outln!("verified {}", path.display());
    }
    Ok(())
}

/// The `"epochs"` of a file written by `train --history` (its other fields are
/// not needed to draw the curves).
#[derive(serde::Deserialize)]
struct HistoryFile {
    epochs: Vec<gpu_mnist::EpochRecord>,
}

fn plot(args: &PlotArgs) -> Result<(), CliError> {
    let path = &args.history;
    Outputs::default()
        .overwrite(args.overwrite)
        .reads("the history", path)
        .check("--output", &args.output, Writes::Picture)?;
    // A history of 100,000 epochs is a few tens of MB.
    let bytes = gpu_mnist::input_file::read_bounded(path, 256 << 20)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let history: HistoryFile = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "{}: not a history file written by `train --history` ({e})",
            path.display()
        )
    })?;
    if history.epochs.is_empty() {
        return Err(format!("{}: the history has no epochs to plot", path.display()).into());
    }
    super::plot::write(&args.output, &history.epochs)?;
    Ok(())
}
