//! The network: a stack of dense layers, relu between them, softmax at the end
//! (fused with the loss), and its parameters as host tensors that every backend
//! starts from, so backends can be compared step by step.

use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Layer sizes of a dense stack: `inputs -> hidden... -> classes`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelSpec {
    pub inputs: usize,
    pub hidden: Vec<usize>,
    pub classes: usize,
}

impl ModelSpec {
    /// The book's network: 784 -> 512 relu -> 10 softmax.
    pub fn mnist_mlp() -> Self {
        Self {
            inputs: 784,
            hidden: vec![512],
            classes: 10,
        }
    }

    /// `(fan_in, fan_out)` of each dense layer, input side first.
    pub fn layer_dims(&self) -> Vec<(usize, usize)> {
        let sizes: Vec<usize> = std::iter::once(self.inputs)
            .chain(self.hidden.iter().copied())
            .chain(std::iter::once(self.classes))
            .collect();
        sizes.windows(2).map(|w| (w[0], w[1])).collect()
    }

    pub fn parameter_count(&self) -> usize {
        self.layer_dims().iter().map(|(i, o)| i * o + o).sum()
    }

    /// Multiply-add FLOPs (2 per MAC) of one training sample: forward matmuls,
    /// the weight-gradient matmuls, and the input-gradient matmuls of every layer
    /// but the first (whose input gradient nobody needs).
    pub fn train_flops_per_sample(&self) -> u64 {
        self.layer_dims()
            .iter()
            .enumerate()
            .map(|(l, (i, o))| {
                let mac = (i * o) as u64;
                2 * mac * if l == 0 { 2 } else { 3 }
            })
            .sum()
    }
}

/// How kernels are initialised; biases always start at zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
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

    /// All-zero parameters of the given shape (a target to copy into).
    pub fn zeros(spec: &ModelSpec) -> Self {
        let layers = spec
            .layer_dims()
            .into_iter()
            .map(|(fan_in, fan_out)| Dense {
                weights: Array2::zeros((fan_in, fan_out)),
                bias: Array1::zeros(fan_out),
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

    pub fn tensors_mut(&mut self) -> Vec<&mut [f32]> {
        self.layers
            .iter_mut()
            .flat_map(|l| {
                [
                    l.weights.as_slice_mut().expect("standard layout"),
                    l.bias.as_slice_mut().expect("standard layout"),
                ]
            })
            .collect()
    }

    /// The layer sizes these parameters fit.
    pub fn spec(&self) -> ModelSpec {
        let dims: Vec<_> = self.layers.iter().map(|l| l.weights.dim()).collect();
        ModelSpec {
            inputs: dims.first().map_or(0, |d| d.0),
            hidden: dims.iter().skip(1).map(|d| d.0).collect(),
            classes: dims.last().map_or(0, |d| d.1),
        }
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
