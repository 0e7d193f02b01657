//! The reference backend: the book's math on ndarray, buffers allocated once.

pub mod ops;
pub mod sparse;

use std::sync::Arc;

use ndarray::{s, Array2, ArrayViewMut2};
use rayon::prelude::*;

use super::{check_same_shape, Backend, BackendError, Counters, Metrics, Split, TrainSettings};
use crate::data::{Dataset, Mnist};
use crate::loss::LossKind;
use crate::model::Params;
use ops::Targets;

/// Per-batch buffers, sized for the largest batch and sliced for smaller ones.
struct Workspace {
    input: Array2<f32>,
    /// Output of each layer: relu activations, then the logits.
    outputs: Vec<Array2<f32>>,
    /// Gradient of the loss with respect to each layer's pre-activation.
    deltas: Vec<Array2<f32>>,
    one_hot: Array2<f32>,
    labels: Vec<u8>,
    /// The batch's nonzero pixels, and whether the first layer uses them
    /// (instead of `input`) for this batch.
    sparse: sparse::SparseBatch,
    sparse_input: bool,
}

impl Workspace {
    fn new(params: &Params, rows: usize) -> Self {
        let widths: Vec<usize> = params.layers.iter().map(|l| l.bias.len()).collect();
        let inputs = params.layers[0].weights.nrows();
        Self {
            input: Array2::zeros((rows, inputs)),
            outputs: widths.iter().map(|&w| Array2::zeros((rows, w))).collect(),
            deltas: widths.iter().map(|&w| Array2::zeros((rows, w))).collect(),
            one_hot: Array2::zeros((rows, *widths.last().unwrap())),
            labels: Vec::with_capacity(rows),
            sparse: sparse::SparseBatch::default(),
            sparse_input: false,
        }
    }

    fn rows(&self) -> usize {
        self.input.nrows()
    }
}

pub struct CpuBackend {
    data: Arc<Mnist>,
    params: Params,
    settings: TrainSettings,
    /// Per parameter tensor, `state_slots` optimizer vectors.
    optimizer_state: Vec<Vec<Vec<f32>>>,
    /// Gradients in the order of `Params::tensors`.
    grads: Vec<Vec<f32>>,
    train_ws: Workspace,
    eval_ws: Option<Workspace>,
    counters: Counters,
}

/// Parameters per parallel optimizer task: large enough to amortise the task.
const UPDATE_CHUNK: usize = 1 << 15;

/// Rows evaluated at once: large enough for efficient matmuls, small in memory.
const EVAL_CHUNK: usize = 1000;

impl CpuBackend {
    pub fn new(data: Arc<Mnist>, params: Params, settings: TrainSettings) -> Self {
        let slots = settings.optimizer.state_slots();
        let tensors = params.tensors();
        Self {
            optimizer_state: tensors
                .iter()
                .map(|t| vec![vec![0.0; t.len()]; slots])
                .collect(),
            grads: tensors.iter().map(|t| vec![0.0; t.len()]).collect(),
            train_ws: Workspace::new(&params, settings.batch_size),
            eval_ws: None,
            data,
            params,
            settings,
            counters: Counters::default(),
        }
    }

    /// Forward pass of `indices` of `data` into `ws`; returns the loss sum and
    /// correct count and leaves the scaled loss gradient in the last delta.
    fn forward_and_loss(
        params: &Params,
        loss: LossKind,
        data: &Dataset,
        indices: &[u32],
        ws: &mut Workspace,
        grad_scale: f32,
    ) -> (f64, u64) {
        let b = indices.len();
        ws.sparse.gather(data, indices);
        ws.sparse_input = ws.sparse.density() <= sparse::MAX_DENSITY;
        if !ws.sparse_input {
            ops::gather_batch(data, indices, ws.input.slice_mut(s![..b, ..]));
        }
        let last = params.layers.len() - 1;
        for (l, layer) in params.layers.iter().enumerate() {
            if l == 0 && ws.sparse_input {
                sparse::forward(
                    &ws.sparse,
                    layer.weights.view(),
                    layer.bias.as_slice().unwrap(),
                    l != last,
                    ws.outputs[0].slice_mut(s![..b, ..]),
                );
                continue;
            }
            let (before, rest) = ws.outputs.split_at_mut(l);
            let x = if l == 0 {
                ws.input.slice(s![..b, ..])
            } else {
                before[l - 1].slice(s![..b, ..])
            };
            ops::dense_forward(
                x,
                layer.weights.view(),
                layer.bias.as_slice().unwrap(),
                l != last,
                rest[0].slice_mut(s![..b, ..]),
            );
        }
        ws.labels.clear();
        ws.labels
            .extend(indices.iter().map(|&i| data.labels[i as usize]));
        let targets = match loss {
            LossKind::SparseCategorical => Targets::Sparse(&ws.labels),
            LossKind::Categorical => {
                ops::one_hot(&ws.labels, ws.one_hot.slice_mut(s![..b, ..]));
                Targets::Dense(ws.one_hot.slice(s![..b, ..]))
            }
        };
        ops::softmax_cross_entropy(
            ws.outputs[last].slice(s![..b, ..]),
            targets,
            grad_scale,
            ws.deltas[last].slice_mut(s![..b, ..]),
        )
    }

    /// Forward and backward pass over `indices` of the training set: leaves the
    /// gradients of the mean loss in `self.grads` and returns the loss sum and
    /// correct count.
    fn backward(&mut self, indices: &[u32]) -> (f64, u64) {
        let b = indices.len();
        let ws = &mut self.train_ws;
        let (loss_sum, correct) = Self::forward_and_loss(
            &self.params,
            self.settings.loss,
            &self.data.train,
            indices,
            ws,
            1.0 / b as f32,
        );
        // Backward, last layer first: weight gradient, bias gradient, then the
        // delta of the layer below through W^T and relu's derivative.
        for (l, layer) in self.params.layers.iter().enumerate().rev() {
            let x = if l == 0 {
                ws.input.slice(s![..b, ..])
            } else {
                ws.outputs[l - 1].slice(s![..b, ..])
            };
            let delta = ws.deltas[l].slice(s![..b, ..]);
            let (gw, gb) = grad_pair(&mut self.grads, l, layer.weights.dim());
            if l == 0 && ws.sparse_input {
                sparse::grad_weights(&ws.sparse, delta, gw);
            } else {
                ops::matmul(x.t(), delta, gw);
            }
            ops::column_sums(delta, gb.into());
            if l > 0 {
                let (below, here) = ws.deltas.split_at_mut(l);
                let mut prev = below[l - 1].slice_mut(s![..b, ..]);
                ops::matmul(
                    here[0].slice(s![..b, ..]),
                    layer.weights.t(),
                    prev.view_mut(),
                );
                ops::relu_backward(prev, ws.outputs[l - 1].slice(s![..b, ..]));
            }
        }
        (loss_sum, correct)
    }

    /// Gradients of the mean loss over `indices` of the training set, tensor by
    /// tensor in `Params::tensors` order, with the loss sum (no update is made).
    pub fn gradients(&mut self, indices: &[u32]) -> (f64, Vec<Vec<f32>>) {
        let (loss_sum, _) = self.backward(indices);
        (loss_sum, self.grads.clone())
    }

    fn train_step(&mut self, indices: &[u32]) -> (f64, u64) {
        let (loss_sum, correct) = self.backward(indices);
        self.counters.steps += 1;
        let t = self.counters.steps;
        let optimizer = self.settings.optimizer;
        for ((param, grad), state) in self
            .params
            .tensors_mut()
            .into_iter()
            .zip(&self.grads)
            .zip(&mut self.optimizer_state)
        {
            // Element-wise, so chunks update in parallel.
            let chunks = param
                .par_chunks_mut(UPDATE_CHUNK)
                .zip(grad.par_chunks(UPDATE_CHUNK));
            match state.as_mut_slice() {
                [] => {
                    chunks.for_each(|(p, g)| optimizer.apply(t, p, g, &mut [] as &mut [&mut [f32]]))
                }
                [a] => chunks
                    .zip(a.par_chunks_mut(UPDATE_CHUNK))
                    .for_each(|((p, g), a)| optimizer.apply(t, p, g, &mut [a])),
                [a, b] => chunks
                    .zip(a.par_chunks_mut(UPDATE_CHUNK))
                    .zip(b.par_chunks_mut(UPDATE_CHUNK))
                    .for_each(|(((p, g), a), b)| optimizer.apply(t, p, g, &mut [a, b])),
                more => unreachable!("no optimizer keeps {} state vectors", more.len()),
            }
        }
        (loss_sum, correct)
    }
}

/// Views of layer `l`'s weight and bias gradients.
fn grad_pair(
    grads: &mut [Vec<f32>],
    l: usize,
    dim: (usize, usize),
) -> (ArrayViewMut2<'_, f32>, &mut [f32]) {
    let (w, b) = grads[2 * l..2 * l + 2].split_at_mut(1);
    (
        ArrayViewMut2::from_shape(dim, &mut w[0]).expect("gradient has the weight's shape"),
        &mut b[0],
    )
}

impl Backend for CpuBackend {
    fn describe(&self) -> String {
        format!(
            "cpu (ndarray, {} threads)",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        )
    }

    fn train_epoch(
        &mut self,
        order: &[u32],
        report: &mut dyn FnMut(&Metrics),
    ) -> Result<Metrics, BackendError> {
        let mut metrics = Metrics::default();
        for batch in order.chunks(self.settings.batch_size) {
            let (loss_sum, correct) = self.train_step(batch);
            metrics.samples += batch.len() as u64;
            metrics.steps += 1;
            metrics.loss_sum += loss_sum;
            metrics.correct += correct;
            if metrics.steps % self.settings.report_every as u64 == 0 {
                report(&metrics);
            }
        }
        Ok(metrics)
    }

    fn evaluate(&mut self, split: Split) -> Result<Metrics, BackendError> {
        let data = match split {
            Split::Train => &self.data.train,
            Split::Test => &self.data.test,
        };
        let ws = self
            .eval_ws
            .get_or_insert_with(|| Workspace::new(&self.params, EVAL_CHUNK));
        let all: Vec<u32> = (0..data.len as u32).collect();
        let mut metrics = Metrics::default();
        for chunk in all.chunks(ws.rows()) {
            let (loss_sum, correct) =
                Self::forward_and_loss(&self.params, self.settings.loss, data, chunk, ws, 1.0);
            metrics.samples += chunk.len() as u64;
            metrics.steps += 1;
            metrics.loss_sum += loss_sum;
            metrics.correct += correct;
        }
        Ok(metrics)
    }

    fn params(&mut self) -> Result<Params, BackendError> {
        Ok(self.params.clone())
    }

    fn set_params(&mut self, params: &Params) -> Result<(), BackendError> {
        check_same_shape(&self.params.spec(), params)?;
        self.params = params.clone();
        Ok(())
    }

    fn counters(&self) -> Counters {
        self.counters
    }
}
