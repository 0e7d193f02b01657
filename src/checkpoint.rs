//! Parameters saved as safetensors (`dense_{i}.kernel`, `dense_{i}.bias`, f32), a
//! format PyTorch, JAX and Hugging Face tools read directly, with the
//! architecture as JSON under the metadata key `model` and the data set it was
//! trained on under `dataset`.

use std::collections::HashMap;
use std::path::Path;

use ndarray::{Array1, Array2};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::atomic_file::write_atomically;
use crate::model::{Dense, ModelSpec, Params};

/// Metadata key of the architecture (a [`ModelSpec`] as JSON).
const MODEL_KEY: &str = "model";

/// Metadata key of the data set the parameters were trained on (its catalogue
/// name, e.g. `fashion-mnist`), so that they are not evaluated on another.
pub const DATASET_KEY: &str = "dataset";

/// A checkpoint as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub spec: ModelSpec,
    pub params: Params,
    /// The string metadata it was saved with, the architecture's JSON included.
    pub metadata: HashMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
#[error("checkpoint {path}: {problem}")]
pub struct CheckpointError {
    pub path: String,
    pub problem: String,
}

fn tensor_names(layer: usize) -> (String, String) {
    (
        format!("dense_{layer}.kernel"),
        format!("dense_{layer}.bias"),
    )
}

/// Writes the model (`spec` and `params`, and string `metadata`) atomically
/// to `path`.
pub fn save(
    path: &Path,
    spec: &ModelSpec,
    params: &Params,
    mut metadata: HashMap<String, String>,
) -> Result<(), CheckpointError> {
    let err = |problem: String| CheckpointError {
        path: path.display().to_string(),
        problem,
    };
    let spec_json = serde_json::to_string(spec).map_err(|e| err(e.to_string()))?;
    metadata.insert(MODEL_KEY.to_string(), spec_json);
    let mut views = Vec::new();
    for (l, layer) in params.layers.iter().enumerate() {
        let (kernel, bias) = tensor_names(l);
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
    let views: Vec<(String, TensorView)> = views
        .into_iter()
        .map(|(n, v)| v.map(|v| (n, v)))
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| err(e.to_string()))?;
    write_atomically(path, &bytes).map_err(|e| err(e.to_string()))
}

fn f32_values(view: &TensorView, name: &str) -> Result<Vec<f32>, String> {
    if view.dtype() != Dtype::F32 {
        return Err(format!("{name} is {:?}, expected F32", view.dtype()));
    }
    Ok(view
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect())
}

/// Reads a model saved by [`save`], checking that the layers chain and fit
/// the architecture. A file without one (an older checkpoint) is taken as
/// relu layers with a softmax head.
pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let err = |problem: String| CheckpointError {
        path: path.display().to_string(),
        problem,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| err(e.to_string()))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| err(e.to_string()))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let saved_spec = match metadata.get(MODEL_KEY) {
        Some(json) => Some(
            serde_json::from_str::<ModelSpec>(json)
                .map_err(|e| err(format!("the saved architecture is unreadable: {e}")))?,
        ),
        None => None,
    };
    let mut layers: Vec<Dense> = Vec::new();
    for l in 0.. {
        let (kernel_name, bias_name) = tensor_names(l);
        let Ok(kernel) = tensors.tensor(&kernel_name) else {
            break;
        };
        let bias = tensors
            .tensor(&bias_name)
            .map_err(|_| err(format!("{kernel_name} has no {bias_name}")))?;
        let (rows, cols) = match kernel.shape() {
            &[r, c] => (r, c),
            s => return Err(err(format!("{kernel_name} has shape {s:?}, expected 2-D"))),
        };
        if bias.shape() != [cols] {
            return Err(err(format!(
                "{bias_name} has shape {:?}, expected [{cols}]",
                bias.shape()
            )));
        }
        if let Some(prev) = layers.last() {
            if prev.bias.len() != rows {
                return Err(err(format!(
                    "{kernel_name} takes {rows} inputs, the layer before gives {}",
                    prev.bias.len()
                )));
            }
        }
        layers.push(Dense {
            weights: Array2::from_shape_vec(
                (rows, cols),
                f32_values(&kernel, &kernel_name).map_err(&err)?,
            )
            .map_err(|e| err(e.to_string()))?,
            bias: Array1::from(f32_values(&bias, &bias_name).map_err(&err)?),
        });
    }
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
    if spec.layer_dims() != dims {
        return Err(err(format!(
            "the saved architecture has layers {:?}, the tensors {dims:?}",
            spec.layer_dims()
        )));
    }
    Ok(Checkpoint {
        spec,
        params,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Activation, Init};

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
        let loaded = load(&path).unwrap();
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
        let old = load(&path).unwrap();
        assert_eq!(old.spec, ModelSpec::mlp(6, &[4], 3));
        assert_eq!(old.params, params);
        assert!(old.metadata.is_empty());
    }
}
