//! The step plan: a model's training, evaluation and prediction steps written
//! once, as ordered lists of ops over named buffers. Every device executes the
//! same plan: the CPU runs the ops in order, the wgpu device records each op as
//! a kernel launch.
//!
//! Each layer emits its own forward and backward ops (`layers.rs`), its
//! activation and the activation's derivative as ops of their own; a pass
//! over the plan (`fuse.rs`) then folds a bias, a relu or a relu derivative
//! into the product before it, so the book's MLP takes 10 launches a step.

mod fuse;
mod layers;

use crate::loss::LossKind;
use crate::model::{Image, ModelSpec};

/// A buffer a step reads or writes. Batch buffers hold `batch` examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Buf {
    /// The batch as `f32` pixels: rows x features.
    Input,
    /// One-hot targets (categorical loss): rows x classes.
    Targets,
    /// Layer `l`'s output (its activations).
    Output(usize),
    /// Layer `l`'s pre-activation (the head's logits), where it has an activation.
    Pre(usize),
    /// Gradient of the loss with respect to layer `l`'s output.
    OutputGrad(usize),
    /// Gradient of the loss with respect to layer `l`'s pre-activation.
    PreGrad(usize),
    /// Layer `l`'s input windows (im2col), and their gradient.
    Patches(usize),
    PatchesGrad(usize),
    /// Class probabilities of a prediction: rows x classes.
    Probs,
    /// Parameter tensor `t` (in [`ModelSpec::param_shapes`] order), its
    /// gradient, and the optimizer's state vector `slot` for it.
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
/// operand (the bias, or the relu mask). The batch dimension counts
/// `positions` rows per example (a convolution's output positions; 1 for a
/// dense layer).
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
    pub positions: usize,
}

impl Matmul {
    /// `(m, k)` of a step of `rows` examples.
    pub fn step_mk(&self, rows: usize) -> (usize, usize) {
        match self.form.batch_dim {
            BatchDim::None => (self.m, self.k),
            BatchDim::M => (rows * self.positions, self.k),
            BatchDim::K => (self.m, rows * self.positions),
        }
    }
}

/// Where a convolution's windows lie: a `kernel x kernel` window at each of
/// `out_height x out_width` positions (stride 1), the input padded with
/// `pad_top` rows and `pad_left` columns of zeros before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ConvGeometry {
    pub input: Image,
    pub kernel: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub out_height: usize,
    pub out_width: usize,
}

impl ConvGeometry {
    /// Output positions per example: the rows of the lowered product.
    pub fn positions(&self) -> usize {
        self.out_height * self.out_width
    }

    /// Values per window: `kernel · kernel · channels` (the kernel's rows,
    /// in its `[kh, kw, in]` order).
    pub fn patch(&self) -> usize {
        self.kernel * self.kernel * self.input.channels
    }
}

/// A max-pool: `size x size` windows at stride `size` over `input`, the
/// rows and columns past `out_height · size` and `out_width · size` unused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PoolGeometry {
    pub input: Image,
    pub size: usize,
    pub out_height: usize,
    pub out_width: usize,
}

impl PoolGeometry {
    pub fn output_len(&self) -> usize {
        self.out_height * self.out_width * self.input.channels
    }
}

/// Where a dropout draws its mask: value `i` of example row `r` at step
/// `s` is kept when `dropout_keeps(seed, s, stream, r * width + i, rate)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DropoutMask {
    pub rate: f32,
    /// One stream per dropout layer, so layers draw independent masks.
    pub stream: u32,
    pub width: usize,
}

impl DropoutMask {
    /// Values whose hash is below this are dropped: `rate · 2³²`.
    pub fn threshold(&self) -> u32 {
        (f64::from(self.rate) * 4_294_967_296.0).min(f64::from(u32::MAX)) as u32
    }

    /// What a kept value is multiplied by.
    pub fn scale(&self) -> f32 {
        1.0 / (1.0 - self.rate)
    }

    /// Whether value `index` of the batch (`row · width + i`, modulo 2³²) is
    /// kept at optimizer step `step` of a run seeded `seed`.
    pub fn keeps(&self, seed: u64, step: u64, index: usize) -> bool {
        dropout_hash(seed, step, self.stream, index as u32) >= self.threshold()
    }
}

/// The dropout mask's hash: 32-bit integer mixing only, so that a WGSL
/// kernel computes the same bits (`dropout.wgsl` mirrors it).
pub(crate) fn dropout_hash(seed: u64, step: u64, stream: u32, index: u32) -> u32 {
    // Chris Wellons' "lowbias32" finaliser.
    fn mix(mut x: u32) -> u32 {
        x ^= x >> 16;
        x = x.wrapping_mul(0x7feb_352d);
        x ^= x >> 15;
        x = x.wrapping_mul(0x846c_a68b);
        x ^ (x >> 16)
    }
    [
        (seed >> 32) as u32,
        step as u32,
        (step >> 32) as u32,
        stream,
        index,
    ]
    .into_iter()
    .fold(mix(seed as u32), |h, word| mix(h ^ word))
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Op {
    /// The step's rows of the example source (u8 images, by the example order)
    /// into [`Buf::Input`] as pixel values; one-hot targets into [`Buf::Targets`]
    /// when `one_hot`.
    Gather {
        one_hot: bool,
    },
    Matmul(Matmul),
    /// `buf += bias` on each of the step's `rows · positions` rows of `cols`.
    AddBias {
        buf: Buf,
        bias: Buf,
        cols: usize,
        positions: usize,
    },
    /// `dst = relu(src)` over the step's rows of `width` values.
    Relu {
        src: Buf,
        dst: Buf,
        width: usize,
    },
    /// `dst = grad * relu'(mask)` (mask: the relu's output).
    ReluGrad {
        grad: Buf,
        mask: Buf,
        dst: Buf,
        width: usize,
    },
    /// The windows of `src` (examples of `conv.input`) as rows of `dst`:
    /// `positions` rows of `patch` values per example.
    Im2col {
        src: Buf,
        dst: Buf,
        conv: ConvGeometry,
    },
    /// The adjoint of [`Op::Im2col`]: each input value of `dst` is the sum of
    /// the window values of `src` that read it.
    Col2im {
        src: Buf,
        dst: Buf,
        conv: ConvGeometry,
    },
    MaxPool {
        src: Buf,
        dst: Buf,
        pool: PoolGeometry,
    },
    /// `dst` (the pool's input gradient): each window's gradient goes to the
    /// first position holding the window's maximum of `src`; 0 elsewhere.
    /// With `relu`, times relu's derivative at that position (`src` being a
    /// relu's output): the layer below's activation folded in.
    MaxPoolGrad {
        grad: Buf,
        src: Buf,
        dst: Buf,
        pool: PoolGeometry,
        relu: bool,
    },
    /// `dst = src * keep / (1 - rate)` with the step's mask (training only).
    /// The backward pass runs the same op on the gradients: the mask is a
    /// function of the step, not a buffer.
    Dropout {
        src: Buf,
        dst: Buf,
        mask: DropoutMask,
    },
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
    /// Column sums of the step's `rows · positions` rows of `src` (`cols`
    /// wide) into `dst`.
    ColumnSums {
        src: Buf,
        dst: Buf,
        cols: usize,
        positions: usize,
    },
    /// One optimizer update of every parameter tensor from its gradient.
    Update,
}

impl Op {
    /// The op's name, as profiles and the plan's tests show it.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Gather { .. } => "gather",
            Op::Matmul(_) => "matmul",
            Op::AddBias { .. } => "add_bias",
            Op::Relu { .. } => "relu",
            Op::ReluGrad { .. } => "relu_grad",
            Op::Im2col { .. } => "im2col",
            Op::Col2im { .. } => "col2im",
            Op::MaxPool { .. } => "max_pool",
            Op::MaxPoolGrad { .. } => "max_pool_grad",
            Op::Dropout { .. } => "dropout",
            Op::SoftmaxXent { .. } => "softmax_xent",
            Op::Softmax { .. } => "softmax",
            Op::ColumnSums { .. } => "column_sums",
            Op::Update => "update",
        }
    }

    /// The buffers the op reads (parameters and optimizer state aside).
    pub fn reads(&self) -> Vec<Buf> {
        match *self {
            Op::Gather { .. } | Op::Update => Vec::new(),
            Op::Matmul(mm) => [Some(mm.a), Some(mm.b), mm.extra]
                .into_iter()
                .flatten()
                .collect(),
            Op::AddBias { buf, bias, .. } => vec![buf, bias],
            Op::Relu { src, .. } | Op::Im2col { src, .. } | Op::Col2im { src, .. } => vec![src],
            Op::MaxPool { src, .. } | Op::Dropout { src, .. } => vec![src],
            Op::ReluGrad { grad, mask, .. } => vec![grad, mask],
            Op::MaxPoolGrad { grad, src, .. } => vec![grad, src],
            Op::SoftmaxXent {
                logits,
                dense_targets,
                ..
            } => {
                let mut reads = vec![logits];
                if dense_targets {
                    reads.push(Buf::Targets);
                }
                reads
            }
            Op::Softmax { logits } => vec![logits],
            Op::ColumnSums { src, .. } => vec![src],
        }
    }

    /// The buffers the op writes (parameters and optimizer state aside).
    pub fn writes(&self) -> Vec<Buf> {
        match *self {
            Op::Gather { one_hot } => {
                let mut writes = vec![Buf::Input];
                if one_hot {
                    writes.push(Buf::Targets);
                }
                writes
            }
            Op::Update => Vec::new(),
            Op::Matmul(mm) => vec![mm.c],
            Op::AddBias { buf, .. } => vec![buf],
            Op::Relu { dst, .. }
            | Op::ReluGrad { dst, .. }
            | Op::Im2col { dst, .. }
            | Op::Col2im { dst, .. }
            | Op::MaxPool { dst, .. }
            | Op::MaxPoolGrad { dst, .. }
            | Op::Dropout { dst, .. }
            | Op::ColumnSums { dst, .. } => vec![dst],
            Op::SoftmaxXent { grad, .. } => grad.into_iter().collect(),
            Op::Softmax { .. } => vec![Buf::Probs],
        }
    }
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
    /// Examples in the batch buffers: the largest step.
    pub batch: usize,
    pub features: usize,
    pub classes: usize,
    /// Floats per example of each batch buffer other than the input and
    /// targets: only the buffers some program uses.
    pub widths: Vec<(Buf, usize)>,
    /// `(rows, cols)` of each parameter tensor as the products read it: a
    /// kernel as `(fan_in, units)` (a convolution's as `(k·k·in, filters)`),
    /// a bias as `(1, n)`.
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
        let one_hot = loss == LossKind::Categorical;
        let training = layers::emit(spec, batch, true);
        let inference = layers::emit(spec, batch, false);
        let xent = |grad| Op::SoftmaxXent {
            logits: training.logits,
            grad,
            dense_targets: one_hot,
        };
        let mut train = vec![Op::Gather { one_hot }];
        train.extend(training.forward);
        train.push(xent(Some(training.logits_grad)));
        train.extend(training.backward);
        train.push(Op::Update);
        let mut eval = vec![Op::Gather { one_hot }];
        eval.extend(inference.forward.iter().copied());
        eval.push(xent(None));
        let mut predict = vec![Op::Gather { one_hot: false }];
        predict.extend(inference.forward);
        predict.push(Op::Softmax {
            logits: inference.logits,
        });
        let (train, eval, predict) = (fuse::fuse(train), fuse::fuse(eval), fuse::fuse(predict));
        let used: std::collections::HashSet<Buf> = [&train, &eval, &predict]
            .into_iter()
            .flatten()
            .flat_map(|op| op.reads().into_iter().chain(op.writes()))
            .collect();
        let mut widths = training.widths;
        widths.retain(|(buf, _)| used.contains(buf));
        Self {
            batch,
            features: spec.input_len(),
            classes: spec.classes(),
            widths,
            tensors: training.tensors,
            state_slots,
            train,
            eval,
            predict,
        }
    }

    /// A plan of no model: `tensors` parameter-sized buffers, batch buffers of
    /// `batch` rows, and `train` as its training program (single ops, for the
    /// conformance tests and the kernel benchmarks).
    #[cfg(any(test, not(target_arch = "wasm32")))]
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

    /// Every op of every program.
    pub fn all_ops(&self) -> impl Iterator<Item = &Op> {
        self.train.iter().chain(&self.eval).chain(&self.predict)
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
            Buf::Output(_)
            | Buf::Pre(_)
            | Buf::OutputGrad(_)
            | Buf::PreGrad(_)
            | Buf::Patches(_)
            | Buf::PatchesGrad(_) => {
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

#[cfg(test)]
mod tests;
