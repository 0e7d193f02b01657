//! What each subcommand does, between parsed flags and the library.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use ndarray::Array2;

use crate::backend::cpu::{ops, CpuBackend};
use crate::backend::gpu::{context, GpuBackend};
use crate::backend::{Backend, Split, TrainSettings};
use crate::checkpoint;
use crate::cli::{
    BackendChoice, BenchArgs, Cli, Command, DataArgs, DeviceArgs, EvaluateArgs, PredictArgs,
    TrainArgs,
};
use crate::data::{self, mnist, Mnist};
use crate::loss::LossKind;
use crate::model::{Init, ModelSpec, Params};
use crate::optim::{OptimizerKind, OptimizerSpec};
use crate::train::{self, FitConfig};

pub type AppError = Box<dyn std::error::Error + Send + Sync>;

pub fn run(cli: Cli) -> Result<(), AppError> {
    match cli.command {
        Command::Train(args) => train(&args),
        Command::Evaluate(args) => evaluate(&args),
        Command::Predict(args) => predict(&args),
        Command::Devices => devices(),
        Command::Download(args) => download(args.dir),
        Command::Bench(args) => bench(&args),
    }
}

fn load_data(args: &DataArgs) -> Result<Arc<Mnist>, AppError> {
    Ok(Arc::new(mnist::load(
        args.data_dir.as_deref(),
        !args.no_download,
    )?))
}

/// The wgpu backends a `--backend` choice allows; `None` for the CPU.
pub fn wgpu_backends(choice: BackendChoice) -> Option<wgpu::Backends> {
    match choice {
        BackendChoice::Cpu => None,
        BackendChoice::Auto => Some(wgpu::Backends::all()),
        BackendChoice::Vulkan => Some(wgpu::Backends::VULKAN),
        BackendChoice::Gl => Some(wgpu::Backends::GL),
        BackendChoice::Metal => Some(wgpu::Backends::METAL),
        BackendChoice::Dx12 => Some(wgpu::Backends::DX12),
    }
}

/// Opens the backend `device` asks for; `auto` falls back to the CPU, saying so.
pub fn open_backend(
    device: &DeviceArgs,
    data: Arc<Mnist>,
    params: Params,
    settings: TrainSettings,
) -> Result<Box<dyn Backend>, AppError> {
    let Some(backends) = wgpu_backends(device.backend) else {
        return Ok(Box::new(CpuBackend::new(data, params, settings)));
    };
    match context::GpuContext::open(backends, device.adapter) {
        Ok(ctx) => Ok(Box::new(GpuBackend::new(ctx, data, params, settings)?)),
        Err(e) if device.backend == BackendChoice::Auto && device.adapter.is_none() => {
            eprintln!("note: {e}; using the CPU backend");
            Ok(Box::new(CpuBackend::new(data, params, settings)))
        }
        Err(e) => Err(e.into()),
    }
}

fn train(args: &TrainArgs) -> Result<(), AppError> {
    let mut mnist = Arc::unwrap_or_clone(load_data(&args.data)?);
    if let Some(n) = args.train_samples {
        mnist.train = mnist.train.truncated(n as usize);
    }
    let data = Arc::new(mnist);
    let spec = args.model_spec();
    let params = Params::init(&spec, args.init, args.seed);
    let settings = TrainSettings {
        batch_size: args.batch_size as usize,
        optimizer: args.optimizer_spec(),
        loss: args.loss,
        report_every: args.report_every as usize,
    };
    let mut backend = open_backend(&args.device, data.clone(), params, settings)?;
    if !args.quiet {
        println!(
            "backend: {} | model {:?} ({} parameters) | {:?} lr {} | {} training images",
            backend.describe(),
            spec.layer_dims(),
            spec.parameter_count(),
            settings.optimizer.kind,
            settings.optimizer.lr,
            data.train.len
        );
    }
    let config = FitConfig {
        epochs: args.epochs as usize,
        shuffle: !args.no_shuffle,
        seed: args.seed,
        verbose: !args.quiet,
    };
    let history = train::fit(
        backend.as_mut(),
        data.train.len,
        settings.batch_size,
        &config,
    )?;
    let test = backend.evaluate(Split::Test)?;
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
        checkpoint::save(path, &backend.params()?, metadata)?;
    }
    if let Some(path) = &args.history {
        let json = serde_json::json!({
            "backend": backend.describe(),
            "epochs": history.epochs,
            "fit_seconds": history.fit_seconds,
            "test_loss": test.loss(),
            "test_acc": test.accuracy(),
            "counters": backend.counters(),
        });
        data::download::write_atomically(path, serde_json::to_string_pretty(&json)?.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Loads a checkpoint and checks that it fits MNIST's images and classes.
fn load_checkpoint(path: &std::path::Path, data: &Mnist) -> Result<Params, AppError> {
    let params = checkpoint::load(path)?;
    let spec = params.spec();
    if spec.inputs != data.test.features || spec.classes != data.test.classes {
        return Err(format!(
            "checkpoint {}: the network maps {} inputs to {} classes, MNIST needs {} to {}",
            path.display(),
            spec.inputs,
            spec.classes,
            data.test.features,
            data.test.classes
        )
        .into());
    }
    Ok(params)
}

fn evaluate(args: &EvaluateArgs) -> Result<(), AppError> {
    let data = load_data(&args.data)?;
    let params = load_checkpoint(&args.checkpoint, &data)?;
    let settings = TrainSettings {
        batch_size: 128,
        optimizer: OptimizerSpec::keras_default(OptimizerKind::Rmsprop),
        loss: LossKind::SparseCategorical,
        report_every: 50,
    };
    let mut backend = open_backend(&args.device, data, params, settings)?;
    let test = backend.evaluate(Split::Test)?;
    println!(
        "test_loss: {:.4}  test_acc: {:.4}",
        test.loss(),
        test.accuracy()
    );
    Ok(())
}

fn predict(args: &PredictArgs) -> Result<(), AppError> {
    let data = load_data(&args.data)?;
    let params = load_checkpoint(&args.checkpoint, &data)?;
    let test = &data.test;
    if let Some(&bad) = args.indices.iter().find(|&&i| i as usize >= test.len) {
        return Err(format!(
            "index {bad} is out of range: the test set has {} images",
            test.len
        )
        .into());
    }
    let mut activations = Array2::zeros((args.indices.len(), test.features));
    ops::gather_batch(test, &args.indices, activations.view_mut());
    let last = params.layers.len() - 1;
    for (l, layer) in params.layers.iter().enumerate() {
        let mut out = Array2::zeros((args.indices.len(), layer.bias.len()));
        ops::dense_forward(
            activations.view(),
            layer.weights.view(),
            layer.bias.as_slice().expect("standard layout"),
            l != last,
            out.view_mut(),
        );
        activations = out;
    }
    for (row, &i) in activations.rows().into_iter().zip(&args.indices) {
        let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let exp: Vec<f32> = row.iter().map(|&v| (v - max).exp()).collect();
        let total: f32 = exp.iter().sum();
        let probs: Vec<String> = exp.iter().map(|e| format!("{:.3}", e / total)).collect();
        println!(
            "image {i}: predicted {} (label {}) probabilities [{}]",
            ops::argmax(row.iter().copied()),
            test.labels[i as usize],
            probs.join(", ")
        );
    }
    Ok(())
}

fn bench(args: &BenchArgs) -> Result<(), AppError> {
    let data = load_data(&args.data)?;
    let spec = ModelSpec {
        hidden: args.hidden.0.clone(),
        ..ModelSpec::mnist_mlp()
    };
    let settings = TrainSettings {
        batch_size: args.batch_size as usize,
        optimizer: OptimizerSpec::keras_default(args.optimizer),
        loss: LossKind::SparseCategorical,
        report_every: 50,
    };
    let params = Params::init(&spec, Init::Glorot, args.seed);
    let train_len = data.train.len;
    let mut backend = open_backend(&args.device, data, params, settings)?;
    let steps = args.steps.map_or(usize::MAX, |s| s as usize);
    let report = crate::bench::run(
        backend.as_mut(),
        &spec,
        train_len,
        settings.batch_size,
        steps,
        args.seed,
        args.profile,
    )?;
    print!("{report}");
    if let Some(path) = &args.json {
        data::download::write_atomically(path, serde_json::to_string_pretty(&report)?.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn devices() -> Result<(), AppError> {
    let adapters = context::list(wgpu::Backends::all());
    if adapters.is_empty() {
        return Err(crate::backend::gpu::GpuError::NoAdapter {
            requested: "vulkan/gl/metal/dx12".into(),
        }
        .into());
    }
    for adapter in adapters {
        println!("{adapter}");
    }
    Ok(())
}

fn download(dir: Option<PathBuf>) -> Result<(), AppError> {
    let dir = dir
        .or_else(mnist::cache_dir)
        .ok_or(data::download::DownloadError::NoCacheDir)?;
    let paths = data::download::download_all(&dir, &data::download::mirrors(), true)?;
    for path in paths {
        println!("verified {}", path.display());
    }
    Ok(())
}
