//! The CPU backend's gradients against central finite differences of the loss
//! computed independently in f64, for every parameter tensor and both losses.

mod common;

use std::sync::Arc;

use gpu_mnist::backend::cpu::CpuBackend;
use gpu_mnist::backend::TrainSettings;
use gpu_mnist::data::{Dataset, Mnist};
use gpu_mnist::loss::LossKind;
use gpu_mnist::model::{Init, ModelSpec, Params};
use gpu_mnist::optim::{OptimizerKind, OptimizerSpec};

/// Mean cross-entropy of the network on `data`, all in f64.
fn loss_f64(params: &[Vec<f64>], spec: &ModelSpec, data: &Dataset) -> f64 {
    let dims = spec.layer_dims();
    let mut total = 0.0;
    for i in 0..data.len {
        let mut a: Vec<f64> = data.image(i).iter().map(|&p| p as f64 / 255.0).collect();
        for (l, &(fan_in, fan_out)) in dims.iter().enumerate() {
            let (w, b) = (&params[2 * l], &params[2 * l + 1]);
            let mut z = b.clone();
            for (k, &ak) in a.iter().enumerate().take(fan_in) {
                for (j, zj) in z.iter_mut().enumerate() {
                    *zj += ak * w[k * fan_out + j];
                }
            }
            if l + 1 < dims.len() {
                z.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            a = z;
        }
        let max = a.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + a.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        total += lse - a[data.labels[i] as usize];
    }
    total / data.len as f64
}

/// Random pixels (the dense first-layer path) or 70% zeros (the sparse path).
fn data(sparse: bool) -> Dataset {
    let mut train = common::synthetic(6, 12, 7);
    if sparse {
        train
            .images
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| i % 10 < 7)
            .for_each(|(_, p)| *p = 0);
    }
    train
}

fn check(loss: LossKind) {
    check_on(loss, data(false));
    check_on(loss, data(true));
}

fn check_on(loss: LossKind, train: Dataset) {
    let spec = ModelSpec {
        inputs: 12,
        hidden: vec![7, 5],
        classes: 10,
    };
    let data = Arc::new(Mnist {
        test: train.clone(),
        train: train.clone(),
    });
    let mut params = Params::init(&spec, Init::Glorot, 3);
    let mut rng = common::Lcg(11);
    for layer in &mut params.layers {
        layer.bias.iter_mut().for_each(|b| *b = 0.1 * rng.signed());
    }
    let settings = TrainSettings {
        batch_size: 6,
        optimizer: OptimizerSpec::keras_default(OptimizerKind::Sgd),
        loss,
        report_every: 1,
    };
    let mut backend = CpuBackend::new(data, params.clone(), settings);
    let (loss_sum, grads) = backend.gradients(&[0, 1, 2, 3, 4, 5]);

    let mut p64: Vec<Vec<f64>> = params
        .tensors()
        .iter()
        .map(|t| t.iter().map(|&v| v as f64).collect())
        .collect();
    let reference = loss_f64(&p64, &spec, &train);
    assert!(
        (loss_sum / 6.0 - reference).abs() < 1e-5,
        "loss {} vs f64 {reference}",
        loss_sum / 6.0
    );

    let h = 1e-6;
    let mut checked = 0;
    for t in 0..p64.len() {
        for i in 0..p64[t].len() {
            let orig = p64[t][i];
            p64[t][i] = orig + h;
            let up = loss_f64(&p64, &spec, &train);
            p64[t][i] = orig - h;
            let down = loss_f64(&p64, &spec, &train);
            p64[t][i] = orig;
            let numeric = (up - down) / (2.0 * h);
            let analytic = grads[t][i] as f64;
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

#[test]
fn sparse_cross_entropy_gradients_match_finite_differences() {
    check(LossKind::SparseCategorical);
}

#[test]
fn categorical_cross_entropy_gradients_match_finite_differences() {
    check(LossKind::Categorical);
}
