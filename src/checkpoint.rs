//! Parameters saved as safetensors (`dense_{i}.kernel`, `dense_{i}.bias`, f32), a
//! format PyTorch, JAX and Hugging Face tools read directly.

use std::collections::HashMap;
use std::path::Path;

use ndarray::{Array1, Array2};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::atomic_file::write_atomically;
use crate::model::{Dense, Params};

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

/// Writes `params` (and string `metadata`) atomically to `path`.
pub fn save(
    path: &Path,
    params: &Params,
    metadata: HashMap<String, String>,
) -> Result<(), CheckpointError> {
    let err = |problem: String| CheckpointError {
        path: path.display().to_string(),
        problem,
    };
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

/// Reads parameters saved by [`save`], checking that the layers chain.
pub fn load(path: &Path) -> Result<Params, CheckpointError> {
    let err = |problem: String| CheckpointError {
        path: path.display().to_string(),
        problem,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| err(e.to_string()))?;
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
    Ok(Params { layers })
}
