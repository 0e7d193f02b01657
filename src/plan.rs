//! The step plan: a model's training, evaluation and prediction steps written
//! once, as ordered lists of ops over named buffers. Every device executes the
//! same plan: the CPU runs the ops in order, the wgpu device records each op as
//! a kernel launch. A new layer type adds its ops in [`Plan::new`]'s layer loop;
//! the devices only learn new ops.

use crate::loss::LossKind;
use crate::model::{Activation, Layer, ModelSpec};

/// A buffer a step reads or writes. Batch buffers hold `batch` rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Buf {
    /// The batch as `f32` pixels: rows x features.
    Input,
    /// One-hot targets (categorical loss): rows x classes.
    Targets,
    /// Layer `l`'s output (activations; logits for the last): rows x units.
    Output(usize),
    /// Gradient of the loss with respect to layer `l`'s pre-activation.
    Delta(usize),
    /// Class probabilities of a prediction: rows x classes.
    Probs,
    /// Parameter tensor `t` (w0, b0, w1, b1, ...), its gradient, and the
    /// optimizer's state vector `slot` for it.
    Param(usize),
    Grad(usize),
    State {
        slot: usize,
        tensor: usize,
    },
}

/// The fused operation after a matmul.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Epilogue {
    /// `C = A·B`.
    None,
    /// `C = A·B + bias`.
    Bias,
    /// `C = relu(A·B + bias)`.
    BiasRelu,
    /// `C = A·B * relu'(mask)`, the mask being the relu output of C's shape.
    ReluMask,
}

/// Which matmul dimension is the batch, and so takes the step's row count
/// (smaller for the last, partial batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum BatchDim {
    None,
    M,
    K,
}

/// A product's form: which operands are stored transposed (A as K x M, B as
/// N x K), its epilogue, and its batch dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct MatmulForm {
    pub transpose_a: bool,
    pub transpose_b: bool,
    pub epilogue: Epilogue,
    pub batch_dim: BatchDim,
}

/// `c = op(a) · op(b)` with `m x k x n` at the full batch, and the epilogue's
/// operand (the bias, or the relu mask).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Matmul {
    pub a: Buf,
    pub b: Buf,
    pub c: Buf,
    pub extra: Option<Buf>,
    pub form: MatmulForm,
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

impl Matmul {
    /// `(m, k)` of a step of `rows` rows.
    pub fn step_mk(&self, rows: usize) -> (usize, usize) {
        match self.form.batch_dim {
            BatchDim::None => (self.m, self.k),
            BatchDim::M => (rows, self.k),
            BatchDim::K => (self.m, rows),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// The step's rows of the example source (u8 images, by the example order)
    /// into [`Buf::Input`] as pixel values; one-hot targets into [`Buf::Targets`]
    /// when `one_hot`.
    Gather {
        one_hot: bool,
    },
    Matmul(Matmul),
    /// Fused, stable softmax + cross-entropy of `logits` against the step's
    /// labels (or [`Buf::Targets`] when `dense_targets`): the loss sum and
    /// correct count go to the step's metrics; with `grad`, the gradient of
    /// the mean loss too.
    SoftmaxXent {
        logits: Buf,
        grad: Option<Buf>,
        dense_targets: bool,
    },
    /// Row-wise softmax of `logits` into [`Buf::Probs`].
    Softmax {
        logits: Buf,
    },
    /// Column sums of the step's rows of `src` (`cols` wide) into `dst`.
    ColumnSums {
        src: Buf,
        dst: Buf,
        cols: usize,
    },
    /// One optimizer update of every parameter tensor from its gradient.
    Update,
}

/// Which of a plan's programs a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Program {
    Train,
    Eval,
    Predict,
}

/// Everything a device needs to run a model: buffer sizes and three programs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    /// Rows of the batch buffers: the largest step.
    pub batch: usize,
    pub features: usize,
    pub classes: usize,
    /// Floats per row of each batch buffer other than the input and targets.
    pub widths: Vec<(Buf, usize)>,
    /// `(rows, cols)` of each parameter tensor (biases are `(1, n)`).
    pub tensors: Vec<(usize, usize)>,
    /// Optimizer state vectors per parameter tensor (0 for inference only).
    pub state_slots: usize,
    pub train: Vec<Op>,
    pub eval: Vec<Op>,
    pub predict: Vec<Op>,
}

impl Plan {
    /// The plan of a (validated) model trained with `loss` in batches of `batch`.
    pub fn new(spec: &ModelSpec, batch: usize, loss: LossKind, state_slots: usize) -> Self {
        let last = spec.layers.len() - 1;
        let one_hot = loss == LossKind::Categorical;
        let mut widths = Vec::new();
        let mut tensors = Vec::new();
        let mut forward = vec![Op::Gather { one_hot }];
        let mut backward = Vec::new();
        let mut fan_in = spec.inputs;
        for (l, layer) in spec.layers.iter().enumerate() {
            let input = if l == 0 {
                Buf::Input
            } else {
                Buf::Output(l - 1)
            };
            let below = if l == 0 {
                None
            } else {
                Some(&spec.layers[l - 1])
            };
            let ops = match *layer {
                Layer::Dense { units, activation } => dense_ops(
                    DenseSlots {
                        layer: l,
                        first_tensor: tensors.len(),
                        input,
                        below,
                        batch,
                    },
                    fan_in,
                    units,
                    activation,
                ),
            };
            tensors.extend(ops.tensors);
            widths.extend([
                (Buf::Output(l), layer.units()),
                (Buf::Delta(l), layer.units()),
            ]);
            forward.extend(ops.forward);
            // Backward runs the layers in reverse order.
            backward.splice(0..0, ops.backward);
            fan_in = layer.units();
        }
        let logits = Buf::Output(last);
        let xent = |grad| Op::SoftmaxXent {
            logits,
            grad,
            dense_targets: one_hot,
        };
        let mut train = forward.clone();
        train.push(xent(Some(Buf::Delta(last))));
        train.extend(backward);
        train.push(Op::Update);
        let mut eval = forward.clone();
        eval.push(xent(None));
        let mut predict = forward;
        predict[0] = Op::Gather { one_hot: false };
        predict.push(Op::Softmax { logits });
        Self {
            batch,
            features: spec.inputs,
            classes: spec.classes(),
            widths,
            tensors,
            state_slots,
            train,
            eval,
            predict,
        }
    }

    /// A plan of no model: `tensors` parameter-sized buffers, batch buffers of
    /// `batch` rows, and `train` as its training program (single ops, for the
    /// conformance tests and the kernel benchmarks).
    pub fn bare(
        batch: usize,
        features: usize,
        classes: usize,
        tensors: Vec<(usize, usize)>,
        train: Vec<Op>,
    ) -> Self {
        Self {
            batch,
            features,
            classes,
            widths: Vec::new(),
            tensors,
            state_slots: 0,
            train,
            eval: Vec::new(),
            predict: Vec::new(),
        }
    }

    pub fn ops(&self, program: Program) -> &[Op] {
        match program {
            Program::Train => &self.train,
            Program::Eval => &self.eval,
            Program::Predict => &self.predict,
        }
    }

    /// Length in floats of a parameter-sized tensor.
    pub fn tensor_len(&self, t: usize) -> usize {
        let (rows, cols) = self.tensors[t];
        rows * cols
    }

    /// Length in floats of `buf`.
    pub fn len(&self, buf: Buf) -> usize {
        match buf {
            Buf::Input => self.batch * self.features,
            Buf::Targets | Buf::Probs => self.batch * self.classes,
            Buf::Param(t) | Buf::Grad(t) | Buf::State { tensor: t, .. } => self.tensor_len(t),
            Buf::Output(_) | Buf::Delta(_) => {
                let width = self
                    .widths
                    .iter()
                    .find(|(b, _)| *b == buf)
                    .map_or(0, |&(_, w)| w);
                self.batch * width
            }
        }
    }

    /// Every buffer of the plan other than the parameter-sized ones.
    pub fn batch_buffers(&self) -> Vec<Buf> {
        [Buf::Input, Buf::Targets, Buf::Probs]
            .into_iter()
            .chain(self.widths.iter().map(|&(b, _)| b))
            .collect()
    }

    /// Steps in a pass over `len` examples (the last may be partial).
    pub fn steps(&self, len: usize) -> usize {
        len.div_ceil(self.batch)
    }
}

/// Where a layer's ops read and write: its index (its output is
/// `Output(layer)`, its gradient `Delta(layer)`), its first parameter tensor,
/// its input, and the layer below (whose activation the backward pass masks).
struct DenseSlots<'a> {
    layer: usize,
    first_tensor: usize,
    input: Buf,
    below: Option<&'a Layer>,
    batch: usize,
}

/// A layer's parameter tensors and the ops of its forward and backward pass.
struct LayerOps {
    tensors: Vec<(usize, usize)>,
    forward: Vec<Op>,
    backward: Vec<Op>,
}

/// `Dense(units, activation)`: `Z = X·W + b` with relu fused; backward
/// `dW = Xᵀ·delta`, `db` = column sums of delta, and the layer below's delta
/// `delta·Wᵀ` (times relu's derivative when the layer below has relu).
fn dense_ops(at: DenseSlots, fan_in: usize, units: usize, activation: Activation) -> LayerOps {
    let DenseSlots {
        layer: l,
        first_tensor: t,
        input,
        below,
        batch,
    } = at;
    let (w, b) = (Buf::Param(t), Buf::Param(t + 1));
    let relu = activation == Activation::Relu;
    let form = |transpose_a, transpose_b, epilogue, batch_dim| MatmulForm {
        transpose_a,
        transpose_b,
        epilogue,
        batch_dim,
    };
    let forward = vec![Op::Matmul(Matmul {
        a: input,
        b: w,
        c: Buf::Output(l),
        extra: Some(b),
        form: form(
            false,
            false,
            if relu {
                Epilogue::BiasRelu
            } else {
                Epilogue::Bias
            },
            BatchDim::M,
        ),
        m: batch,
        k: fan_in,
        n: units,
    })];
    let mut backward = vec![
        Op::Matmul(Matmul {
            a: input,
            b: Buf::Delta(l),
            c: Buf::Grad(t),
            extra: None,
            form: form(true, false, Epilogue::None, BatchDim::K),
            m: fan_in,
            k: batch,
            n: units,
        }),
        Op::ColumnSums {
            src: Buf::Delta(l),
            dst: Buf::Grad(t + 1),
            cols: units,
        },
    ];
    if let Some(below) = below {
        let below_relu = matches!(
            below,
            Layer::Dense {
                activation: Activation::Relu,
                ..
            }
        );
        backward.push(Op::Matmul(Matmul {
            a: Buf::Delta(l),
            b: w,
            c: Buf::Delta(l - 1),
            extra: below_relu.then_some(Buf::Output(l - 1)),
            form: form(
                false,
                true,
                if below_relu {
                    Epilogue::ReluMask
                } else {
                    Epilogue::None
                },
                BatchDim::M,
            ),
            m: batch,
            k: units,
            n: fan_in,
        }));
    }
    LayerOps {
        tensors: vec![(fan_in, units), (1, units)],
        forward,
        backward,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matmuls(ops: &[Op]) -> Vec<Matmul> {
        ops.iter()
            .filter_map(|op| match op {
                Op::Matmul(m) => Some(*m),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_books_training_step_has_ten_ops_in_order() {
        let spec = ModelSpec::mlp(784, &[512], 10);
        let plan = Plan::new(&spec, 128, LossKind::SparseCategorical, 1);
        let kinds: Vec<&str> = plan
            .train
            .iter()
            .map(|op| match op {
                Op::Gather { .. } => "gather",
                Op::Matmul(_) => "matmul",
                Op::SoftmaxXent { .. } => "xent",
                Op::Softmax { .. } => "softmax",
                Op::ColumnSums { .. } => "sums",
                Op::Update => "update",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "gather", "matmul", "matmul", "xent", "matmul", "sums", "matmul", "matmul", "sums",
                "update"
            ]
        );
        let m = matmuls(&plan.train);
        // Forward: X·W0 + b0 with relu, then the logits.
        assert_eq!((m[0].m, m[0].k, m[0].n), (128, 784, 512));
        assert_eq!(m[0].form.epilogue, Epilogue::BiasRelu);
        assert_eq!(m[1].form.epilogue, Epilogue::Bias);
        // Backward of the output layer: dW1 = H1ᵀ·delta1, then delta0 masked by relu.
        assert_eq!(
            (m[2].a, m[2].c, m[2].form.batch_dim),
            (Buf::Output(0), Buf::Grad(2), BatchDim::K)
        );
        assert_eq!((m[3].c, m[3].extra), (Buf::Delta(0), Some(Buf::Output(0))));
        assert_eq!(m[3].form.epilogue, Epilogue::ReluMask);
        // The first layer's weight gradient reads the batch; no input gradient.
        assert_eq!((m[4].a, m[4].c), (Buf::Input, Buf::Grad(0)));
        assert_eq!(plan.tensors, vec![(784, 512), (1, 512), (512, 10), (1, 10)]);
        assert_eq!(plan.len(Buf::Output(0)), 128 * 512);
        assert_eq!(plan.eval.len(), 4);
        assert_eq!(
            plan.predict.last(),
            Some(&Op::Softmax {
                logits: Buf::Output(1)
            })
        );
    }

    #[test]
    fn linear_hidden_layers_skip_the_relu_mask() {
        let spec = ModelSpec::sequential(6)
            .dense(5, Activation::Linear)
            .dense(3, Activation::Softmax);
        let plan = Plan::new(&spec, 4, LossKind::Categorical, 0);
        let m = matmuls(&plan.train);
        assert_eq!(m[0].form.epilogue, Epilogue::Bias);
        assert_eq!((m[3].form.epilogue, m[3].extra), (Epilogue::None, None));
        assert_eq!(plan.train[0], Op::Gather { one_hot: true });
        assert_eq!(plan.predict[0], Op::Gather { one_hot: false });
    }
}
