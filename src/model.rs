//! The network: its architecture (a sequence of layers, built like a Keras
//! `Sequential`) and its parameters as host tensors, which every device starts
//! from, so devices can be compared step by step.

use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What a dense layer applies to `x · W + b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Nothing (a linear layer).
    Linear,
    Relu,
    /// Only as the last layer, where it is fused with the cross-entropy loss.
    Softmax,
}

/// One layer of a [`ModelSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Layer {
    /// Keras' `Dense(units, activation)`.
    Dense {
        units: usize,
        activation: Activation,
    },
}

impl Layer {
    /// Width of the layer's output.
    pub fn units(&self) -> usize {
        match *self {
            Layer::Dense { units, .. } => units,
        }
    }
}

/// Why an architecture cannot be trained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("the model has no layers")]
    Empty,
    #[error("the model's input width is 0")]
    NoInputs,
    #[error("layer {index} has 0 units")]
    ZeroUnits { index: usize },
    #[error("layer {index}: softmax is only supported on the last layer (fused with the loss)")]
    SoftmaxInside { index: usize },
    #[error("the last layer must use softmax: it is fused with the cross-entropy loss")]
    NoSoftmaxHead,
    #[error("the model has {parameters} parameters, more than the {MAX_PARAMETERS} (1 GiB of f32) supported")]
    TooLarge { parameters: u128 },
}

/// The most parameters a model may have: with their gradients and two
/// optimizer slots, 4 GiB of host or device memory. A larger request would
/// end in an allocation failure (an abort) rather than an error.
pub const MAX_PARAMETERS: u128 = 1 << 28;

/// A network's architecture: the input width and its layers, input side first.
///
/// ```
/// use gpu_mnist::{Activation, ModelSpec};
/// let book = ModelSpec::sequential(784)
///     .dense(512, Activation::Relu)
///     .dense(10, Activation::Softmax);
/// assert_eq!(book.parameter_count(), 407_050);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelSpec {
    pub inputs: usize,
    pub layers: Vec<Layer>,
}

impl ModelSpec {
    /// An empty stack taking `inputs` features.
    pub fn sequential(inputs: usize) -> Self {
        Self {
            inputs,
            layers: Vec::new(),
        }
    }

    /// Appends `Dense(units, activation)`.
    pub fn dense(mut self, units: usize, activation: Activation) -> Self {
        self.layers.push(Layer::Dense { units, activation });
        self
    }

    /// Relu hidden layers of the given widths, then a softmax layer of `classes`.
    pub fn mlp(inputs: usize, hidden: &[usize], classes: usize) -> Self {
        hidden
            .iter()
            .fold(Self::sequential(inputs), |m, &w| {
                m.dense(w, Activation::Relu)
            })
            .dense(classes, Activation::Softmax)
    }

    /// Checks that the engine can train this architecture.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.inputs == 0 {
            return Err(ModelError::NoInputs);
        }
        let last = self.layers.len().checked_sub(1).ok_or(ModelError::Empty)?;
        for (index, layer) in self.layers.iter().enumerate() {
            let Layer::Dense { units, activation } = *layer;
            if units == 0 {
                return Err(ModelError::ZeroUnits { index });
            }
            if activation == Activation::Softmax && index != last {
                return Err(ModelError::SoftmaxInside { index });
            }
            if index == last && activation != Activation::Softmax {
                return Err(ModelError::NoSoftmaxHead);
            }
        }
        let parameters = self.exact_parameter_count();
        if parameters > MAX_PARAMETERS {
            return Err(ModelError::TooLarge { parameters });
        }
        Ok(())
    }

    /// Number of classes: the last layer's width.
    pub fn classes(&self) -> usize {
        self.layers.last().map_or(0, Layer::units)
    }

    /// `(fan_in, fan_out)` of each layer, input side first.
    pub fn layer_dims(&self) -> Vec<(usize, usize)> {
        let mut fan_in = self.inputs;
        self.layers
            .iter()
            .map(|l| {
                let dims = (fan_in, l.units());
                fan_in = l.units();
                dims
            })
            .collect()
    }

    pub fn parameter_count(&self) -> usize {
        self.exact_parameter_count() as usize
    }

    /// The parameter count without overflow, whatever widths a user or a file gave.
    fn exact_parameter_count(&self) -> u128 {
        self.layer_dims()
            .iter()
            .map(|&(i, o)| (i as u128 + 1) * o as u128)
            .sum()
    }

    /// Multiply-add FLOPs (2 per MAC) of one training sample: forward matmuls,
    /// the weight-gradient matmuls, and the input-gradient matmuls of every layer
    /// but the first (whose input gradient nobody needs).
    pub fn train_flops_per_sample(&self) -> u64 {
        self.layer_dims()
            .iter()
            .enumerate()
            .map(|(l, (i, o))| 2 * (i * o) as u64 * if l == 0 { 2 } else { 3 })
            .sum()
    }
}

impl std::fmt::Display for ModelSpec {
    /// A Keras-style summary: one line per layer with its output shape and parameters.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<24}{:<18}{:>10}",
            "Layer (type)", "Output Shape", "Param #"
        )?;
        for (i, ((fan_in, fan_out), layer)) in
            self.layer_dims().iter().zip(&self.layers).enumerate()
        {
            let Layer::Dense { activation, .. } = layer;
            let name = format!("dense_{i} ({activation:?})");
            let shape = format!("(None, {fan_out})");
            writeln!(f, "{name:<24}{shape:<18}{:>10}", fan_in * fan_out + fan_out)?;
        }
        write!(f, "Total params: {}", self.parameter_count())
    }
}

/// How kernels are initialised; biases always start at zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Init {
    /// Keras' default: uniform in `±sqrt(6 / (fan_in + fan_out))`.
    Glorot,
    /// The book's from-scratch weights: uniform in `[0, 0.1)`.
    Uniform,
}

/// Weights (`fan_in x fan_out`, so a batch multiplies as `X · W`) and bias.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    pub weights: Array2<f32>,
    pub bias: Array1<f32>,
}

/// The parameters of every layer, input side first.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub layers: Vec<Dense>,
}

impl Params {
    /// Seeded initialisation: the same seed gives the same parameters everywhere.
    pub fn init(spec: &ModelSpec, init: Init, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let layers = spec
            .layer_dims()
            .into_iter()
            .map(|(fan_in, fan_out)| {
                let (low, high) = match init {
                    Init::Glorot => {
                        let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
                        (-limit, limit)
                    }
                    Init::Uniform => (0.0, 0.1),
                };
                Dense {
                    weights: Array2::from_shape_simple_fn((fan_in, fan_out), || {
                        rng.random_range(low..high)
                    }),
                    bias: Array1::zeros(fan_out),
                }
            })
            .collect();
        Self { layers }
    }

    /// Rebuilds parameters of `dims` (as [`ModelSpec::layer_dims`]) from tensors
    /// in [`Self::tensors`] order.
    pub(crate) fn from_tensors(dims: &[(usize, usize)], tensors: Vec<Vec<f32>>) -> Self {
        let mut tensors = tensors.into_iter();
        let layers = dims
            .iter()
            .map(|&(fan_in, fan_out)| {
                let w = tensors.next().expect("a weight tensor per layer");
                let b = tensors.next().expect("a bias tensor per layer");
                Dense {
                    weights: Array2::from_shape_vec((fan_in, fan_out), w)
                        .expect("weights of the layer's shape"),
                    bias: Array1::from(b),
                }
            })
            .collect();
        Self { layers }
    }

    /// Parameter tensors in a fixed order (w0, b0, w1, b1, ...), flattened row-major.
    pub fn tensors(&self) -> Vec<&[f32]> {
        self.layers
            .iter()
            .flat_map(|l| {
                [
                    l.weights.as_slice().expect("standard layout"),
                    l.bias.as_slice().expect("standard layout"),
                ]
            })
            .collect()
    }

    /// `(fan_in, fan_out)` of each layer.
    pub fn layer_dims(&self) -> Vec<(usize, usize)> {
        self.layers.iter().map(|l| l.weights.dim()).collect()
    }

    /// Largest absolute difference to `other`, tensor by tensor (for parity tests).
    pub fn max_abs_diff(&self, other: &Params) -> f32 {
        self.tensors()
            .iter()
            .zip(other.tensors())
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
        assert_eq!(spec.layer_dims(), vec![(784, 512), (512, 10)]);
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
    fn invalid_architectures_are_named() {
        let s = ModelSpec::sequential;
        assert_eq!(s(4).validate(), Err(ModelError::Empty));
        assert_eq!(
            s(0).dense(2, Activation::Softmax).validate(),
            Err(ModelError::NoInputs)
        );
        assert_eq!(
            s(4).dense(0, Activation::Relu)
                .dense(2, Activation::Softmax)
                .validate(),
            Err(ModelError::ZeroUnits { index: 0 })
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
            Err(ModelError::TooLarge { .. })
        ));
        let limit = ModelSpec::mlp(1, &[], (MAX_PARAMETERS / 2) as usize);
        assert_eq!(limit.validate(), Ok(()));
    }

    #[test]
    fn initialisation_is_seeded_and_in_range() {
        let spec = ModelSpec::mlp(6, &[4], 3);
        let a = Params::init(&spec, Init::Glorot, 7);
        assert_eq!(a, Params::init(&spec, Init::Glorot, 7));
        assert_ne!(a, Params::init(&spec, Init::Glorot, 8));
        let limit = (6.0f32 / 10.0).sqrt();
        assert!(a.layers[0].weights.iter().all(|w| w.abs() <= limit));
        assert!(a.layers.iter().all(|l| l.bias.iter().all(|&b| b == 0.0)));
        let u = Params::init(&spec, Init::Uniform, 7);
        assert!(u.tensors()[0].iter().all(|&w| (0.0..0.1).contains(&w)));
        let rebuilt = Params::from_tensors(
            &a.layer_dims(),
            a.tensors().iter().map(|t| t.to_vec()).collect(),
        );
        assert_eq!(rebuilt, a);
    }

    #[test]
    fn summary_lists_layers_like_keras() {
        let text = ModelSpec::mlp(784, &[512], 10).to_string();
        assert!(text.contains("dense_0 (Relu)"), "{text}");
        assert!(
            text.contains("(None, 512)") && text.contains("401920"),
            "{text}"
        );
        assert!(text.ends_with("Total params: 407050"), "{text}");
    }
}
