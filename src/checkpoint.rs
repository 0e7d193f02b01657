//! Models and training runs saved as safetensors, a format PyTorch, JAX, numpy
//! (through `safetensors`) and Hugging Face tools read directly.
//!
//! Tensors (f32, little-endian, row-major):
//! - `dense_{i}.kernel` `[fan_in, units]` (Keras' layout: `y = x · kernel + bias`;
//!   PyTorch's `nn.Linear.weight` is its transpose) and `dense_{i}.bias` `[units]`;
//! - in a run's checkpoint, the optimizer's state with the same shapes:
//!   `optimizer.{slot}.dense_{i}.kernel` / `.bias` (SGD momentum: slot 0 the
//!   velocity; RMSprop: slot 0 the mean square; Adam: slots 0 and 1 the moments).
//!
//! Metadata (strings): `model` (the architecture as JSON), and in a run's
//! checkpoint `config` (optimizer and hyper-parameters, loss, batch size,
//! shuffling, seed, as JSON), `steps` (optimizer updates), `epochs`,
//! `order_position` (the shuffling generator's word position), `history`
//! (the epochs' metrics as JSON) and, for a run interrupted mid-epoch,
//! `partial_epoch` (where it stopped, as JSON), plus what the caller adds.

use std::collections::HashMap;
use std::path::Path;

use ndarray::{Array1, Array2};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::atomic_file::write_atomically;
use crate::model::{Dense, ModelSpec, Params};
use crate::train::{TrainConfig, TrainState};

/// Metadata key of the architecture (a [`ModelSpec`] as JSON).
const MODEL_KEY: &str = "model";
/// Metadata keys of a run's state.
const CONFIG_KEY: &str = "config";
const STEPS_KEY: &str = "steps";
const EPOCHS_KEY: &str = "epochs";
const ORDER_KEY: &str = "order_position";
const HISTORY_KEY: &str = "history";
const PARTIAL_KEY: &str = "partial_epoch";

/// Metadata key of the data set the parameters were trained on (its catalogue
/// name, e.g. `fashion-mnist`), so that they are not evaluated on another.
pub const DATASET_KEY: &str = "dataset";

#[derive(Debug, thiserror::Error)]
#[error("checkpoint {path}: {problem}")]
pub struct CheckpointError {
    pub path: String,
    pub problem: String,
}

fn tensor_names(prefix: &str, layer: usize) -> (String, String) {
    (
        format!("{prefix}dense_{layer}.kernel"),
        format!("{prefix}dense_{layer}.bias"),
    )
}

/// The tensor-name prefix of optimizer state slot `slot`.
fn slot_prefix(slot: usize) -> String {
    format!("optimizer.{slot}.")
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
    write(path, spec, params, &[], metadata)
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
    write(path, spec, &state.params, &state.slots, metadata)
}

/// Plain data as JSON (it always serialises).
fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("plain data serialises")
}

fn write(
    path: &Path,
    spec: &ModelSpec,
    params: &Params,
    slots: &[Params],
    mut metadata: HashMap<String, String>,
) -> Result<(), CheckpointError> {
    let err = |problem: String| CheckpointError {
        path: path.display().to_string(),
        problem,
    };
    let spec_json = serde_json::to_string(spec).map_err(|e| err(e.to_string()))?;
    metadata.insert(MODEL_KEY.to_string(), spec_json);
    let mut views = Vec::new();
    let sets = std::iter::once((String::new(), params))
        .chain(slots.iter().enumerate().map(|(s, p)| (slot_prefix(s), p)));
    for (prefix, set) in sets {
        for (l, layer) in set.layers.iter().enumerate() {
            let (kernel, bias) = tensor_names(&prefix, l);
            let w = layer.weights.as_slice().expect("standard layout");
            let b = layer.bias.as_slice().expect("standard layout");
            let shape = layer.weights.shape().to_vec();
            views.push((
                kernel,
                TensorView::new(Dtype::F32, shape, bytemuck::cast_slice(w)),
            ));
            views.push((
                bias,
                TensorView::new(Dtype::F32, vec![b.len()], bytemuck::cast_slice(b)),
            ));
        }
    }
    let views: Vec<(String, TensorView)> = views
        .into_iter()
        .map(|(n, v)| v.map(|v| (n, v)))
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| err(e.to_string()))?;
    write_atomically(path, &bytes).map_err(|e| err(e.to_string()))
}

/// Writes the model as the `state_dict` of PyTorch's
/// `nn.Sequential(nn.Linear, activation, nn.Linear, ...)` (safetensors):
/// dense layer `i` is the `nn.Linear` at its module index (each non-linear
/// activation being a module of its own), `{index}.weight` `[out, in]` (the
/// kernel transposed) and `{index}.bias` `[out]`. Returns the module list as
/// PyTorch code, to build the network it loads into.
pub fn export_pytorch(
    path: &Path,
    spec: &ModelSpec,
    params: &Params,
) -> Result<String, CheckpointError> {
    let err = |problem: String| CheckpointError {
        path: path.display().to_string(),
        problem,
    };
    let mut modules = Vec::new();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for (layer, dense) in spec.layers.iter().zip(&params.layers) {
        let (fan_in, units) = dense.weights.dim();
        let index = modules.len();
        modules.push(format!("nn.Linear({fan_in}, {units})"));
        let transposed = dense.weights.t().iter().copied().collect();
        tensors.push((format!("{index}.weight"), vec![units, fan_in], transposed));
        tensors.push((format!("{index}.bias"), vec![units], dense.bias.to_vec()));
        let crate::model::Layer::Dense { activation, .. } = layer;
        match activation {
            crate::model::Activation::Linear => {}
            crate::model::Activation::Relu => modules.push("nn.ReLU()".into()),
            crate::model::Activation::Softmax => modules.push("nn.Softmax(dim=1)".into()),
        }
    }
    let code = format!("nn.Sequential({})", modules.join(", "));
    let views = tensors
        .iter()
        .map(|(name, shape, values)| {
            TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(values))
                .map(|view| (name.clone(), view))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    let metadata = HashMap::from([("pytorch_module".to_string(), code.clone())]);
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| err(e.to_string()))?;
    write_atomically(path, &bytes).map_err(|e| err(e.to_string()))?;
    Ok(code)
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

/// The layers stored under `prefix`, checked to chain.
fn read_layers(tensors: &SafeTensors, prefix: &str) -> Result<Vec<Dense>, String> {
    let mut layers: Vec<Dense> = Vec::new();
    for l in 0.. {
        let (kernel_name, bias_name) = tensor_names(prefix, l);
        let Ok(kernel) = tensors.tensor(&kernel_name) else {
            break;
        };
        let bias = tensors
            .tensor(&bias_name)
            .map_err(|_| format!("{kernel_name} has no {bias_name}"))?;
        let (rows, cols) = match kernel.shape() {
            &[r, c] => (r, c),
            s => return Err(format!("{kernel_name} has shape {s:?}, expected 2-D")),
        };
        if bias.shape() != [cols] {
            return Err(format!(
                "{bias_name} has shape {:?}, expected [{cols}]",
                bias.shape()
            ));
        }
        if let Some(prev) = layers.last() {
            if prev.bias.len() != rows {
                return Err(format!(
                    "{kernel_name} takes {rows} inputs, the layer before gives {}",
                    prev.bias.len()
                ));
            }
        }
        layers.push(Dense {
            weights: Array2::from_shape_vec((rows, cols), f32_values(&kernel, &kernel_name)?)
                .map_err(|e| e.to_string())?,
            bias: Array1::from(f32_values(&bias, &bias_name)?),
        });
    }
    Ok(layers)
}

/// Fails on the first tensor (named with `prefix`) holding NaN or infinity.
fn check_finite(params: &Params, prefix: &str) -> Result<(), String> {
    for (l, layer) in params.layers.iter().enumerate() {
        let (kernel, bias) = tensor_names(prefix, l);
        let values = [
            (kernel, layer.weights.as_slice()),
            (bias, layer.bias.as_slice()),
        ];
        for (name, values) in values {
            let values = values.expect("read in standard layout");
            if let Some(v) = values.iter().find(|v| !v.is_finite()) {
                return Err(format!("{name} holds {v}: not a trained model"));
            }
        }
    }
    Ok(())
}

/// The largest checkpoint read: the largest model's parameters with two
/// optimizer slots, and room for the header and metadata.
const MAX_BYTES: u64 = 3 * 4 * crate::model::MAX_PARAMETERS as u64 + (64 << 20);

/// Reads a checkpoint, checking that the layers chain and fit the
/// architecture, and that a run's state is whole. A file without an
/// architecture (an older checkpoint) is taken as relu layers with a softmax head.
pub fn read(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let bytes = read_bytes(path).map_err(|e| CheckpointError {
        path: path.display().to_string(),
        problem: e.to_string(),
    })?;
    from_bytes(&bytes, &path.display().to_string())
}

/// The file's bytes, once its first eight (the header's length) say it can
/// be a safetensors file of its size: a large file of zeros or of anything
/// else is refused before the rest of it is read.
fn read_bytes(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = crate::input_file::open_regular(path)?;
    let len = file.metadata()?.len();
    let mut head = [0u8; 8];
    file.read_exact(&mut head).map_err(|_| {
        std::io::Error::other(format!("{len} bytes, too short for a safetensors header"))
    })?;
    let header = u64::from_le_bytes(head);
    // safetensors' own bound on a header, so a file is never read to learn it.
    const MAX_HEADER: u64 = 100_000_000;
    if header == 0 || header > len - 8 || header > MAX_HEADER {
        return Err(std::io::Error::other(format!(
            "not a safetensors file: its first 8 bytes announce a header of {header} bytes in a file of {len} (at most {MAX_HEADER})"
        )));
    }
    // The whole file, header length included, from the file already open.
    std::io::Seek::rewind(&mut file)?;
    crate::input_file::read_file_bounded(file, MAX_BYTES)
}

/// [`read`] of a checkpoint's bytes; `name` (its path) labels the errors.
pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Checkpoint, CheckpointError> {
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
    let layers = read_layers(&tensors, "").map_err(&err)?;
    if layers.is_empty() {
        return Err(err(
            "no dense_0.kernel tensor: not a gpu-mnist checkpoint".into()
        ));
    }
    let params = Params { layers };
    let dims = params.layer_dims();
    let spec = saved_spec.unwrap_or_else(|| {
        let hidden: Vec<usize> = dims.iter().skip(1).map(|d| d.0).collect();
        ModelSpec::mlp(dims[0].0, &hidden, dims[dims.len() - 1].1)
    });
    spec.validate()
        .map_err(|e| err(format!("the saved architecture cannot be used: {e}")))?;
    if spec.layer_dims() != dims {
        return Err(err(format!(
            "the saved architecture has layers {:?}, the tensors {dims:?}",
            spec.layer_dims()
        )));
    }
    check_finite(&params, "").map_err(&err)?;
    let run = match metadata.get(CONFIG_KEY) {
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
            let slots = (0..config.optimizer.state_slots())
                .map(|slot| {
                    let layers = read_layers(&tensors, &slot_prefix(slot)).map_err(&err)?;
                    let set = Params { layers };
                    check_finite(&set, &slot_prefix(slot)).map_err(&err)?;
                    if set.layer_dims() != dims {
                        return Err(err(format!(
                            "optimizer state slot {slot} has layers {:?}, the model {dims:?}",
                            set.layer_dims()
                        )));
                    }
                    Ok(set)
                })
                .collect::<Result<Vec<_>, _>>()?;
            // A negative mean square would take a square root of it next step.
            if let Some(slot) = config.optimizer.mean_square_slot() {
                let negative = slots.get(slot).is_some_and(|set| {
                    set.layers
                        .iter()
                        .any(|l| l.weights.iter().chain(l.bias.iter()).any(|&v| v < 0.0))
                });
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
        let spec = ModelSpec::sequential(3)
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
        let kernel = &params.layers[1].weights;
        for out in 0..4 {
            for input in 0..2 {
                assert_eq!(values[out * 2 + input], kernel[[input, out]]);
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
        for layer in &mut squares.layers {
            layer.weights.mapv_inplace(f32::abs);
            layer.bias.mapv_inplace(f32::abs);
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
        damaged.slots[1].layers[0].bias[0] = -1.0;
        save_run(&path, &spec, &config, &damaged, HashMap::new()).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.ends_with("optimizer state slot 1 holds a mean of squared gradients, but a value in it is negative"), "{err}");
        // A model saved without its run reads as one without.
        save(&path, &spec, &state.params, HashMap::new()).unwrap();
        assert_eq!(read(&path).unwrap().run, None);
    }

    #[test]
    fn the_architecture_round_trips_with_the_parameters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        // A linear hidden layer: not what the tensor shapes alone would suggest.
        let spec = ModelSpec::sequential(6)
            .dense(4, Activation::Linear)
            .dense(3, Activation::Softmax);
        let params = Params::init(&spec, Init::Glorot, 2);
        let metadata = HashMap::from([(DATASET_KEY.to_string(), "kmnist".to_string())]);
        save(&path, &spec, &params, metadata).unwrap();
        let loaded = read(&path).unwrap();
        assert_eq!((&loaded.spec, &loaded.params), (&spec, &params));
        assert_eq!(loaded.metadata[DATASET_KEY], "kmnist");

        // A file without the architecture reads as relu layers and a softmax head.
        let views: Vec<(String, TensorView)> = params
            .tensors()
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
