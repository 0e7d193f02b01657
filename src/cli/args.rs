//! Flags, their validation with clear messages, and their meaning in the
//! library's terms. The library's types carry no clap derives: the value
//! enums here map onto them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use gpu_mnist::{Device, GpuApi, Init, LossKind, ModelSpec, OptimizerKind, OptimizerSpec};

#[derive(Debug, Parser)]
#[command(
    name = "gpu-mnist",
    version,
    about = "Train the MNIST MLP on the GPU (wgpu) or the CPU"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train the network, then evaluate it on the test set.
    Train(TrainArgs),
    /// Evaluate a saved checkpoint on the test set.
    Evaluate(EvaluateArgs),
    /// Draw test images or your own pictures and print the three likeliest classes.
    Predict(PredictArgs),
    /// List the GPU adapters wgpu can see.
    Devices(DevicesArgs),
    /// Download and verify MNIST into a directory.
    Download(DownloadArgs),
    /// Measure training throughput on the real data (and, with --profile, time per kernel).
    Bench(BenchArgs),
}

/// Where computation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// A hardware GPU if there is one, else the CPU (software GPUs only by name).
    Auto,
    Cpu,
    Vulkan,
    Gl,
    Metal,
    Dx12,
}

#[derive(Debug, Args)]
pub struct DataArgs {
    /// Directory holding the four MNIST files (.gz or raw). Default: $GPU_MNIST_DATA,
    /// then ./data/mnist, then the user cache (downloaded there when missing).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Never download; fail when the files are not found.
    #[arg(long)]
    pub no_download: bool,
}

#[derive(Debug, Args)]
pub struct DeviceArgs {
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// Index of the adapter (see `gpu-mnist devices`) when several are present.
    #[arg(long, value_name = "N")]
    pub adapter: Option<usize>,
    /// Measure the GPU kernels again instead of using the cached choice.
    #[arg(long)]
    pub retune: bool,
}

#[derive(Debug, Args)]
pub struct DevicesArgs {
    /// Also choose (or show the cached choice of) the matmul kernels of the
    /// book's network on each adapter, with every candidate's time.
    #[arg(long)]
    pub kernels: bool,
    /// With --kernels: measure again instead of using the cache.
    #[arg(long, requires = "kernels")]
    pub retune: bool,
}

impl DeviceArgs {
    /// The device asked for, forgetting cached kernel choices on `--retune`.
    pub fn open(&self) -> Result<Device, std::io::Error> {
        if self.retune {
            gpu_mnist::forget_kernel_choices()?;
        }
        Ok(self.device())
    }

    fn device(&self) -> Device {
        let api = match self.backend {
            BackendChoice::Auto if self.adapter.is_none() => return Device::Auto,
            BackendChoice::Cpu => return Device::Cpu,
            BackendChoice::Auto => GpuApi::Any,
            BackendChoice::Vulkan => GpuApi::Vulkan,
            BackendChoice::Gl => GpuApi::Gl,
            BackendChoice::Metal => GpuApi::Metal,
            BackendChoice::Dx12 => GpuApi::Dx12,
        };
        Device::Gpu {
            api,
            adapter: self.adapter,
        }
    }
}

/// Kernel initialisation (`--init`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitArg {
    /// Keras' glorot-uniform.
    Glorot,
    /// The book's from-scratch uniform [0, 0.1).
    Uniform,
}

/// Optimizer (`--optimizer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OptimizerArg {
    Sgd,
    Rmsprop,
    Adam,
}

impl From<OptimizerArg> for OptimizerKind {
    fn from(arg: OptimizerArg) -> Self {
        match arg {
            OptimizerArg::Sgd => OptimizerKind::Sgd,
            OptimizerArg::Rmsprop => OptimizerKind::Rmsprop,
            OptimizerArg::Adam => OptimizerKind::Adam,
        }
    }
}

/// Loss (`--loss`), by Keras' names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LossArg {
    /// Integer labels.
    #[value(name = "sparse_categorical_crossentropy", alias = "sparse")]
    SparseCategorical,
    /// One-hot label vectors.
    #[value(name = "categorical_crossentropy", alias = "categorical")]
    Categorical,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub epochs: u32,
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub batch_size: u32,
    /// Hidden layer widths, comma-separated (e.g. 512 or 512,256).
    #[arg(long, default_value = "512", value_parser = parse_hidden)]
    pub hidden: HiddenLayers,
    #[arg(long, value_enum, default_value_t = InitArg::Glorot)]
    pub init: InitArg,
    #[arg(long, value_enum, default_value_t = OptimizerArg::Rmsprop)]
    pub optimizer: OptimizerArg,
    /// Learning rate (default: Keras' for the optimizer: sgd 1e-2, rmsprop and adam 1e-3).
    #[arg(long, allow_hyphen_values = true, value_parser = parse_positive)]
    pub lr: Option<f32>,
    /// SGD momentum in [0, 1).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true, value_parser = parse_unit_interval)]
    pub momentum: f32,
    /// Nesterov momentum (SGD).
    #[arg(long)]
    pub nesterov: bool,
    #[arg(long, value_enum, default_value_t = LossArg::SparseCategorical)]
    pub loss: LossArg,
    /// Seed of the initialisation and the shuffling.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Keep the file order in every epoch.
    #[arg(long)]
    pub no_shuffle: bool,
    /// Steps between progress updates (the GPU reads metrics back this often).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub report_every: u32,
    /// Train on the first N training images only.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub train_samples: Option<u32>,
    /// Save the trained parameters (safetensors) to this file.
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// Write the per-epoch history and test metrics as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// Print only the final metrics.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// A checkpoint written by `train --save`.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// Test-set indices to predict.
    #[arg(long = "index", value_name = "I", num_args = 1.., default_values_t = [0u32])]
    pub indices: Vec<u32>,
    /// Your own pictures of digits (PNG or JPEG) to predict instead, prepared as
    /// MNIST's were; MNIST itself is not loaded then.
    #[arg(long = "image", value_name = "FILE", num_args = 1.., conflicts_with = "indices")]
    pub images: Vec<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Steps to measure (default and maximum: one epoch).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub steps: Option<u32>,
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub batch_size: u32,
    #[arg(long, default_value = "512", value_parser = parse_hidden)]
    pub hidden: HiddenLayers,
    #[arg(long, value_enum, default_value_t = OptimizerArg::Rmsprop)]
    pub optimizer: OptimizerArg,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Add the time of each kernel of one step (GPU backends).
    #[arg(long)]
    pub profile: bool,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// Target directory (default: the user cache directory).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HiddenLayers(pub Vec<usize>);

fn parse_hidden(s: &str) -> Result<HiddenLayers, String> {
    s.split(',')
        .map(|w| match w.trim().parse::<usize>() {
            Ok(0) => Err("hidden layer widths must be at least 1".to_string()),
            Ok(n) if n > 65_536 => Err(format!("hidden width {n} is above the limit of 65536")),
            Ok(n) => Ok(n),
            Err(_) => Err(format!(
                "'{w}' is not a layer width (expected e.g. 512 or 512,256)"
            )),
        })
        .collect::<Result<_, _>>()
        .map(HiddenLayers)
}

fn parse_finite(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(format!("{s} is not a finite number")),
        Err(_) => Err(format!("'{s}' is not a number")),
    }
}

fn parse_positive(s: &str) -> Result<f32, String> {
    let v = parse_finite(s)?;
    if v > 0.0 {
        Ok(v)
    } else {
        Err(format!("must be greater than 0, got {s}"))
    }
}

fn parse_unit_interval(s: &str) -> Result<f32, String> {
    let v = parse_finite(s)?;
    if (0.0..1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("must be in [0, 1), got {s}"))
    }
}

/// The MLP with these hidden widths for MNIST's images and classes.
pub fn mnist_model(hidden: &HiddenLayers) -> ModelSpec {
    use gpu_mnist::data::mnist::{CLASSES, FEATURES};
    ModelSpec::mlp(FEATURES, &hidden.0, CLASSES)
}

impl TrainArgs {
    pub fn init(&self) -> Init {
        match self.init {
            InitArg::Glorot => Init::Glorot,
            InitArg::Uniform => Init::Uniform,
        }
    }

    pub fn loss(&self) -> LossKind {
        match self.loss {
            LossArg::SparseCategorical => LossKind::SparseCategorical,
            LossArg::Categorical => LossKind::Categorical,
        }
    }

    pub fn optimizer_spec(&self) -> OptimizerSpec {
        let mut spec = OptimizerSpec::keras_default(self.optimizer.into());
        if let Some(lr) = self.lr {
            spec.lr = lr;
        }
        spec.momentum = self.momentum;
        spec.nesterov = self.nesterov;
        spec
    }
}
