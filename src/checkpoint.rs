//! Models and training runs saved as safetensors, a format PyTorch, JAX, numpy
//! (through `safetensors`) and Hugging Face tools read directly.
//!
//! Tensors (f32, little-endian, row-major), named and shaped by the model
//! ([`ModelSpec::param_shapes`], Keras' layouts):
//! - `dense_{i}.kernel` `[fan_in, units]` (`y = x · kernel + bias`; PyTorch's
//!   `nn.Linear.weight` is its transpose), `conv2d_{i}.kernel`
//!   `[kh, kw, in, filters]`, and each layer's `.bias` `[units]`; layers are
//!   numbered per kind, as Keras names them;
//! - in a run's checkpoint, the optimizer's state with the same shapes:
//!   `optimizer.{slot}.{tensor}` (SGD momentum: slot 0 the velocity; RMSprop:
//!   slot 0 the mean square; Adam: slots 0 and 1 the moments).
//!
//! Metadata (strings): `model` (the architecture as JSON), and in a run's
//! checkpoint `config` (optimizer and hyper-parameters, loss, batch size,
//! shuffling, seed, as JSON), `steps` (optimizer updates), `epochs`,
//! `order_position` (the shuffling generator's word position), `history`
//! (the epochs' metrics as JSON) and, for a run interrupted mid-epoch,
//! `partial_epoch` (where it stopped, as JSON), plus what the caller adds.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

mod pytorch;

pub use pytorch::export_pytorch;

use crate::atomic_file::write_atomically;
use crate::model::{ModelSpec, Params};
use crate::train::{EarlyStopping, EarlyStoppingCounters, TrainConfig, TrainState};

/// Metadata key of the architecture (a [`ModelSpec`] as JSON).
const MODEL_KEY: &str = "model";
/// Metadata keys of a run's state.
const CONFIG_KEY: &str = "config";
const STEPS_KEY: &str = "steps";
const EPOCHS_KEY: &str = "epochs";
const ORDER_KEY: &str = "order_position";
const HISTORY_KEY: &str = "history";
const PARTIAL_KEY: &str = "partial_epoch";
const EARLY_STOPPING_KEY: &str = "early_stopping";
/// Tensor-name prefixes of early stopping's best weights, and of the weights
/// a run goes on from when they are not the model's.
const BEST_PREFIX: &str = "early_stopping.best.";
const CONTINUE_PREFIX: &str = "continue_from.";

/// Metadata key of the data set the parameters were trained on (its catalogue
/// name, e.g. `fashion-mnist`), so that they are not evaluated on another.
pub const DATASET_KEY: &str = "dataset";

#[derive(Debug, thiserror::Error)]
#[error("checkpoint {path}: {problem}")]
pub struct CheckpointError {
    pub path: String,
    pub problem: String,
}

/// The tensor-name prefix of the optimizer's state.
const OPTIMIZER_PREFIX: &str = "optimizer.";

/// The tensor-name prefix of optimizer state slot `slot`.
fn slot_prefix(slot: usize) -> String {
    format!("{OPTIMIZER_PREFIX}{slot}.")
}

/// A checkpoint as read: the model, and the run's state if it was saved with one.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub spec: ModelSpec,
    pub params: Params,
    pub run: Option<(TrainConfig, TrainState)>,
    /// Every metadata entry, the keys above included.
    pub metadata: HashMap<String, String>,
}

/// Writes the model (`spec` and `params`, and string `metadata`) atomically
/// to `path`.
pub fn save(
    path: &Path,
    spec: &ModelSpec,
    params: &Params,
    metadata: HashMap<String, String>,
) -> Result<(), CheckpointError> {
    write(path, spec, &[(String::new(), params)], metadata)
}

/// Writes a training run (the model, optimizer state and everything
/// [`crate::Trainer::resume`] needs) atomically to `path`.
pub fn save_run(
    path: &Path,
    spec: &ModelSpec,
    config: &TrainConfig,
    state: &TrainState,
    mut metadata: HashMap<String, String>,
) -> Result<(), CheckpointError> {
    metadata.insert(CONFIG_KEY.into(), to_json(config));
    metadata.insert(STEPS_KEY.into(), state.steps.to_string());
    metadata.insert(EPOCHS_KEY.into(), state.epochs_done.to_string());
    metadata.insert(ORDER_KEY.into(), state.order_position.to_string());
    metadata.insert(HISTORY_KEY.into(), to_json(&state.history));
    if let Some(partial) = &state.partial {
        metadata.insert(PARTIAL_KEY.into(), to_json(partial));
    }
    let mut sets = vec![(String::new(), &state.params)];
    sets.extend(
        state
            .slots
            .iter()
            .enumerate()
            .map(|(s, p)| (slot_prefix(s), p)),
    );
    if let Some(stopping) = &state.early_stopping {
        metadata.insert(EARLY_STOPPING_KEY.into(), to_json(&stopping.counters()));
        if let Some(best) = &stopping.best {
            sets.push((BEST_PREFIX.into(), &best.params));
        }
    }
    if let Some(last) = &state.continue_from {
        sets.push((CONTINUE_PREFIX.into(), last));
    }
    write(path, spec, &sets, metadata)
}

/// Plain data as JSON (it always serialises).
fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("plain data serialises")
}

/// The bytes [`save`] writes (the model, and string `metadata`), for a
/// file written elsewhere (a web page's download).
pub fn model_bytes(
    spec: &ModelSpec,
    params: &Params,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, CheckpointError> {
    serialize(spec, &[(String::new(), params)], metadata).map_err(|problem| CheckpointError {
        path: "the model".into(),
        problem,
    })
}

/// Writes each set of tensors under its name prefix.
fn write(
    path: &Path,
    spec: &ModelSpec,
    sets: &[(String, &Params)],
    metadata: HashMap<String, String>,
) -> Result<(), CheckpointError> {
    let err = |problem: String| CheckpointError {
        path: path.display().to_string(),
        problem,
    };
    let bytes = serialize(spec, sets, metadata).map_err(err)?;
    write_atomically(path, &bytes).map_err(|e| err(e.to_string()))
}

/// The safetensors file of each set of tensors under its name prefix.
fn serialize(
    spec: &ModelSpec,
    sets: &[(String, &Params)],
    mut metadata: HashMap<String, String>,
) -> Result<Vec<u8>, String> {
    let spec_json = serde_json::to_string(spec).map_err(|e| e.to_string())?;
    metadata.insert(MODEL_KEY.to_string(), spec_json);
    let mut views = Vec::new();
    for (prefix, set) in sets {
        for tensor in &set.tensors {
            views.push((
                format!("{prefix}{}", tensor.name),
                TensorView::new(
                    Dtype::F32,
                    tensor.shape.clone(),
                    bytemuck::cast_slice(&tensor.values),
                ),
            ));
        }
    }
    let views: Vec<(String, TensorView)> = views
        .into_iter()
        .map(|(n, v)| v.map(|v| (n, v)))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    safetensors::serialize(views, Some(metadata)).map_err(|e| e.to_string())
}

fn f32_values(view: &TensorView, name: &str) -> Result<Vec<f32>, String> {
    if view.dtype() != Dtype::F32 {
        return Err(format!("{name} is {:?}, expected F32", view.dtype()));
    }
    Ok(view
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("chunks of 4")))
        .collect())
}

/// The tensors of `spec` stored under `prefix`, each checked for its dtype,
/// shape and finite values.
fn read_tensors(tensors: &SafeTensors, prefix: &str, spec: &ModelSpec) -> Result<Params, String> {
    let values = spec
        .param_shapes()
        .into_iter()
        .map(|expected| {
            let name = format!("{prefix}{}", expected.name);
            let view = tensors
                .tensor(&name)
                .map_err(|_| format!("no {name} tensor, which the model has"))?;
            if view.shape() != expected.shape.as_slice() {
                return Err(format!(
                    "{name} has shape {:?}, the model's is {:?}",
                    view.shape(),
                    expected.shape
                ));
            }
            let values = f32_values(&view, &name)?;
            if let Some(v) = values.iter().find(|v| !v.is_finite()) {
                return Err(format!("{name} holds {v}: not a trained model"));
            }
            Ok(values)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Params::from_values(spec, values))
}

/// The architecture of a file saved without one (the first versions): relu
/// Dense layers with a softmax head, read off the `dense_{i}.kernel` shapes.
fn architecture_of_tensors(tensors: &SafeTensors) -> Result<ModelSpec, String> {
    let mut dims: Vec<(usize, usize)> = Vec::new();
    for l in 0.. {
        let name = format!("dense_{l}.kernel");
        let Ok(kernel) = tensors.tensor(&name) else {
            break;
        };
        let (rows, cols) = match kernel.shape() {
            &[r, c] => (r, c),
            s => return Err(format!("{name} has shape {s:?}, expected 2-D")),
        };
        if let Some(&(_, prev)) = dims.last() {
            if prev != rows {
                return Err(format!(
                    "{name} takes {rows} inputs, the layer before gives {prev}"
                ));
            }
        }
        dims.push((rows, cols));
    }
    let (Some(first), Some(last)) = (dims.first(), dims.last()) else {
        return Err(
            "no architecture and no dense_0.kernel tensor: not a gpu-mnist checkpoint".into(),
        );
    };
    let hidden: Vec<usize> = dims[1..].iter().map(|d| d.0).collect();
    Ok(ModelSpec::mlp(first.0, &hidden, last.1))
}

/// safetensors' own bound on a header's length, so that a file is never
/// read to learn it.
pub const MAX_HEADER: u64 = 100_000_000;

/// The largest checkpoint read: the largest model's parameters with two
/// optimizer slots, and room for the header and metadata.
const MAX_BYTES: u64 = 3 * 4 * crate::model::MAX_PARAMETERS as u64 + (64 << 20);

/// Reads a checkpoint, checking that the layers chain and fit the
/// architecture, and that a run's state is whole. A file without an
/// architecture (an older checkpoint) is taken as relu layers with a softmax head.
pub fn read(path: &Path) -> Result<Checkpoint, CheckpointError> {
    read_parsed(path, true)
}

/// [`read`] of the model alone (`run` is `None`): what evaluating,
/// predicting, exporting or starting from the weights needs. A run's
/// optimizer state (one to two times the model again) is neither read into
/// tensors nor checked.
pub fn read_model(path: &Path) -> Result<Checkpoint, CheckpointError> {
    read_parsed(path, false)
}

/// The checkpoint at `path`, its run's state too when `with_run`.
fn read_parsed(path: &Path, with_run: bool) -> Result<Checkpoint, CheckpointError> {
    let bytes = read_bytes(path).map_err(|e| CheckpointError {
        path: path.display().to_string(),
        problem: e.to_string(),
    })?;
    parse(&bytes, &path.display().to_string(), with_run)
}

/// The file's bytes, once its first eight (the header's length) say it can
/// be a safetensors file of its size: a large file of zeros or of anything
/// else is refused before the rest of it is read.
fn read_bytes(path: &Path) -> std::io::Result<Vec<u8>> {
    let (mut file, _) = open_checked(path)?;
    // The whole file, header length included, from the file already open.
    std::io::Seek::rewind(&mut file)?;
    crate::input_file::read_file_bounded(file, MAX_BYTES)
}

/// The file at `path`, open after its first eight bytes, once they announce
/// a header that fits it; and that header's length.
fn open_checked(path: &Path) -> std::io::Result<(std::fs::File, u64)> {
    use std::io::Read;
    let mut file = crate::input_file::open_regular(path)?;
    let len = file.metadata()?.len();
    let mut head = [0u8; 8];
    file.read_exact(&mut head).map_err(|_| {
        std::io::Error::other(format!("{len} bytes, too short for a safetensors header"))
    })?;
    let header = u64::from_le_bytes(head);
    if header == 0 || header > len - 8 || header > MAX_HEADER {
        return Err(std::io::Error::other(format!(
            "not a safetensors file: its first 8 bytes announce a header of {header} bytes in a file of {len} (at most {MAX_HEADER})"
        )));
    }
    Ok((file, header))
}

/// The architecture a checkpoint's header names, read without its tensors:
/// a run resumed with another model is refused before a large file is read.
/// `None` for a file that names none (the first versions'); errors are
/// left to [`read`].
pub fn read_spec(path: &Path) -> Option<ModelSpec> {
    use std::io::Read;
    let (file, length) = open_checked(path).ok()?;
    let mut header = Vec::new();
    file.take(length).read_to_end(&mut header).ok()?;
    let header: serde_json::Value = serde_json::from_slice(&header).ok()?;
    let model = header.get("__metadata__")?.get(MODEL_KEY)?.as_str()?;
    serde_json::from_str(model).ok()
}

/// What a run's saved settings must be for the run to go on (JSON cannot
/// hold a number that is not finite, and one beyond `f32` fails to parse).
fn check_config(config: &TrainConfig) -> Result<(), String> {
    if config.batch_size == 0 || config.report_every == 0 {
        return Err("the batch size and the report interval must be at least 1".into());
    }
    let o = &config.optimizer;
    if o.lr <= 0.0 {
        return Err(format!("lr must be greater than 0, not {}", o.lr));
    }
    Ok(())
}

/// [`read`] of a checkpoint's bytes; `name` (its path) labels the errors.
pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Checkpoint, CheckpointError> {
    parse(bytes, name, true)
}

/// The checkpoint in `bytes`, its run's state too when `with_run`.
fn parse(bytes: &[u8], name: &str, with_run: bool) -> Result<Checkpoint, CheckpointError> {
    let err = |problem: String| CheckpointError {
        path: name.to_string(),
        problem,
    };
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| err(e.to_string()))?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| err(e.to_string()))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let saved_spec = match metadata.get(MODEL_KEY) {
        Some(json) => Some(
            serde_json::from_str::<ModelSpec>(json)
                .map_err(|e| err(format!("the saved architecture is unreadable: {e}")))?,
        ),
        None => None,
    };
    let spec = match saved_spec {
        Some(spec) => spec,
        None => architecture_of_tensors(&tensors).map_err(&err)?,
    };
    spec.validate()
        .map_err(|e| err(format!("the saved architecture cannot be used: {e}")))?;
    let params = read_tensors(&tensors, "", &spec).map_err(&err)?;
    let run = match metadata.get(CONFIG_KEY).filter(|_| with_run) {
        None => None,
        Some(config) => {
            let field = |key: &str| {
                metadata
                    .get(key)
                    .ok_or_else(|| err(format!("the run's state has no `{key}`")))
            };
            let bad =
                |key: &str, e: &dyn std::fmt::Display| err(format!("`{key}` is unreadable: {e}"));
            let config: TrainConfig =
                serde_json::from_str(config).map_err(|e| bad(CONFIG_KEY, &e))?;
            check_config(&config).map_err(|e| bad(CONFIG_KEY, &e))?;
            // A run's file with its optimizer tensors taken out (a common way
            // to share a smaller model file) is a model file: its weights
            // evaluate, it cannot resume. Some slots but not all is damage.
            let stripped = config.optimizer.state_slots() > 0
                && !tensors
                    .names()
                    .iter()
                    .any(|name| name.starts_with(OPTIMIZER_PREFIX));
            if stripped {
                return Ok(Checkpoint {
                    spec,
                    params,
                    run: None,
                    metadata,
                });
            }
            let slots = (0..config.optimizer.state_slots())
                .map(|slot| read_tensors(&tensors, &slot_prefix(slot), &spec).map_err(&err))
                .collect::<Result<Vec<_>, _>>()?;
            // A negative mean square would take a square root of it next step.
            if let Some(slot) = config.optimizer.mean_square_slot() {
                let negative = slots
                    .get(slot)
                    .is_some_and(|set| set.values().iter().any(|t| t.iter().any(|&v| v < 0.0)));
                if negative {
                    return Err(err(format!(
                        "optimizer state slot {slot} holds a mean of squared gradients, but a value in it is negative"
                    )));
                }
            }
            let state = TrainState {
                params: params.clone(),
                slots,
                steps: field(STEPS_KEY)?.parse().map_err(|e| bad(STEPS_KEY, &e))?,
                epochs_done: field(EPOCHS_KEY)?
                    .parse()
                    .map_err(|e| bad(EPOCHS_KEY, &e))?,
                order_position: field(ORDER_KEY)?.parse().map_err(|e| bad(ORDER_KEY, &e))?,
                history: serde_json::from_str(field(HISTORY_KEY)?)
                    .map_err(|e| bad(HISTORY_KEY, &e))?,
                partial: metadata
                    .get(PARTIAL_KEY)
                    .map(|json| serde_json::from_str(json).map_err(|e| bad(PARTIAL_KEY, &e)))
                    .transpose()?,
                early_stopping: match metadata.get(EARLY_STOPPING_KEY) {
                    None => None,
                    Some(json) => {
                        let counters: EarlyStoppingCounters =
                            serde_json::from_str(json).map_err(|e| bad(EARLY_STOPPING_KEY, &e))?;
                        let best = counters
                            .best
                            .map(|_| read_tensors(&tensors, BEST_PREFIX, &spec).map_err(&err))
                            .transpose()?;
                        let stopping = EarlyStopping::from_saved(counters, best)
                            .map_err(|e| bad(EARLY_STOPPING_KEY, &e))?;
                        Some(stopping)
                    }
                },
                continue_from: tensors
                    .names()
                    .iter()
                    .any(|name| name.starts_with(CONTINUE_PREFIX))
                    .then(|| read_tensors(&tensors, CONTINUE_PREFIX, &spec).map_err(&err))
                    .transpose()?,
            };
            Some((config, state))
        }
    };
    Ok(Checkpoint {
        spec,
        params,
        run,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Activation, Init};

    #[test]
    fn the_pytorch_export_transposes_the_kernels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("torch.safetensors");
        let spec = ModelSpec::sequential([3])
            .dense(2, Activation::Linear)
            .dense(4, Activation::Relu)
            .dense(2, Activation::Softmax);
        let params = Params::init(&spec, Init::Glorot, 3);
        let code = export_pytorch(&path, &spec, &params).unwrap();
        assert_eq!(
            code,
            "nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2), nn.Softmax(dim=1))"
        );
        let bytes = std::fs::read(&path).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let mut names: Vec<String> = file.names().into_iter().map(String::from).collect();
        names.sort();
        assert_eq!(
            names,
            ["0.bias", "0.weight", "1.bias", "1.weight", "3.bias", "3.weight"]
        );
        let weight = file.tensor("1.weight").unwrap();
        assert_eq!(weight.shape(), [4, 2]);
        let values = f32_values(&weight, "1.weight").unwrap();
        // weight[out][in] = kernel[in][out].
        let kernel = &params.get("dense_1.kernel").unwrap().values;
        for out in 0..4 {
            for input in 0..2 {
                assert_eq!(values[out * 2 + input], kernel[input * 4 + out]);
            }
        }
    }

    #[test]
    fn a_runs_state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.safetensors");
        let spec = ModelSpec::mlp(5, &[3], 2);
        let config = TrainConfig {
            optimizer: crate::OptimizerSpec::keras_default(crate::OptimizerKind::Adam),
            seed: 7,
            ..TrainConfig::default()
        };
        let record = crate::EpochRecord {
            epoch: 1,
            loss: 0.5,
            accuracy: 0.75,
            val_loss: Some(0.625),
            val_accuracy: None,
            seconds: 1.5,
        };
        // Adam's second slot is a mean of squares: never negative.
        let mut squares = Params::init(&spec, Init::Glorot, 3);
        for tensor in &mut squares.tensors {
            tensor.values.iter_mut().for_each(|v| *v = v.abs());
        }
        let state = TrainState {
            params: Params::init(&spec, Init::Glorot, 1),
            slots: vec![Params::init(&spec, Init::Glorot, 2), squares],
            steps: 469,
            epochs_done: 1,
            order_position: u64::MAX as u128 + 5,
            history: vec![record],
            partial: Some(crate::train::PartialEpoch {
                epoch: 2,
                order_position: 12,
                metrics: crate::Metrics {
                    samples: 640,
                    steps: 5,
                    loss_sum: 12.5,
                    correct: 600,
                },
            }),
            // Early stopping left epoch 1's weights as the model; the run
            // goes on from others.
            early_stopping: Some(
                EarlyStopping::from_saved(
                    EarlyStoppingCounters {
                        patience: 3,
                        waited: 0,
                        best: Some((1, 0.625)),
                    },
                    Some(Params::init(&spec, Init::Glorot, 1)),
                )
                .unwrap(),
            ),
            continue_from: Some(Params::init(&spec, Init::Glorot, 4)),
        };
        let extra = HashMap::from([("dataset".to_string(), "mnist".to_string())]);
        save_run(&path, &spec, &config, &state, extra).unwrap();
        let saved = read(&path).unwrap();
        assert_eq!(saved.run, Some((config, state.clone())));
        assert_eq!(saved.metadata["dataset"], "mnist");
        assert_eq!(
            (saved.spec, saved.params),
            (spec.clone(), state.params.clone())
        );
        // A negative mean square (a damaged or edited file) is refused.
        let mut damaged = state.clone();
        damaged.slots[1].tensors[1].values[0] = -1.0;
        save_run(&path, &spec, &config, &damaged, HashMap::new()).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.ends_with("optimizer state slot 1 holds a mean of squared gradients, but a value in it is negative"), "{err}");
        // The model alone reads without looking at the run's state.
        let model = read_model(&path).unwrap();
        assert_eq!((model.run, model.params), (None, damaged.params.clone()));
        // Settings a run cannot go on with name the file and the setting.
        save_run(&path, &spec, &config, &state, HashMap::new()).unwrap();
        let whole = std::fs::read(&path).unwrap();
        let with_config = |edit: &dyn Fn(&str) -> String| {
            let file = SafeTensors::deserialize(&whole).unwrap();
            let (_, header) = SafeTensors::read_metadata(&whole).unwrap();
            let mut metadata = header.metadata().clone().unwrap();
            let config = metadata.get_mut(CONFIG_KEY).unwrap();
            *config = edit(config);
            safetensors::serialize(file.tensors(), Some(metadata)).unwrap()
        };
        let lr = format!("\"lr\":{}", config.optimizer.lr);
        let edits: [(String, String, &str); 3] = [
            (
                "\"report_every\":50".into(),
                "\"report_every\":0".into(),
                "the batch size and the report interval must be at least 1",
            ),
            (
                lr.clone(),
                "\"lr\":1e300".into(),
                "number out of range at line 1 column 55",
            ),
            (lr, "\"lr\":-1".into(), "lr must be greater than 0, not -1"),
        ];
        for (from, to, problem) in edits {
            let bytes = with_config(&|json: &str| {
                assert!(json.contains(&from), "{json}");
                json.replace(&from, &to)
            });
            let err = from_bytes(&bytes, "run.st").unwrap_err().to_string();
            assert_eq!(
                err,
                format!("checkpoint run.st: `config` is unreadable: {problem}")
            );
        }
        // A model saved without its run reads as one without.
        save(&path, &spec, &state.params, HashMap::new()).unwrap();
        assert_eq!(read(&path).unwrap().run, None);

        // The run's file with its optimizer tensors taken out (as one shares
        // a smaller model file): a model, whatever its metadata says; with
        // one slot of two taken out, damaged.
        save_run(&path, &spec, &config, &state, HashMap::new()).unwrap();
        let whole = std::fs::read(&path).unwrap();
        let without = |dropped: &str| {
            let file = SafeTensors::deserialize(&whole).unwrap();
            let (_, header) = SafeTensors::read_metadata(&whole).unwrap();
            let kept: Vec<(String, TensorView)> = file
                .tensors()
                .into_iter()
                .filter(|(name, _)| !name.starts_with(dropped))
                .collect();
            safetensors::serialize(kept, header.metadata().clone()).unwrap()
        };
        let model = from_bytes(&without("optimizer."), "model.st").unwrap();
        assert_eq!(model.run, None);
        assert_eq!((&model.spec, &model.params), (&spec, &state.params));
        assert!(model.metadata.contains_key(CONFIG_KEY));
        let err = from_bytes(&without("optimizer.1."), "half.st")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("checkpoint half.st: no optimizer.1.dense_0.kernel tensor"),
            "{err}"
        );
    }

    #[test]
    fn the_architecture_round_trips_with_the_parameters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        // A linear hidden layer: not what the tensor shapes alone would suggest.
        let spec = ModelSpec::sequential([6])
            .dense(4, Activation::Linear)
            .dense(3, Activation::Softmax);
        let params = Params::init(&spec, Init::Glorot, 2);
        let metadata = HashMap::from([(DATASET_KEY.to_string(), "kmnist".to_string())]);
        save(&path, &spec, &params, metadata).unwrap();
        let loaded = read(&path).unwrap();
        assert_eq!((&loaded.spec, &loaded.params), (&spec, &params));
        assert_eq!(loaded.metadata[DATASET_KEY], "kmnist");
        // From the header alone too; nothing for a file that is not one.
        assert_eq!(read_spec(&path), Some(spec.clone()));
        let other = dir.path().join("other");
        std::fs::write(&other, b"\x08\0\0\0\0\0\0\0{\"a\": 1}").unwrap();
        assert_eq!(read_spec(&other), None);
        assert_eq!(read_spec(&dir.path().join("missing")), None);

        // A file without the architecture reads as relu layers and a softmax head.
        let views: Vec<(String, TensorView)> = params
            .values()
            .iter()
            .zip([
                "dense_0.kernel",
                "dense_0.bias",
                "dense_1.kernel",
                "dense_1.bias",
            ])
            .zip([vec![6, 4], vec![4], vec![4, 3], vec![3]])
            .map(|((t, name), shape)| {
                let view = TensorView::new(Dtype::F32, shape, bytemuck::cast_slice(t)).unwrap();
                (name.to_string(), view)
            })
            .collect();
        std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
        let old = read(&path).unwrap();
        assert_eq!(old.spec, ModelSpec::mlp(6, &[4], 3));
        assert_eq!(old.params, params);
        assert!(old.metadata.is_empty());
    }
}
