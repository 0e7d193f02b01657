//! The CPU device's gradients, from the plan's training step, against central
//! finite differences of the loss computed independently in f64, for every
//! parameter and both losses, on dense and sparse (MNIST-like) inputs.

use std::ops::ControlFlow;
use std::sync::Arc;

use super::CpuExecutor;
use crate::backend::{Executor, RunSettings, Split};
use crate::data::{pixel, Dataset, Splits};
use crate::loss::LossKind;
use crate::model::{Init, ModelSpec, Params};
use crate::plan::{Buf, Op, Plan, Program};
use crate::test_util::{synthetic, Lcg};

/// Mean cross-entropy of the network on `data`, all in f64.
fn loss_f64(params: &[Vec<f64>], spec: &ModelSpec, data: &Dataset) -> f64 {
    let dims = spec.layer_dims();
    let mut total = 0.0;
    for i in 0..data.len {
        let mut a: Vec<f64> = data.image(i).iter().map(|&p| pixel(p) as f64).collect();
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

fn check(loss: LossKind, zero_fraction: f64) {
    let spec = ModelSpec::mlp(12, &[7, 5], 10);
    let train = synthetic(6, 12, 10, zero_fraction, 7);
    let mut params = Params::init(&spec, Init::Glorot, 3);
    let mut rng = Lcg(11);
    for layer in &mut params.layers {
        layer.bias.iter_mut().for_each(|b| *b = 0.1 * rng.signed());
    }
    // The training step without its update: it leaves the gradients.
    let mut plan = Plan::new(&spec, 6, loss, 0);
    assert_eq!(plan.train.pop(), Some(Op::Update));
    let data = Arc::new(Splits::new(train.clone(), train.clone()));
    let settings = RunSettings {
        optimizer: None,
        report_every: 1,
    };
    let mut cpu = CpuExecutor::new(plan, data, settings, &params.tensors());
    let metrics = cpu
        .run(Program::Train, Split::Train, None, &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap();

    let mut p64: Vec<Vec<f64>> = params
        .tensors()
        .iter()
        .map(|t| t.iter().map(|&v| v as f64).collect())
        .collect();
    let reference = loss_f64(&p64, &spec, &train);
    assert!(
        (metrics.loss() - reference).abs() < 1e-5,
        "loss {} vs f64 {reference}",
        metrics.loss()
    );

    let h = 1e-6;
    let mut checked = 0;
    for t in 0..p64.len() {
        let grads = cpu.read(Buf::Grad(t)).unwrap();
        for i in 0..p64[t].len() {
            let orig = p64[t][i];
            p64[t][i] = orig + h;
            let up = loss_f64(&p64, &spec, &train);
            p64[t][i] = orig - h;
            let down = loss_f64(&p64, &spec, &train);
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

#[test]
fn sparse_cross_entropy_gradients_match_finite_differences() {
    check(LossKind::SparseCategorical, 0.0);
    check(LossKind::SparseCategorical, 0.7);
}

#[test]
fn categorical_cross_entropy_gradients_match_finite_differences() {
    check(LossKind::Categorical, 0.0);
    check(LossKind::Categorical, 0.7);
}
