//! The CPU device's gradients, from the plan's training step, against central
//! finite differences of the loss computed independently in f64, for every
//! parameter and both losses, on dense and sparse (MNIST-like) inputs.

use std::ops::ControlFlow;
use std::sync::Arc;

use super::CpuExecutor;
use crate::backend::host::Driver;
use crate::backend::{Executor, RunSettings, Split};
use crate::data::{pixel, Dataset, Splits};
use crate::loss::LossKind;
use crate::model::{Activation, Init, Layer, ModelSpec, Padding, Params};
use crate::plan::{Buf, DropoutMask, Op, Plan, Program};
use crate::test_util::{synthetic, Lcg};

/// The run seed the dropout masks are drawn from (the step is 0: the
/// check runs one step and no update).
const SEED: u64 = 5;

/// The logits of example `row` of a batch, computed layer by layer in f64
/// straight from the definitions (direct convolution sums, not im2col).
fn logits_f64(params: &[Vec<f64>], spec: &ModelSpec, image: &[u8], row: usize) -> Vec<f64> {
    let mut x: Vec<f64> = image.iter().map(|&p| pixel(p) as f64).collect();
    let mut tensors = params.iter();
    let last = spec.layers.len() - 1;
    for (l, (layer, (input, output))) in spec
        .layers
        .iter()
        .zip(
            spec.input_shapes()
                .iter()
                .zip(spec.output_shapes().unwrap()),
        )
        .enumerate()
    {
        let mut z = match *layer {
            Layer::Dense { units, .. } => {
                let (w, b) = (tensors.next().unwrap(), tensors.next().unwrap());
                (0..units)
                    .map(|j| {
                        b[j] + x
                            .iter()
                            .enumerate()
                            .map(|(k, xk)| xk * w[k * units + j])
                            .sum::<f64>()
                    })
                    .collect()
            }
            Layer::Conv2D {
                filters,
                kernel_size: k,
                padding,
                ..
            } => {
                let (w, b) = (tensors.next().unwrap(), tensors.next().unwrap());
                let [h, wd, c] = input[..] else {
                    unreachable!()
                };
                let pad = if padding == Padding::Same {
                    (k - 1) / 2
                } else {
                    0
                } as isize;
                let (oh, ow) = (output[0], output[1]);
                let mut z = vec![0.0; oh * ow * filters];
                for oy in 0..oh {
                    for ox in 0..ow {
                        for f in 0..filters {
                            let mut sum = b[f];
                            for ky in 0..k {
                                for kx in 0..k {
                                    let iy = (oy + ky) as isize - pad;
                                    let ix = (ox + kx) as isize - pad;
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                        continue;
                                    }
                                    for ci in 0..c {
                                        let xv = x[(iy as usize * wd + ix as usize) * c + ci];
                                        sum += xv * w[((ky * k + kx) * c + ci) * filters + f];
                                    }
                                }
                            }
                            z[(oy * ow + ox) * filters + f] = sum;
                        }
                    }
                }
                z
            }
            Layer::MaxPooling2D { pool_size: p } => {
                let (wd, c) = (input[1], input[2]);
                let (oh, ow) = (output[0], output[1]);
                let mut z = vec![f64::NEG_INFINITY; oh * ow * c];
                for oy in 0..oh {
                    for ox in 0..ow {
                        for ci in 0..c {
                            for dy in 0..p {
                                for dx in 0..p {
                                    let v = x[((oy * p + dy) * wd + ox * p + dx) * c + ci];
                                    let m = &mut z[(oy * ow + ox) * c + ci];
                                    *m = m.max(v);
                                }
                            }
                        }
                    }
                }
                z
            }
            Layer::Flatten => x.clone(),
            Layer::Dropout { rate } => {
                let mask = DropoutMask {
                    rate,
                    stream: dropout_stream(spec, l),
                    width: x.len(),
                };
                let scale = 1.0 / (1.0 - rate as f64);
                x.iter()
                    .enumerate()
                    .map(|(i, v)| {
                        if mask.keeps(SEED, 0, row * x.len() + i) {
                            v * scale
                        } else {
                            0.0
                        }
                    })
                    .collect()
            }
        };
        if l < last && layer.activation() == Some(Activation::Relu) {
            z.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        x = z;
    }
    x
}

/// Which dropout layer (counted from the input) layer `l` is.
fn dropout_stream(spec: &ModelSpec, l: usize) -> u32 {
    spec.layers[..l]
        .iter()
        .filter(|layer| matches!(layer, Layer::Dropout { .. }))
        .count() as u32
}

/// Mean cross-entropy of the network on `data`, all in f64.
fn loss_f64(params: &[Vec<f64>], spec: &ModelSpec, data: &Dataset) -> f64 {
    let mut total = 0.0;
    for i in 0..data.len {
        let a = logits_f64(params, spec, data.image(i), i);
        let max = a.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + a.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        total += lse - a[data.labels[i] as usize];
    }
    total / data.len as f64
}

fn check(spec: &ModelSpec, loss: LossKind, zero_fraction: f64) {
    let classes = spec.classes();
    let train = synthetic(6, spec.input_len(), classes, zero_fraction, 7);
    let mut params = Params::init(spec, Init::Glorot, 3);
    let mut rng = Lcg(11);
    for tensor in &mut params.tensors {
        if tensor.name.ends_with(".bias") {
            tensor
                .values
                .iter_mut()
                .for_each(|b| *b = 0.1 * rng.signed());
        }
    }
    // The training step without its update: it leaves the gradients.
    let mut plan = Plan::new(spec, 6, loss, 0);
    assert_eq!(plan.train.pop(), Some(Op::Update));
    let data = Arc::new(Splits::new(train.clone(), train.clone()));
    let settings = RunSettings {
        optimizer: None,
        report_every: 1,
        seed: SEED,
    };
    let mut cpu = CpuExecutor::new(plan, data, settings, &params.values());
    let mut go_on = |_: &crate::backend::Metrics| ControlFlow::Continue(());
    let metrics = Driver::Cpu
        .block_on(cpu.run(Program::Train, Split::Train, None, &mut go_on))
        .unwrap()
        .unwrap();

    let mut p64: Vec<Vec<f64>> = params
        .values()
        .iter()
        .map(|t| t.iter().map(|&v| v as f64).collect())
        .collect();
    let reference = loss_f64(&p64, spec, &train);
    assert!(
        (metrics.loss() - reference).abs() < 1e-5,
        "loss {} vs f64 {reference}",
        metrics.loss()
    );

    let h = 1e-6;
    let mut checked = 0;
    for t in 0..p64.len() {
        let grads = Driver::Cpu
            .block_on(cpu.read(Buf::Grad(t)))
            .unwrap()
            .unwrap();
        for i in 0..p64[t].len() {
            let orig = p64[t][i];
            p64[t][i] = orig + h;
            let up = loss_f64(&p64, spec, &train);
            p64[t][i] = orig - h;
            let down = loss_f64(&p64, spec, &train);
            p64[t][i] = orig;
            let numeric = (up - down) / (2.0 * h);
            let analytic = grads[i] as f64;
            // f32 analytic gradients: relative error ~1e-6; the f64 central
            // difference is accurate to ~1e-9 away from relu kinks.
            assert!(
                (analytic - numeric).abs() <= 1e-5 + 1e-3 * numeric.abs(),
                "tensor {t} element {i}: analytic {analytic} vs numeric {numeric}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, spec.parameter_count());
}

fn mlp() -> ModelSpec {
    ModelSpec::mlp(12, &[7, 5], 10)
}

/// Every layer kind: valid and same convolutions (an even kernel pads
/// unevenly), a pool that drops a row and a column, dropout, a linear layer.
fn convnet() -> ModelSpec {
    ModelSpec::sequential([7, 7, 2])
        .conv2d(3, 3, Activation::Relu)
        .max_pool(2)
        .layer(Layer::Conv2D {
            filters: 2,
            kernel_size: 2,
            padding: Padding::Same,
            activation: Activation::Relu,
        })
        .flatten()
        .dropout(0.3)
        .dense(5, Activation::Linear)
        .dense(4, Activation::Softmax)
}

#[test]
fn sparse_cross_entropy_gradients_match_finite_differences() {
    check(&mlp(), LossKind::SparseCategorical, 0.0);
    check(&mlp(), LossKind::SparseCategorical, 0.7);
}

#[test]
fn categorical_cross_entropy_gradients_match_finite_differences() {
    check(&mlp(), LossKind::Categorical, 0.0);
    check(&mlp(), LossKind::Categorical, 0.7);
}

#[test]
fn conv_pool_and_dropout_gradients_match_finite_differences() {
    check(&convnet(), LossKind::Categorical, 0.0);
    check(&convnet(), LossKind::SparseCategorical, 0.5);
}
