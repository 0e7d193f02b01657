//! A model as the `state_dict` of the PyTorch `nn.Sequential` that computes
//! the same function, for users who continue in PyTorch.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use super::CheckpointError;
use crate::atomic_file::write_atomically;
use crate::model::{Activation, Image, Layer, ModelSpec, Padding, Params};

/// Writes the model as the `state_dict` of PyTorch's `nn.Sequential` of the
/// same layers (safetensors): each layer with parameters at its module index
/// (each non-linear activation being a module of its own), in PyTorch's
/// layouts: `nn.Linear.weight` `[out, in]`, `nn.Conv2d.weight`
/// `[out, in, kh, kw]`. PyTorch images are channels-first (`N x C x H x W`),
/// so the first `nn.Linear` after `nn.Flatten` has its inputs permuted from
/// Keras' `(h, w, c)` order to PyTorch's `(c, h, w)`. Returns the module
/// list as PyTorch code, to build the network it loads into.
pub fn export_pytorch(
    path: &Path,
    spec: &ModelSpec,
    params: &Params,
) -> Result<String, CheckpointError> {
    let err = |problem: String| CheckpointError {
        path: path.display().to_string(),
        problem,
    };
    let mut modules: Vec<String> = Vec::new();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut kept = params.tensors.iter();
    // The image a Flatten flattened, until the Dense layer that reads it.
    let mut flattened: Option<Image> = None;
    for (layer, input) in spec.layers.iter().zip(spec.input_shapes()) {
        let index = modules.len();
        match *layer {
            Layer::Dense { units, activation } => {
                let (kernel, bias) = (next(&mut kept), next(&mut kept));
                let fan_in = kernel.shape[0];
                modules.push(format!("nn.Linear({fan_in}, {units})"));
                // weight[out][in'] = kernel[in][out], in' PyTorch's input order.
                let mut weight = vec![0.0; units * fan_in];
                for row in 0..fan_in {
                    let torch_row = flattened.map_or(row, |image| channels_first(image, row));
                    for out in 0..units {
                        weight[out * fan_in + torch_row] = kernel.values[row * units + out];
                    }
                }
                flattened = None;
                tensors.push((format!("{index}.weight"), vec![units, fan_in], weight));
                tensors.push((format!("{index}.bias"), vec![units], bias.values.clone()));
                modules.extend(activation_module(activation));
            }
            Layer::Conv2D {
                filters,
                kernel_size: k,
                padding,
                activation,
            } => {
                let (kernel, bias) = (next(&mut kept), next(&mut kept));
                let channels = kernel.shape[2];
                let padding = match padding {
                    Padding::Valid => "0",
                    Padding::Same => "'same'",
                };
                modules.push(format!(
                    "nn.Conv2d({channels}, {filters}, {k}, padding={padding})"
                ));
                // weight[o][i][y][x] = kernel[y][x][i][o].
                let mut weight = vec![0.0; filters * channels * k * k];
                for (at, &v) in kernel.values.iter().enumerate() {
                    let o = at % filters;
                    let i = (at / filters) % channels;
                    let x = (at / (filters * channels)) % k;
                    let y = at / (filters * channels * k);
                    weight[((o * channels + i) * k + y) * k + x] = v;
                }
                tensors.push((format!("{index}.weight"), vec![filters, channels, k, k], weight));
                tensors.push((format!("{index}.bias"), vec![filters], bias.values.clone()));
                modules.extend(activation_module(activation));
            }
            Layer::MaxPooling2D { pool_size } => modules.push(format!("nn.MaxPool2d({pool_size})")),
            Layer::Flatten => {
                flattened = Image::of(&input);
                modules.push("nn.Flatten()".into());
            }
            Layer::Dropout { rate } => modules.push(format!("nn.Dropout({rate})")),
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

fn next<'a>(tensors: &mut impl Iterator<Item = &'a crate::model::Tensor>) -> &'a crate::model::Tensor {
    tensors.next().expect("parameters of the model's shapes")
}

fn activation_module(activation: Activation) -> Option<String> {
    match activation {
        Activation::Linear => None,
        Activation::Relu => Some("nn.ReLU()".into()),
        Activation::Softmax => Some("nn.Softmax(dim=1)".into()),
    }
}

/// Where value `at` of a channels-last flattened `image` lands when the
/// image is flattened channels-first.
fn channels_first(image: Image, at: usize) -> usize {
    let c = at % image.channels;
    let pixel = at / image.channels;
    c * image.height * image.width + pixel
}
