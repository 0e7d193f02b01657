//! Flags, their validation with clear messages, and their meaning in the
//! library's terms. The library's types carry no clap derives: the value
//! enums here map onto them.

use std::path::PathBuf;

pub use super::model_args::ModelArgs;
use clap::builder::PossibleValue;
use clap::{Args, Parser, Subcommand, ValueEnum};
use gpu_mnist::data::{catalog, DataSet};
use gpu_mnist::{Device, GpuApi, Init, LossKind, OptimizerKind, OptimizerSpec};

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
    /// Download and verify a data set into a directory.
    Download(DownloadArgs),
    /// Measure training throughput on the real data (and, with --profile, time per kernel).
    Bench(BenchArgs),
    /// Write a checkpoint's weights for another framework.
    Export(ExportArgs),
    /// Draw the loss and accuracy curves of a history file written by `train --history`.
    Plot(PlotArgs),
    /// Serve the web page (built by `bash web/build.sh`) and the data set to a browser.
    Serve(ServeArgs),
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

/// A data set of the catalogue (`--dataset`), by its catalogue name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataSetArg(pub &'static DataSet);

impl ValueEnum for DataSetArg {
    fn value_variants<'a>() -> &'a [Self] {
        const VARIANTS: [DataSetArg; 3] = [
            DataSetArg(catalog::ALL[0]),
            DataSetArg(catalog::ALL[1]),
            DataSetArg(catalog::ALL[2]),
        ];
        &VARIANTS
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.0.name).help(self.0.title))
    }
}

#[derive(Debug, Args)]
pub struct DataArgs {
    /// The data set: its files, downloads, cache directory and class names.
    #[arg(long, value_enum, default_value_t = DataSetArg(&gpu_mnist::data::MNIST))]
    pub dataset: DataSetArg,
    /// Directory holding the four IDX files (.gz or raw) of any data set. Default:
    /// the data set's variable ($GPU_MNIST_DATA for mnist), then ./data/<dataset>,
    /// then the user cache (downloaded there when missing).
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
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
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

/// Refuses flags that would do nothing in this combination (clap checks
/// each flag alone), saying why.
pub fn check_combinations(command: &Command) -> Result<(), String> {
    match command {
        Command::Train(args) => {
            args.device.check()?;
            args.model.check()?;
            match (args.optimizer, args.momentum > 0.0, args.nesterov) {
                (OptimizerArg::Adam, true, _) => {
                    Err("--momentum applies to sgd and rmsprop; Adam keeps its own moments (--optimizer adam)".into())
                }
                (OptimizerArg::Sgd, true, _) | (_, _, false) => Ok(()),
                _ => Err("--nesterov needs --optimizer sgd and a --momentum above 0".into()),
            }
        }
        Command::Evaluate(args) => args.device.check(),
        Command::Predict(args) => {
            args.device.check()?;
            if !args.images.is_empty() && (args.data.data_dir.is_some() || args.data.no_download) {
                return Err(
                    "--data-dir and --no-download are not read with --image: the pictures are the data"
                        .into(),
                );
            }
            Ok(())
        }
        Command::Bench(args) => {
            args.device.check()?;
            args.model.check()
        }
        Command::Devices(_)
        | Command::Download(_)
        | Command::Export(_)
        | Command::Plot(_)
        | Command::Serve(_) => Ok(()),
    }
}

impl DeviceArgs {
    /// GPU-only flags are refused with the CPU backend.
    fn check(&self) -> Result<(), String> {
        if self.backend != BackendChoice::Cpu {
            return Ok(());
        }
        match (self.adapter, self.retune) {
            (Some(_), _) => Err("--adapter picks a GPU adapter; --backend cpu uses none".into()),
            (_, true) => Err("--retune measures GPU kernels; --backend cpu runs none".into()),
            _ => Ok(()),
        }
    }

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
    #[arg(long, default_value_t = 5, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub epochs: u32,
    /// Examples per step (default: the model's, 128 for mlp, 64 for convnet).
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub batch_size: Option<u32>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// How the weights start (not with --resume or --init-from, which bring theirs).
    #[arg(long, value_enum, default_value_t = InitArg::Glorot, conflicts_with_all = ["resume", "init_from"])]
    pub init: InitArg,
    #[arg(long, value_enum, default_value_t = OptimizerArg::Rmsprop)]
    pub optimizer: OptimizerArg,
    /// Learning rate (default: Keras' for the optimizer: sgd 1e-2, rmsprop and adam 1e-3).
    #[arg(long, allow_hyphen_values = true, value_parser = parse_positive)]
    pub lr: Option<f32>,
    /// Momentum in [0, 1) for sgd and rmsprop (Keras' rules).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true, value_parser = parse_unit_interval)]
    pub momentum: f32,
    /// Nesterov momentum (sgd with --momentum).
    #[arg(long)]
    pub nesterov: bool,
    /// The loss (default: the model's, sparse for mlp, categorical for convnet).
    #[arg(long, value_enum)]
    pub loss: Option<LossArg>,
    /// Seed of the initialisation and the shuffling.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub seed: u64,
    /// Keep the file order in every epoch.
    #[arg(long)]
    pub no_shuffle: bool,
    /// Steps between progress updates (the GPU reads metrics back this often).
    #[arg(long, default_value_t = 50, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub report_every: u32,
    /// Train on the first N training images only.
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub train_samples: Option<u32>,
    /// Hold out this last fraction of the training set (before shuffling) for
    /// validation, reported as val_loss and val_accuracy each epoch.
    #[arg(long, value_name = "F", allow_hyphen_values = true, value_parser = parse_open_unit_interval)]
    pub validation_split: Option<f64>,
    /// Stop after N epochs without a lower val_loss and keep the best epoch's
    /// weights (needs --validation-split).
    #[arg(long, value_name = "N", requires = "validation_split", allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub early_stopping: Option<u32>,
    /// Save the run (parameters, optimizer state, position; safetensors) to
    /// this file at the end, and every --checkpoint-every epochs.
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// Also save to --save every N epochs.
    #[arg(long, value_name = "N", requires = "save", allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub checkpoint_every: Option<u32>,
    /// Continue the run saved in FILE for --epochs more epochs (same
    /// architecture and training flags).
    #[arg(long, value_name = "FILE", conflicts_with = "init_from")]
    pub resume: Option<PathBuf>,
    /// Start from the weights saved in FILE, with a fresh optimizer.
    #[arg(long, value_name = "FILE")]
    pub init_from: Option<PathBuf>,
    /// Write the per-epoch history (and, at the end, the test metrics) as JSON
    /// to this file, after every epoch.
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// Write the per-epoch metrics as CSV (Keras' CSVLogger columns) to this
    /// file, after every epoch.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Draw the loss and accuracy curves (.svg or .png) to this file, after
    /// every epoch.
    #[arg(long, value_name = "FILE", value_parser = image_path())]
    pub plot: Option<PathBuf>,
    /// Print only the final metrics.
    #[arg(long, short)]
    pub quiet: bool,
    /// Replace output files that hold another kind of file this tool knows
    /// (a checkpoint, a data set file, the kernel cache, a picture...), which
    /// are otherwise refused.
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// A checkpoint written by `train --save`.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// Also write the report (metrics, confusion matrix, per-class figures,
    /// worst mistakes) as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Replace output files that hold another kind of file this tool knows
    /// (a checkpoint, a data set file, the kernel cache, a picture...), which
    /// are otherwise refused.
    #[arg(long)]
    pub overwrite: bool,
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
    #[arg(long = "index", value_name = "I", num_args = 1.., allow_negative_numbers = true, default_values_t = [0u32])]
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
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub steps: Option<u32>,
    /// Examples per step (default: the model's, 128 for mlp, 64 for convnet).
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub batch_size: Option<u32>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, value_enum, default_value_t = OptimizerArg::Rmsprop)]
    pub optimizer: OptimizerArg,
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub seed: u64,
    /// Add the time of each kernel of one step (on the CPU, each op's mean over 10 steps).
    #[arg(long)]
    pub profile: bool,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Replace output files that hold another kind of file this tool knows
    /// (a checkpoint, a data set file, the kernel cache, a picture...), which
    /// are otherwise refused.
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A checkpoint written by `train --save`.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// As the state_dict of a PyTorch nn.Sequential of nn.Linear layers
    /// (weights [out, in]; safetensors). The only format so far, required.
    #[arg(long, required = true)]
    pub pytorch: bool,
    /// The file to write.
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
    /// Replace output files that hold another kind of file this tool knows
    /// (a checkpoint, a data set file, the kernel cache, a picture...), which
    /// are otherwise refused.
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The built page.
    #[arg(long, value_name = "DIR", default_value = "web/dist")]
    pub dir: PathBuf,
    /// The address to listen on: this machine only unless another is given.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The port (0: any free one, printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// A history file written by `train --history`.
    #[arg(value_name = "HISTORY")]
    pub history: PathBuf,
    /// The image to write: .svg or .png.
    #[arg(long, short, value_name = "FILE", value_parser = image_path())]
    pub output: PathBuf,
    /// Replace output files that hold another kind of file this tool knows
    /// (a checkpoint, a data set file, the kernel cache, a picture...), which
    /// are otherwise refused.
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The data set to fetch from its public mirrors.
    #[arg(long, value_enum, default_value_t = DataSetArg(&gpu_mnist::data::MNIST))]
    pub dataset: DataSetArg,
    /// Target directory (default: the data set's user cache directory).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// A path for curves, whose extension must name a format they are drawn in;
/// from the raw argument, as a name need not be UTF-8 (as `--csv`'s and
/// `--history`'s need not).
fn image_path() -> impl clap::builder::TypedValueParser<Value = PathBuf> {
    use clap::builder::TypedValueParser;
    clap::builder::OsStringValueParser::new().try_map(|s| {
        let path = PathBuf::from(s);
        super::plot::Format::of(&path).map_err(|e| e.to_string())?;
        Ok::<_, String>(path)
    })
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

fn parse_open_unit_interval(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("not a number: {s}"))?;
    if v > 0.0 && v < 1.0 {
        Ok(v)
    } else {
        Err(format!("must be between 0 and 1 (exclusive), got {s}"))
    }
}

impl From<LossArg> for LossKind {
    fn from(arg: LossArg) -> Self {
        match arg {
            LossArg::SparseCategorical => LossKind::SparseCategorical,
            LossArg::Categorical => LossKind::Categorical,
        }
    }
}

/// The `--loss` value that asks for `kind`.
pub fn loss_flag_value(kind: LossKind) -> String {
    use clap::ValueEnum;
    LossArg::value_variants()
        .iter()
        .find(|&&arg| LossKind::from(arg) == kind)
        .and_then(|arg| arg.to_possible_value())
        .map_or_else(|| format!("{kind:?}"), |v| v.get_name().to_string())
}

impl TrainArgs {
    pub fn batch_size(&self) -> u32 {
        self.batch_size
            .unwrap_or_else(|| self.model.default_batch_size())
    }

    pub fn init(&self) -> Init {
        match self.init {
            InitArg::Glorot => Init::Glorot,
            InitArg::Uniform => Init::Uniform,
        }
    }

    /// The training configuration the flags ask for.
    pub fn config(&self) -> gpu_mnist::TrainConfig {
        gpu_mnist::TrainConfig {
            batch_size: self.batch_size() as usize,
            optimizer: self.optimizer_spec(),
            loss: self.loss.map_or(self.model.default_loss(), LossKind::from),
            shuffle: !self.no_shuffle,
            seed: self.seed,
            report_every: self.report_every as usize,
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

impl BenchArgs {
    pub fn batch_size(&self) -> u32 {
        self.batch_size
            .unwrap_or_else(|| self.model.default_batch_size())
    }
}
