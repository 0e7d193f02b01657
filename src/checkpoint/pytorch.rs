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
                tensors.push((
                    format!("{index}.weight"),
                    vec![filters, channels, k, k],
                    weight,
                ));
                tensors.push((format!("{index}.bias"), vec![filters], bias.values.clone()));
                modules.extend(activation_module(activation));
            }
            Layer::MaxPooling2D { pool_size } => modules.push(format!("nn.MaxPool2d({pool_size})")),
            Layer::Flatten => {
                // A second Flatten leaves the order the first one chose.
                if let Some(image) = Image::of(&input) {
                    flattened = Some(image);
                }
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

fn next<'a>(
    tensors: &mut impl Iterator<Item = &'a crate::model::Tensor>,
) -> &'a crate::model::Tensor {
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

// Blocking, native: the browser runs the conformance suite only.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use std::sync::Arc;

    use safetensors::SafeTensors;

    use super::*;
    use crate::data::{pixel, Dataset, Splits};
    use crate::model::Init;
    use crate::{Device, Evaluator};

    /// What PyTorch computes with the exported `state_dict`: channels-first
    /// images through `nn.Conv2d` (valid or same), `nn.ReLU`,
    /// `nn.MaxPool2d`, `nn.Flatten` (C, H, W order) and `nn.Linear`, in f64.
    fn torch_logits(modules: &str, file: &SafeTensors, image: &[u8], hw: usize) -> Vec<f64> {
        let tensor = |name: String| -> (Vec<usize>, Vec<f64>) {
            let view = file.tensor(&name).unwrap();
            let values = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect();
            (view.shape().to_vec(), values)
        };
        // x: (channels, height, width), or flat.
        let mut x: Vec<f64> = image.iter().map(|&p| pixel(p) as f64).collect();
        let (mut c, mut h, mut w) = (x.len() / (hw * hw), hw, hw);
        let body = modules
            .trim_start_matches("nn.Sequential(")
            .trim_end_matches(')');
        for (index, module) in body.split(", nn.").enumerate() {
            let module = module.trim_start_matches("nn.");
            if module.starts_with("Conv2d") {
                let (shape, weight) = tensor(format!("{index}.weight"));
                let (_, bias) = tensor(format!("{index}.bias"));
                let (out, k) = (shape[0], shape[2]);
                let pad = if module.contains("'same'") {
                    (k - 1) / 2
                } else {
                    0
                };
                let (oh, ow) = if pad == 0 && !module.contains("'same'") {
                    (h - k + 1, w - k + 1)
                } else {
                    (h, w)
                };
                let mut y = vec![0.0; out * oh * ow];
                for o in 0..out {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut sum = bias[o];
                            for i in 0..c {
                                for ky in 0..k {
                                    for kx in 0..k {
                                        let (iy, ix) = (
                                            (oy + ky) as isize - pad as isize,
                                            (ox + kx) as isize - pad as isize,
                                        );
                                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize
                                        {
                                            continue;
                                        }
                                        sum += weight[((o * c + i) * k + ky) * k + kx]
                                            * x[(i * h + iy as usize) * w + ix as usize];
                                    }
                                }
                            }
                            y[(o * oh + oy) * ow + ox] = sum;
                        }
                    }
                }
                (x, c, h, w) = (y, out, oh, ow);
            } else if module.starts_with("MaxPool2d") {
                let p: usize = module["MaxPool2d(".len()..module.len() - 1]
                    .parse()
                    .unwrap();
                let (oh, ow) = (h / p, w / p);
                let mut y = vec![f64::NEG_INFINITY; c * oh * ow];
                for i in 0..c {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            for dy in 0..p {
                                for dx in 0..p {
                                    let v = x[(i * h + oy * p + dy) * w + ox * p + dx];
                                    let m = &mut y[(i * oh + oy) * ow + ox];
                                    *m = m.max(v);
                                }
                            }
                        }
                    }
                }
                (x, h, w) = (y, oh, ow);
            } else if module.starts_with("ReLU") {
                x.iter_mut().for_each(|v| *v = v.max(0.0));
            } else if module.starts_with("Linear") {
                let (shape, weight) = tensor(format!("{index}.weight"));
                let (_, bias) = tensor(format!("{index}.bias"));
                x = (0..shape[0])
                    .map(|o| {
                        bias[o]
                            + (0..shape[1])
                                .map(|i| weight[o * shape[1] + i] * x[i])
                                .sum::<f64>()
                    })
                    .collect();
            }
            // Flatten: x is already stored (C, H, W); Softmax is applied below.
        }
        x
    }

    #[test]
    fn the_exported_convnet_computes_what_the_engine_does() {
        let spec = ModelSpec::sequential([8, 8, 2])
            .conv2d(3, 3, Activation::Relu)
            .layer(Layer::Conv2D {
                filters: 4,
                kernel_size: 2,
                padding: Padding::Same,
                activation: Activation::Relu,
            })
            .max_pool(2)
            .flatten()
            .dense(5, Activation::Relu)
            .dense(3, Activation::Softmax);
        let mut params = Params::init(&spec, Init::Glorot, 4);
        for t in &mut params.tensors {
            if t.name.ends_with(".bias") {
                for (i, v) in t.values.iter_mut().enumerate() {
                    *v = 0.05 * (i as f32 - 1.0);
                }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("torch.safetensors");
        let code = export_pytorch(&path, &spec, &params).unwrap();
        assert_eq!(
            code,
            "nn.Sequential(nn.Conv2d(2, 3, 3, padding=0), nn.ReLU(), nn.Conv2d(3, 4, 2, padding='same'), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 5), nn.ReLU(), nn.Linear(5, 3), nn.Softmax(dim=1))"
        );
        let bytes = std::fs::read(&path).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(file.tensor("0.weight").unwrap().shape(), [3, 2, 3, 3]);

        // Two images, channels-last as the engine reads them; PyTorch reads
        // the same values channels-first.
        let images: Vec<u8> = (0..2 * 128).map(|i| ((i * 37) % 256) as u8).collect();
        let set = Dataset::new(images.clone(), vec![0, 1], 128, 3).unwrap();
        let data = Arc::new(Splits::new(set.clone(), set));
        let mut model = Evaluator::new(&Device::Cpu, &spec, &params, data, 2).unwrap();
        let probs = model.predict(&images).unwrap();
        for (image, engine) in images.chunks(128).zip(&probs) {
            let mut chw = vec![0u8; 128];
            for (at, &v) in image.iter().enumerate() {
                let (pixel, c) = (at / 2, at % 2);
                chw[c * 64 + pixel] = v;
            }
            let logits = torch_logits(&code, &file, &chw, 8);
            let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = logits.iter().map(|z| (z - max).exp()).sum();
            for (z, &p) in logits.iter().zip(engine) {
                let torch = (z - max).exp() / sum;
                assert!((torch - p as f64).abs() < 1e-5, "{torch} vs {p}");
            }
        }
    }
}
