//! The CPU backend's sparse first-layer kernels against the dense reference ops.

mod common;

use gpu_mnist::backend::cpu::{ops, sparse};
use ndarray::Array2;

/// A batch where about 70% of the pixels are zero, like MNIST.
fn sparse_data() -> gpu_mnist::data::Dataset {
    let mut data = common::synthetic(40, 29, 3);
    for (i, p) in data.images.iter_mut().enumerate() {
        if i % 10 < 7 {
            *p = 0;
        }
    }
    data
}

#[test]
fn sparse_forward_and_weight_gradient_match_dense() {
    let data = sparse_data();
    let indices: Vec<u32> = (0..37).rev().collect();
    let mut batch = sparse::SparseBatch::default();
    batch.gather(&data, &indices);
    assert!(
        (0.25..0.35).contains(&batch.density()),
        "density {}",
        batch.density()
    );

    let mut x = Array2::zeros((37, 29));
    ops::gather_batch(&data, &indices, x.view_mut());
    let mut rng = common::Lcg(17);
    let w = Array2::from_shape_vec((29, 23), rng.vec(29 * 23)).unwrap();
    let bias = rng.vec(23);
    for relu in [false, true] {
        let (mut dense, mut fast) = (Array2::zeros((37, 23)), Array2::zeros((37, 23)));
        ops::dense_forward(x.view(), w.view(), &bias, relu, dense.view_mut());
        sparse::forward(&batch, w.view(), &bias, relu, fast.view_mut());
        for (a, b) in dense.iter().zip(&fast) {
            assert!((a - b).abs() <= 1e-5, "forward: {a} vs {b}");
        }
    }

    let delta = Array2::from_shape_vec((37, 23), rng.vec(37 * 23)).unwrap();
    let (mut dense, mut fast) = (Array2::zeros((29, 23)), Array2::from_elem((29, 23), 9.0));
    ops::matmul(x.t(), delta.view(), dense.view_mut());
    sparse::grad_weights(&batch, delta.view(), fast.view_mut());
    for (a, b) in dense.iter().zip(&fast) {
        assert!((a - b).abs() <= 1e-5, "weight gradient: {a} vs {b}");
    }
}

#[test]
fn density_counts_nonzero_pixels() {
    let data = sparse_data();
    let mut batch = sparse::SparseBatch::default();
    batch.gather(&data, &[0, 1]);
    let nonzero = data.images[..58].iter().filter(|&&p| p != 0).count();
    assert_eq!(batch.density(), nonzero as f64 / 58.0);
}
