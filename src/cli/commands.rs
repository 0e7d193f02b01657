//! What each subcommand does, between parsed flags and the library.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gpu_mnist::atomic_file::write_atomically;
use gpu_mnist::checkpoint;
use gpu_mnist::data::download::Progress;
use gpu_mnist::data::{digit_image, mnist, Dataset, Splits};
use gpu_mnist::{Evaluator, GpuApi, Init, Params, Split, TrainConfig, Trainer};

use super::args::{
    mnist_model, BenchArgs, Command, DataArgs, DevicesArgs, EvaluateArgs, PredictArgs, TrainArgs,
};
use super::draw;
use super::progress::{download_bar, EpochLines};

pub type CliError = Box<dyn std::error::Error + Send + Sync>;

pub fn run(cli: super::args::Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Train(args) => train(&args),
        Command::Evaluate(args) => evaluate(&args),
        Command::Predict(args) => predict(&args),
        Command::Devices(args) => devices(&args),
        Command::Download(args) => download(args.dir),
        Command::Bench(args) => bench(&args),
    }
}

fn load_data(args: &DataArgs) -> Result<Splits, CliError> {
    let mut bar = download_bar();
    let download: Option<&mut dyn FnMut(Progress<'_>)> = if args.no_download {
        None
    } else {
        Some(&mut bar)
    };
    Ok(mnist::load(args.data_dir.as_deref(), download)?)
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), CliError> {
    write_atomically(path, serde_json::to_string_pretty(value)?.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()).into())
}

fn train(args: &TrainArgs) -> Result<(), CliError> {
    let mut data = load_data(&args.data)?;
    if let Some(n) = args.train_samples {
        data.train = data.train.truncated(n as usize);
    }
    let train_len = data.train.len;
    let spec = mnist_model(&args.hidden);
    let params = Params::init(&spec, args.init(), args.seed);
    let config = TrainConfig {
        batch_size: args.batch_size as usize,
        optimizer: args.optimizer_spec(),
        loss: args.loss(),
        shuffle: !args.no_shuffle,
        seed: args.seed,
        report_every: args.report_every as usize,
    };
    let mut trainer = Trainer::new(&args.device.open()?, &spec, &params, Arc::new(data), config)?;
    if !args.quiet {
        println!(
            "backend: {} | {:?} lr {} | {train_len} training images\n{spec}",
            trainer.describe(),
            config.optimizer.kind,
            config.optimizer.lr,
        );
    }
    let history = if args.quiet {
        trainer.fit(args.epochs as usize, &mut ())?
    } else {
        trainer.fit(
            args.epochs as usize,
            &mut EpochLines::new(args.epochs as usize),
        )?
    };
    let test = trainer.evaluate(Split::Test)?;
    println!(
        "test_loss: {:.4}  test_acc: {:.4}",
        test.loss(),
        test.accuracy()
    );
    if let Some(path) = &args.save {
        let metadata = HashMap::from([
            ("format".to_string(), "gpu-mnist".to_string()),
            ("test_acc".to_string(), format!("{:.4}", test.accuracy())),
            ("epochs".to_string(), args.epochs.to_string()),
            ("seed".to_string(), args.seed.to_string()),
        ]);
        checkpoint::save(path, &spec, &trainer.params()?, metadata)?;
    }
    if let Some(path) = &args.history {
        let json = serde_json::json!({
            "backend": trainer.describe(),
            "epochs": history.epochs,
            "fit_seconds": history.fit_seconds,
            "test_loss": test.loss(),
            "test_acc": test.accuracy(),
            "counters": trainer.counters(),
        });
        write_json(path, &json)?;
    }
    Ok(())
}

/// Loads a checkpoint and opens it on the chosen device over MNIST.
fn open_checkpoint(
    path: &Path,
    device: &super::args::DeviceArgs,
    data: Splits,
) -> Result<Evaluator, CliError> {
    let (spec, params) = checkpoint::load(path)?;
    let (inputs, classes) = (spec.inputs, spec.classes());
    if inputs != data.test.features || classes != data.test.classes {
        return Err(format!(
            "checkpoint {}: the network maps {inputs} inputs to {classes} classes, MNIST needs {} to {}",
            path.display(),
            data.test.features,
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

fn evaluate(args: &EvaluateArgs) -> Result<(), CliError> {
    let data = load_data(&args.data)?;
    let mut model = open_checkpoint(&args.checkpoint, &args.device, data)?;
    let test = model.evaluate(Split::Test)?;
    println!("backend: {}", model.describe());
    println!(
        "test_loss: {:.4}  test_acc: {:.4}",
        test.loss(),
        test.accuracy()
    );
    Ok(())
}

/// The name of each class, by index, as `predict` prints them.
fn class_names() -> Vec<String> {
    (0..mnist::CLASSES).map(|c| c.to_string()).collect()
}

/// Images `predict` shows: a header and the 28x28 pixels of each.
type Shown = Vec<(String, Vec<u8>)>;

fn predict(args: &PredictArgs) -> Result<(), CliError> {
    let names = class_names();
    let (data, shown) = if args.images.is_empty() {
        test_images(&args.data, &args.indices, &names)?
    } else {
        own_images(&args.images)?
    };
    let mut model = open_checkpoint(&args.checkpoint, &args.device, data)?;
    let pixels: Vec<u8> = shown.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    let probs = model.predict(&pixels)?;
    for (n, ((header, image), row)) in shown.iter().zip(&probs).enumerate() {
        if n > 0 {
            println!();
        }
        print!("{header}:\n{}", draw::shades(image, digit_image::SIDE));
        print_top(row, &names, 3);
    }
    Ok(())
}

/// MNIST with the test images at `indices`, each headed by its index and label.
fn test_images(
    args: &DataArgs,
    indices: &[u32],
    names: &[String],
) -> Result<(Splits, Shown), CliError> {
    let data = load_data(args)?;
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
/// data set of them alone: the evaluator wants one, and MNIST's 55 MB are not
/// needed to predict (their labels, 0, are never read).
fn own_images(paths: &[PathBuf]) -> Result<(Splits, Shown), CliError> {
    let mut shown = Vec::with_capacity(paths.len());
    for path in paths {
        let image = digit_image::load(path)?;
        shown.push((path.display().to_string(), image.to_vec()));
    }
    let pixels = shown.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    let set = Dataset::new(
        pixels,
        vec![0; paths.len()],
        mnist::FEATURES,
        mnist::CLASSES,
    )?;
    let data = Splits {
        train: set.clone(),
        test: set,
    };
    Ok((data, shown))
}

/// The `k` likeliest classes of one prediction, one line each.
fn print_top(probs: &[f32], names: &[String], k: usize) {
    let mut ranked: Vec<(&String, f32)> = names.iter().zip(probs.iter().copied()).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    for (rank, (name, p)) in ranked.iter().take(k).enumerate() {
        println!("  {}. {name:<width$}  {:5.1}%", rank + 1, 100.0 * p);
    }
}

fn bench(args: &BenchArgs) -> Result<(), CliError> {
    let data = load_data(&args.data)?;
    let train_len = data.train.len;
    let spec = mnist_model(&args.hidden);
    let config = TrainConfig {
        batch_size: args.batch_size as usize,
        optimizer: gpu_mnist::OptimizerSpec::keras_default(args.optimizer.into()),
        seed: args.seed,
        ..TrainConfig::default()
    };
    let params = Params::init(&spec, Init::Glorot, args.seed);
    let mut trainer = Trainer::new(&args.device.open()?, &spec, &params, Arc::new(data), config)?;
    let steps = args.steps.map_or(usize::MAX, |s| s as usize);
    let report = super::bench::run(
        &mut trainer,
        &spec,
        train_len,
        steps,
        args.seed,
        args.profile,
    )?;
    print!("{report}");
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
        println!("{adapter}");
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
    let spec = mnist_model(&super::args::HiddenLayers(vec![512]));
    let one =
        gpu_mnist::data::Dataset::new(vec![0; spec.inputs], vec![0], spec.inputs, spec.classes())?;
    let data = Arc::new(Splits {
        train: one.clone(),
        test: one,
    });
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
        println!("    {}: {} ({why})", choice.product, choice.kernel);
    }
    Ok(())
}

fn download(dir: Option<PathBuf>) -> Result<(), CliError> {
    let dir = dir
        .or_else(mnist::cache_dir)
        .ok_or(mnist::FetchError::NoCacheDir)?;
    let paths = mnist::download_all(&dir, &mut download_bar())?;
    for path in paths {
        println!("verified {}", path.display());
    }
    Ok(())
}
