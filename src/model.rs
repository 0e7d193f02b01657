//! The network: its architecture (a sequence of layers, built like a Keras
//! `Sequential`) and its parameters as named host tensors, which every device
//! starts from, so devices can be compared step by step.
//!
//! The architecture is the one owner of the parameters' names and shapes
//! ([`ModelSpec::param_shapes`]): checkpoints, the trainer's state, the
//! executors' parameter layout and the PyTorch export iterate them.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What a layer applies to its affine output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Nothing (a linear layer).
    Linear,
    Relu,
    /// Only as the last layer, where it is fused with the cross-entropy loss.
    Softmax,
}

/// How a convolution treats the border (Keras' `padding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// No padding: the output shrinks by `kernel - 1`.
    Valid,
    /// Zero padding that keeps the height and width (the extra row or column
    /// of an even kernel at the bottom and right, as Keras and TensorFlow pad).
    Same,
}

/// One layer of a [`ModelSpec`]. Images are channels-last (`height x width x
/// channels`), as in Keras.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Layer {
    /// Keras' `Dense(units, activation)` on a flat input.
    Dense {
        units: usize,
        activation: Activation,
    },
    /// Keras' `Conv2D(filters, (kernel_size, kernel_size), padding=...,
    /// activation=...)`, stride 1.
    Conv2D {
        filters: usize,
        kernel_size: usize,
        padding: Padding,
        activation: Activation,
    },
    /// Keras' `MaxPooling2D((pool_size, pool_size))`: stride = pool size,
    /// rows and columns that do not fill a window are dropped.
    MaxPooling2D { pool_size: usize },
    /// Keras' `Flatten`: channels-last order, so it moves no data.
    Flatten,
    /// Keras' `Dropout(rate)`: in training, zeroes each value with
    /// probability `rate` and scales the rest by `1 / (1 - rate)`.
    Dropout { rate: f32 },
}

impl Layer {
    /// Keras' class name, for summaries and messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Dense { .. } => "Dense",
            Layer::Conv2D { .. } => "Conv2D",
            Layer::MaxPooling2D { .. } => "MaxPooling2D",
            Layer::Flatten => "Flatten",
            Layer::Dropout { .. } => "Dropout",
        }
    }

    /// The prefix of the layer's name, numbered per kind (`conv2d_0`,
    /// `conv2d_1`, `dense_0`, ...): the names checkpoints store tensors under.
    fn name_prefix(&self) -> &'static str {
        match self {
            Layer::Dense { .. } => "dense",
            Layer::Conv2D { .. } => "conv2d",
            Layer::MaxPooling2D { .. } => "max_pooling2d",
            Layer::Flatten => "flatten",
            Layer::Dropout { .. } => "dropout",
        }
    }

    /// The layer's activation, for layers that have one.
    pub fn activation(&self) -> Option<Activation> {
        match *self {
            Layer::Dense { activation, .. } | Layer::Conv2D { activation, .. } => Some(activation),
            Layer::MaxPooling2D { .. } | Layer::Flatten | Layer::Dropout { .. } => None,
        }
    }
}

/// Height, width and channels of an image tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Image {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
}

impl Image {
    /// `shape` as an image, if it has rank 3.
    pub fn of(shape: &[usize]) -> Option<Image> {
        match *shape {
            [height, width, channels] => Some(Image {
                height,
                width,
                channels,
            }),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.height * self.width * self.channels
    }
}

/// A shape as Keras prints it, with the batch: `(None, 26, 26, 32)`.
pub fn keras_shape(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("(None, {})", dims.join(", "))
}

/// Why an architecture cannot be trained.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("the model has no layers")]
    Empty,
    #[error("the model's input shape {shape:?} has no elements")]
    NoInputs { shape: Vec<usize> },
    #[error("the model's input shape {shape:?} has {elements} values, more than the {MAX_PARAMETERS} supported")]
    InputTooLarge { shape: Vec<usize>, elements: u128 },
    #[error("the model has {layers} layers, more than the {MAX_LAYERS} supported")]
    TooManyLayers { layers: usize },
    #[error("layer {index} ({kind}) has a size of 0")]
    ZeroUnits { index: usize, kind: &'static str },
    #[error("layer {index}: softmax is only supported on the last layer (fused with the loss)")]
    SoftmaxInside { index: usize },
    #[error("the last layer must be Dense with softmax: it is fused with the cross-entropy loss")]
    NoSoftmaxHead,
    #[error("layer {index} ({kind}) needs an image input (height, width, channels), but its input is {}: give the model an image input shape, and put Conv2D and MaxPooling2D before Flatten", keras_shape(shape))]
    NeedsImage {
        index: usize,
        kind: &'static str,
        shape: Vec<usize>,
    },
    #[error(
        "layer {index} (Dense) needs a flat input, but its input is {}: add Flatten before it",
        keras_shape(shape)
    )]
    NeedsFlat { index: usize, shape: Vec<usize> },
    #[error(
        "layer {index} ({kind}): a {size}x{size} window does not fit its {height}x{width} input"
    )]
    WindowTooLarge {
        index: usize,
        kind: &'static str,
        size: usize,
        height: usize,
        width: usize,
    },
    #[error("layer {index} (Dropout): the rate {rate} is not in [0, 1)")]
    BadRate { index: usize, rate: f32 },
    #[error("the model has {parameters} parameters, more than the {MAX_PARAMETERS} (1 GiB of f32) supported")]
    TooLarge { parameters: u128 },
    #[error("layer {index} ({kind}) has an output of {elements} values per example, more than the {MAX_PARAMETERS} supported")]
    TooWide {
        index: usize,
        kind: &'static str,
        elements: u128,
    },
}

/// The most parameters a model may have: with their gradients and two
/// optimizer slots, 4 GiB of host or device memory. A larger request would
/// end in an allocation failure (an abort) rather than an error. It bounds a
/// layer's output per example too.
pub const MAX_PARAMETERS: u128 = 1 << 28;

/// The most layers a model may have: far past any sensible network, and a
/// bound on what a hostile file can make the plan build.
pub const MAX_LAYERS: usize = 1000;

/// A parameter tensor's name (`conv2d_0.kernel`) and shape, in Keras' layout:
/// a Dense kernel is `[fan_in, units]`, a Conv2D kernel
/// `[kernel, kernel, in_channels, filters]`, a bias `[units]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

impl TensorSpec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A network's architecture: the shape of one example and its layers, input
/// side first.
///
/// ```
/// use gpu_mnist::{Activation, ModelSpec};
/// let book = ModelSpec::sequential([784])
///     .dense(512, Activation::Relu)
///     .dense(10, Activation::Softmax);
/// assert_eq!(book.parameter_count(), 407_050);
///
/// let convnet = ModelSpec::sequential([28, 28, 1])
///     .conv2d(32, 3, Activation::Relu)
///     .max_pool(2)
///     .conv2d(64, 3, Activation::Relu)
///     .max_pool(2)
///     .conv2d(64, 3, Activation::Relu)
///     .flatten()
///     .dense(64, Activation::Relu)
///     .dense(10, Activation::Softmax);
/// assert_eq!(convnet.parameter_count(), 93_322);
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(from = "SavedSpec")]
pub struct ModelSpec {
    /// One example's shape: `[features]`, or `[height, width, channels]`.
    pub input_shape: Vec<usize>,
    pub layers: Vec<Layer>,
}

/// A saved architecture as read: this version's `input_shape`, or the
/// feature count `inputs` that earlier versions wrote.
#[derive(serde::Deserialize)]
struct SavedSpec {
    #[serde(default)]
    input_shape: Option<Vec<usize>>,
    #[serde(default)]
    inputs: Option<usize>,
    layers: Vec<Layer>,
}

impl From<SavedSpec> for ModelSpec {
    fn from(saved: SavedSpec) -> Self {
        let input_shape = saved
            .input_shape
            .or(saved.inputs.map(|n| vec![n]))
            .unwrap_or_default();
        Self {
            input_shape,
            layers: saved.layers,
        }
    }
}

impl ModelSpec {
    /// An empty stack taking examples of `input_shape` (`[784]`, or
    /// `[28, 28, 1]` for images).
    pub fn sequential(input_shape: impl Into<Vec<usize>>) -> Self {
        Self {
            input_shape: input_shape.into(),
            layers: Vec::new(),
        }
    }

    /// Appends `layer`.
    pub fn layer(mut self, layer: Layer) -> Self {
        self.layers.push(layer);
        self
    }

    /// Appends `Dense(units, activation)`.
    pub fn dense(self, units: usize, activation: Activation) -> Self {
        self.layer(Layer::Dense { units, activation })
    }

    /// Appends `Conv2D(filters, (kernel, kernel), activation)` with `valid` padding.
    pub fn conv2d(self, filters: usize, kernel_size: usize, activation: Activation) -> Self {
        self.layer(Layer::Conv2D {
            filters,
            kernel_size,
            padding: Padding::Valid,
            activation,
        })
    }

    /// Appends `MaxPooling2D((pool_size, pool_size))`.
    pub fn max_pool(self, pool_size: usize) -> Self {
        self.layer(Layer::MaxPooling2D { pool_size })
    }

    pub fn flatten(self) -> Self {
        self.layer(Layer::Flatten)
    }

    pub fn dropout(self, rate: f32) -> Self {
        self.layer(Layer::Dropout { rate })
    }

    /// Relu hidden layers of the given widths, then a softmax layer of `classes`.
    pub fn mlp(inputs: usize, hidden: &[usize], classes: usize) -> Self {
        hidden
            .iter()
            .fold(Self::sequential([inputs]), |m, &w| {
                m.dense(w, Activation::Relu)
            })
            .dense(classes, Activation::Softmax)
    }

    /// The book's chapter-5 convnet for `height x width x 1` images and `classes`.
    pub fn convnet(height: usize, width: usize, classes: usize) -> Self {
        Self::sequential([height, width, 1])
            .conv2d(32, 3, Activation::Relu)
            .max_pool(2)
            .conv2d(64, 3, Activation::Relu)
            .max_pool(2)
            .conv2d(64, 3, Activation::Relu)
            .flatten()
            .dense(64, Activation::Relu)
            .dense(classes, Activation::Softmax)
    }

    /// Values per example of the input.
    pub fn input_len(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// Checks that the engine can train this architecture.
    pub fn validate(&self) -> Result<(), ModelError> {
        self.output_shapes()?;
        let parameters = self.exact_parameter_count();
        if parameters > MAX_PARAMETERS {
            return Err(ModelError::TooLarge { parameters });
        }
        Ok(())
    }

    /// Each layer's output shape (one example), checking that each layer
    /// fits its input.
    pub fn output_shapes(&self) -> Result<Vec<Vec<usize>>, ModelError> {
        let input_elements = self
            .input_shape
            .iter()
            .try_fold(1u128, |n, &d| n.checked_mul(d as u128))
            .unwrap_or(u128::MAX);
        if self.input_shape.is_empty() || input_elements == 0 {
            return Err(ModelError::NoInputs {
                shape: self.input_shape.clone(),
            });
        }
        if input_elements > MAX_PARAMETERS {
            return Err(ModelError::InputTooLarge {
                shape: self.input_shape.clone(),
                elements: input_elements,
            });
        }
        if self.layers.len() > MAX_LAYERS {
            return Err(ModelError::TooManyLayers {
                layers: self.layers.len(),
            });
        }
        let last = self.layers.len().checked_sub(1).ok_or(ModelError::Empty)?;
        let mut shape = self.input_shape.clone();
        let mut shapes = Vec::with_capacity(self.layers.len());
        for (index, layer) in self.layers.iter().enumerate() {
            let kind = layer.kind();
            let zero = || ModelError::ZeroUnits { index, kind };
            let image = || {
                Image::of(&shape).ok_or_else(|| ModelError::NeedsImage {
                    index,
                    kind,
                    shape: shape.clone(),
                })
            };
            let fits = |image: Image, size: usize| {
                if size > image.height || size > image.width {
                    Err(ModelError::WindowTooLarge {
                        index,
                        kind,
                        size,
                        height: image.height,
                        width: image.width,
                    })
                } else {
                    Ok(())
                }
            };
            if layer.activation() == Some(Activation::Softmax) && index != last {
                return Err(ModelError::SoftmaxInside { index });
            }
            let next = match *layer {
                Layer::Dense { units, .. } => {
                    if shape.len() != 1 {
                        return Err(ModelError::NeedsFlat {
                            index,
                            shape: shape.clone(),
                        });
                    }
                    if units == 0 {
                        return Err(zero());
                    }
                    vec![units]
                }
                Layer::Conv2D {
                    filters,
                    kernel_size,
                    padding,
                    ..
                } => {
                    let image = image()?;
                    if filters == 0 || kernel_size == 0 {
                        return Err(zero());
                    }
                    match padding {
                        Padding::Valid => {
                            fits(image, kernel_size)?;
                            vec![
                                image.height - kernel_size + 1,
                                image.width - kernel_size + 1,
                                filters,
                            ]
                        }
                        Padding::Same => vec![image.height, image.width, filters],
                    }
                }
                Layer::MaxPooling2D { pool_size } => {
                    let image = image()?;
                    if pool_size == 0 {
                        return Err(zero());
                    }
                    fits(image, pool_size)?;
                    vec![
                        image.height / pool_size,
                        image.width / pool_size,
                        image.channels,
                    ]
                }
                Layer::Flatten => vec![shape.iter().product()],
                Layer::Dropout { rate } => {
                    if !(0.0..1.0).contains(&rate) {
                        return Err(ModelError::BadRate { index, rate });
                    }
                    shape.clone()
                }
            };
            let elements = next.iter().map(|&d| d as u128).product::<u128>();
            if elements > MAX_PARAMETERS {
                return Err(ModelError::TooWide {
                    index,
                    kind,
                    elements,
                });
            }
            shape = next;
            shapes.push(shape.clone());
        }
        let head_is_dense = matches!(
            self.layers[last],
            Layer::Dense {
                activation: Activation::Softmax,
                ..
            }
        );
        if !head_is_dense {
            return Err(ModelError::NoSoftmaxHead);
        }
        Ok(shapes)
    }

    /// Each layer's input shape (the output shape of the layer before it).
    /// The model must be valid.
    pub(crate) fn input_shapes(&self) -> Vec<Vec<usize>> {
        let outputs = self.output_shapes().expect("a validated model");
        std::iter::once(self.input_shape.clone())
            .chain(outputs)
            .take(self.layers.len())
            .collect()
    }

    /// Number of classes: the last layer's width.
    pub fn classes(&self) -> usize {
        match self.layers.last() {
            Some(Layer::Dense { units, .. }) => *units,
            _ => 0,
        }
    }

    /// Each layer's name: its kind's prefix numbered per kind (`conv2d_0`,
    /// `max_pooling2d_0`, `conv2d_1`, ..., `dense_0`).
    pub fn layer_names(&self) -> Vec<String> {
        let mut counts = std::collections::HashMap::new();
        self.layers
            .iter()
            .map(|layer| {
                let prefix = layer.name_prefix();
                let n = counts.entry(prefix).or_insert(0usize);
                let name = format!("{prefix}_{n}");
                *n += 1;
                name
            })
            .collect()
    }

    /// The parameter tensors of each layer (none for pooling, flattening and
    /// dropout), given each layer's input shape.
    fn layer_tensors(layer: &Layer, name: &str, input: &[usize]) -> Vec<TensorSpec> {
        let tensor = |suffix: &str, shape: Vec<usize>| TensorSpec {
            name: format!("{name}.{suffix}"),
            shape,
        };
        match *layer {
            Layer::Dense { units, .. } => vec![
                tensor("kernel", vec![input.iter().product(), units]),
                tensor("bias", vec![units]),
            ],
            Layer::Conv2D {
                filters,
                kernel_size,
                ..
            } => {
                let channels = input.last().copied().unwrap_or(0);
                vec![
                    tensor("kernel", vec![kernel_size, kernel_size, channels, filters]),
                    tensor("bias", vec![filters]),
                ]
            }
            Layer::MaxPooling2D { .. } | Layer::Flatten | Layer::Dropout { .. } => Vec::new(),
        }
    }

    /// Every parameter tensor of the (valid) model, input side first, each
    /// layer's kernel before its bias: the one order every device, checkpoint
    /// and export uses.
    pub fn param_shapes(&self) -> Vec<TensorSpec> {
        self.per_layer_tensors().into_iter().flatten().collect()
    }

    /// [`Self::param_shapes`] grouped by layer.
    pub(crate) fn per_layer_tensors(&self) -> Vec<Vec<TensorSpec>> {
        self.layers
            .iter()
            .zip(self.layer_names())
            .zip(self.input_shapes())
            .map(|((layer, name), input)| Self::layer_tensors(layer, &name, &input))
            .collect()
    }

    pub fn parameter_count(&self) -> usize {
        self.exact_parameter_count() as usize
    }

    /// The parameter count without overflow, whatever sizes a user or a file
    /// gave (0 for a model whose shapes do not chain).
    fn exact_parameter_count(&self) -> u128 {
        let Ok(outputs) = self.output_shapes() else {
            return 0;
        };
        let inputs = std::iter::once(&self.input_shape).chain(&outputs);
        self.layers
            .iter()
            .zip(inputs)
            .map(|(layer, input)| match *layer {
                Layer::Dense { units, .. } => {
                    let fan_in: u128 = input.iter().map(|&d| d as u128).product();
                    (fan_in + 1).saturating_mul(units as u128)
                }
                Layer::Conv2D {
                    filters,
                    kernel_size,
                    ..
                } => {
                    let channels = *input.last().unwrap_or(&0) as u128;
                    // Saturating: a file may give sizes whose product passes u128.
                    let k = kernel_size as u128;
                    k.saturating_mul(k)
                        .saturating_mul(channels)
                        .saturating_add(1)
                        .saturating_mul(filters as u128)
                }
                Layer::MaxPooling2D { .. } | Layer::Flatten | Layer::Dropout { .. } => 0,
            })
            .fold(0u128, u128::saturating_add)
    }

    /// Multiply-add FLOPs (2 per MAC) of one training sample: the products of
    /// the forward pass, the weight gradients, and the input gradients of
    /// every layer but the first (whose input gradient nobody needs).
    pub fn train_flops_per_sample(&self) -> u64 {
        let Ok(outputs) = self.output_shapes() else {
            return 0;
        };
        let inputs = std::iter::once(&self.input_shape).chain(&outputs);
        let mut first = true;
        let mut flops = 0u64;
        for ((layer, input), output) in self.layers.iter().zip(inputs).zip(&outputs) {
            let macs = match *layer {
                Layer::Dense { units, .. } => (input.iter().product::<usize>() * units) as u64,
                Layer::Conv2D { kernel_size, .. } => {
                    let channels = input[2];
                    (output.iter().product::<usize>() * kernel_size * kernel_size * channels) as u64
                }
                Layer::MaxPooling2D { .. } | Layer::Flatten | Layer::Dropout { .. } => continue,
            };
            flops += 2 * macs * if first { 2 } else { 3 };
            first = false;
        }
        flops
    }
}

impl std::fmt::Display for ModelSpec {
    /// A Keras-style summary: one line per layer with its output shape and
    /// parameter count.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<32}{:<22}{:>10}",
            "Layer (type)", "Output Shape", "Param #"
        )?;
        let Ok(shapes) = self.output_shapes() else {
            return write!(f, "(an invalid model)");
        };
        for (((layer, name), shape), tensors) in self
            .layers
            .iter()
            .zip(self.layer_names())
            .zip(&shapes)
            .zip(self.per_layer_tensors())
        {
            let kind = match layer.activation() {
                Some(Activation::Linear) | None => layer.kind().to_string(),
                Some(a) => format!("{}, {}", layer.kind(), format!("{a:?}").to_lowercase()),
            };
            let count: usize = tensors.iter().map(TensorSpec::len).sum();
            writeln!(
                f,
                "{:<32}{:<22}{count:>10}",
                format!("{name} ({kind})"),
                keras_shape(shape)
            )?;
        }
        write!(f, "Total params: {}", self.parameter_count())
    }
}

/// How kernels are initialised; biases always start at zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Init {
    /// Keras' default: uniform in `±sqrt(6 / (fan_in + fan_out))`, with a
    /// convolution's fans counted over its window (`k·k·in`, `k·k·out`).
    Glorot,
    /// The book's from-scratch weights: uniform in `[0, 0.1)`.
    Uniform,
}

/// One named parameter tensor: row-major values of its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// The parameters of a model (or a parameter-shaped optimizer state), in
/// [`ModelSpec::param_shapes`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub tensors: Vec<Tensor>,
}

impl Params {
    /// Seeded initialisation: the same seed gives the same parameters everywhere.
    /// Kernels draw their values in order, layer by layer; biases are zero.
    pub fn init(spec: &ModelSpec, init: Init, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let tensors = spec
            .param_shapes()
            .into_iter()
            .map(|TensorSpec { name, shape }| {
                let len = shape.iter().product();
                let values = if name.ends_with(".kernel") {
                    // Fans: a kernel's last axis is its outputs, the rest its
                    // inputs; a convolution's window counts on both sides.
                    let fan_out = shape[shape.len() - 1];
                    let fan_in = shape[shape.len() - 2];
                    let window: usize = shape[..shape.len() - 2].iter().product();
                    let (low, high) = match init {
                        Init::Glorot => {
                            let fans = window * (fan_in + fan_out);
                            let limit = (6.0 / fans as f64).sqrt() as f32;
                            (-limit, limit)
                        }
                        Init::Uniform => (0.0, 0.1),
                    };
                    (0..len).map(|_| rng.random_range(low..high)).collect()
                } else {
                    vec![0.0; len]
                };
                Tensor {
                    name,
                    shape,
                    values,
                }
            })
            .collect();
        Self { tensors }
    }

    /// Parameters of `spec` from values in [`ModelSpec::param_shapes`] order.
    pub(crate) fn from_values(spec: &ModelSpec, values: Vec<Vec<f32>>) -> Self {
        let tensors = spec
            .param_shapes()
            .into_iter()
            .zip(values)
            .map(|(TensorSpec { name, shape }, values)| {
                debug_assert_eq!(values.len(), shape.iter().product::<usize>());
                Tensor {
                    name,
                    shape,
                    values,
                }
            })
            .collect();
        Self { tensors }
    }

    /// Each tensor's values, in order.
    pub fn values(&self) -> Vec<&[f32]> {
        self.tensors.iter().map(|t| t.values.as_slice()).collect()
    }

    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Each tensor's name and shape.
    pub fn shapes(&self) -> Vec<TensorSpec> {
        self.tensors
            .iter()
            .map(|t| TensorSpec {
                name: t.name.clone(),
                shape: t.shape.clone(),
            })
            .collect()
    }

    /// Largest absolute difference to `other`, tensor by tensor (for parity tests).
    pub fn max_abs_diff(&self, other: &Params) -> f32 {
        self.values()
            .iter()
            .zip(other.values())
            .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
            .fold(0.0, f32::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_books_network_has_its_shapes_and_parameter_count() {
        let spec = ModelSpec::mlp(784, &[512], 10);
        let shapes: Vec<_> = spec.param_shapes().into_iter().map(|t| t.shape).collect();
        assert_eq!(shapes, [vec![784, 512], vec![512], vec![512, 10], vec![10]]);
        assert_eq!(spec.parameter_count(), 784 * 512 + 512 + 512 * 10 + 10);
        assert_eq!(spec.classes(), 10);
        assert_eq!(spec.validate(), Ok(()));
        // Forward 784x512 + 512x10, weight gradients of both, input gradient of the second.
        assert_eq!(
            spec.train_flops_per_sample(),
            2 * (2 * 784 * 512 + 3 * 512 * 10) as u64
        );
    }

    #[test]
    fn the_books_convnet_has_keras_shapes_and_names() {
        let spec = ModelSpec::convnet(28, 28, 10);
        assert_eq!(spec.validate(), Ok(()));
        assert_eq!(
            spec.output_shapes().unwrap(),
            [
                vec![26, 26, 32],
                vec![13, 13, 32],
                vec![11, 11, 64],
                vec![5, 5, 64],
                vec![3, 3, 64],
                vec![576],
                vec![64],
                vec![10]
            ]
        );
        let tensors: Vec<(String, Vec<usize>)> = spec
            .param_shapes()
            .into_iter()
            .map(|t| (t.name, t.shape))
            .collect();
        assert_eq!(tensors[0], ("conv2d_0.kernel".into(), vec![3, 3, 1, 32]));
        assert_eq!(tensors[2], ("conv2d_1.kernel".into(), vec![3, 3, 32, 64]));
        assert_eq!(tensors[6], ("dense_0.kernel".into(), vec![576, 64]));
        assert_eq!(tensors[9], ("dense_1.bias".into(), vec![10]));
        // Keras' model.summary() of the book's convnet.
        let text = spec.to_string();
        for line in [
            "conv2d_0 (Conv2D, relu)         (None, 26, 26, 32)           320",
            "max_pooling2d_1 (MaxPooling2D)  (None, 5, 5, 64)               0",
            "conv2d_2 (Conv2D, relu)         (None, 3, 3, 64)           36928",
            "flatten_0 (Flatten)             (None, 576)                    0",
            "dense_0 (Dense, relu)           (None, 64)                 36928",
            "Total params: 93322",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
    }

    #[test]
    fn same_padding_keeps_the_size_and_pools_floor() {
        let spec = ModelSpec::sequential([7, 5, 2])
            .layer(Layer::Conv2D {
                filters: 3,
                kernel_size: 4,
                padding: Padding::Same,
                activation: Activation::Linear,
            })
            .max_pool(2)
            .dropout(0.5)
            .flatten()
            .dense(2, Activation::Softmax);
        assert_eq!(
            spec.output_shapes().unwrap(),
            [
                vec![7, 5, 3],
                vec![3, 2, 3],
                vec![3, 2, 3],
                vec![18],
                vec![2]
            ]
        );
        assert_eq!(spec.parameter_count(), 4 * 4 * 2 * 3 + 3 + 18 * 2 + 2);
    }

    #[test]
    fn invalid_architectures_are_named() {
        let s = |n: usize| ModelSpec::sequential([n]);
        assert_eq!(s(4).validate(), Err(ModelError::Empty));
        assert_eq!(
            s(0).dense(2, Activation::Softmax).validate(),
            Err(ModelError::NoInputs { shape: vec![0] })
        );
        assert_eq!(
            s(4).dense(0, Activation::Relu)
                .dense(2, Activation::Softmax)
                .validate(),
            Err(ModelError::ZeroUnits {
                index: 0,
                kind: "Dense"
            })
        );
        assert_eq!(
            s(4).dense(3, Activation::Softmax)
                .dense(2, Activation::Softmax)
                .validate(),
            Err(ModelError::SoftmaxInside { index: 0 })
        );
        assert_eq!(
            s(4).dense(3, Activation::Relu).validate(),
            Err(ModelError::NoSoftmaxHead)
        );
        // 784·65537 + 65536·65537 + 65536·10 + 10: refused before any allocation.
        let huge = ModelSpec::mlp(784, &[65536, 65536], 10);
        assert_eq!(
            huge.validate(),
            Err(ModelError::TooLarge {
                parameters: 4_347_133_962
            })
        );
        // Widths that would overflow a usize product are counted exactly.
        let absurd = ModelSpec::mlp(784, &[usize::MAX], 10);
        assert!(matches!(
            absurd.validate(),
            Err(ModelError::TooWide { .. } | ModelError::TooLarge { .. })
        ));
        let limit = ModelSpec::mlp(1, &[], (MAX_PARAMETERS / 2) as usize);
        assert_eq!(limit.validate(), Ok(()));

        let image = || ModelSpec::sequential([28, 28, 1]);
        let err = image()
            .dense(10, Activation::Softmax)
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "layer 0 (Dense) needs a flat input, but its input is (None, 28, 28, 1): add Flatten before it"
        );
        let err = s(784)
            .conv2d(8, 3, Activation::Relu)
            .flatten()
            .dense(10, Activation::Softmax)
            .validate()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("layer 0 (Conv2D) needs an image input (height, width, channels), but its input is (None, 784)"),
            "{err}"
        );
        let err = image()
            .max_pool(2)
            .max_pool(16)
            .flatten()
            .dense(10, Activation::Softmax)
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "layer 1 (MaxPooling2D): a 16x16 window does not fit its 14x14 input"
        );
        assert_eq!(
            image()
                .dropout(1.0)
                .flatten()
                .dense(2, Activation::Softmax)
                .validate(),
            Err(ModelError::BadRate {
                index: 0,
                rate: 1.0
            })
        );
        assert_eq!(
            image()
                .conv2d(4, 3, Activation::Softmax)
                .flatten()
                .dense(2, Activation::Softmax)
                .validate(),
            Err(ModelError::SoftmaxInside { index: 0 })
        );
        assert_eq!(image().flatten().validate(), Err(ModelError::NoSoftmaxHead));
    }

    #[test]
    fn initialisation_is_seeded_and_in_range() {
        let spec = ModelSpec::mlp(6, &[4], 3);
        let a = Params::init(&spec, Init::Glorot, 7);
        assert_eq!(a, Params::init(&spec, Init::Glorot, 7));
        assert_ne!(a, Params::init(&spec, Init::Glorot, 8));
        let limit = (6.0f32 / 10.0).sqrt();
        assert!(a.tensors[0].values.iter().all(|w| w.abs() <= limit));
        assert!(a.tensors[1].values.iter().all(|&b| b == 0.0));
        let u = Params::init(&spec, Init::Uniform, 7);
        assert!(u.values()[0].iter().all(|&w| (0.0..0.1).contains(&w)));
        let rebuilt = Params::from_values(&spec, a.values().iter().map(|t| t.to_vec()).collect());
        assert_eq!(rebuilt, a);

        // A convolution's fans count its window: 3·3·(1 + 32) for the first.
        let convnet = Params::init(&ModelSpec::convnet(28, 28, 10), Init::Glorot, 1);
        let limit = (6.0f32 / (9.0 * 33.0)).sqrt();
        let kernel = &convnet.get("conv2d_0.kernel").unwrap().values;
        let max = kernel.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(max <= limit && max > 0.9 * limit, "{max} vs {limit}");
    }

    #[test]
    fn summary_lists_layers_like_keras() {
        let text = ModelSpec::mlp(784, &[512], 10).to_string();
        assert!(text.contains("dense_0 (Dense, relu)"), "{text}");
        assert!(
            text.contains("(None, 512)") && text.contains("401920"),
            "{text}"
        );
        assert!(text.ends_with("Total params: 407050"), "{text}");
    }

    #[test]
    fn architectures_saved_by_earlier_versions_read() {
        let old = r#"{"inputs":784,"layers":[{"Dense":{"units":512,"activation":"relu"}},{"Dense":{"units":10,"activation":"softmax"}}]}"#;
        let spec: ModelSpec = serde_json::from_str(old).unwrap();
        assert_eq!(spec, ModelSpec::mlp(784, &[512], 10));
        let json = serde_json::to_string(&ModelSpec::convnet(28, 28, 10)).unwrap();
        let back: ModelSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ModelSpec::convnet(28, 28, 10));
    }
}
