use super::*;
use crate::model::Activation;

fn matmuls(ops: &[Op]) -> Vec<Matmul> {
    ops.iter()
        .filter_map(|op| match op {
            Op::Matmul(m) => Some(*m),
            _ => None,
        })
        .collect()
}

fn names(ops: &[Op]) -> Vec<&'static str> {
    ops.iter().map(Op::name).collect()
}

#[test]
fn the_books_training_step_has_ten_ops_in_order() {
    let spec = ModelSpec::mlp(784, &[512], 10);
    let plan = Plan::new(&spec, 128, LossKind::SparseCategorical, 1);
    assert_eq!(
        names(&plan.train),
        [
            "gather",
            "matmul",
            "matmul",
            "softmax_xent",
            "matmul",
            "column_sums",
            "matmul",
            "matmul",
            "column_sums",
            "update"
        ]
    );
    let m = matmuls(&plan.train);
    // Forward: X·W0 + b0 with relu, then the logits.
    assert_eq!((m[0].m, m[0].k, m[0].n), (128, 784, 512));
    assert_eq!(
        (m[0].c, m[0].form.epilogue),
        (Buf::Output(0), Epilogue::BiasRelu)
    );
    assert_eq!((m[1].c, m[1].form.epilogue), (Buf::Pre(1), Epilogue::Bias));
    // Backward of the output layer: dW1 = H1ᵀ·delta1, then delta0 masked by relu.
    assert_eq!(
        (m[2].a, m[2].b, m[2].c, m[2].form.batch_dim),
        (Buf::Output(0), Buf::PreGrad(1), Buf::Grad(2), BatchDim::K)
    );
    assert_eq!(
        (m[3].c, m[3].extra),
        (Buf::PreGrad(0), Some(Buf::Output(0)))
    );
    assert_eq!(m[3].form.epilogue, Epilogue::ReluMask);
    // The first layer's weight gradient reads the batch; no input gradient.
    assert_eq!((m[4].a, m[4].c), (Buf::Input, Buf::Grad(0)));
    assert_eq!(plan.tensors, vec![(784, 512), (1, 512), (512, 10), (1, 10)]);
    assert_eq!(plan.len(Buf::Output(0)), 128 * 512);
    // The fused-away buffers are not allocated.
    assert_eq!(plan.len(Buf::Pre(0)), 0);
    assert_eq!(plan.len(Buf::OutputGrad(0)), 0);
    assert_eq!(
        names(&plan.eval),
        ["gather", "matmul", "matmul", "softmax_xent"]
    );
    assert_eq!(
        plan.predict.last(),
        Some(&Op::Softmax {
            logits: Buf::Pre(1)
        })
    );
}

#[test]
fn linear_hidden_layers_skip_the_relu_mask() {
    let spec = ModelSpec::sequential([6])
        .dense(5, Activation::Linear)
        .dense(3, Activation::Softmax);
    let plan = Plan::new(&spec, 4, LossKind::Categorical, 0);
    let m = matmuls(&plan.train);
    assert_eq!(m[0].form.epilogue, Epilogue::Bias);
    assert_eq!((m[3].form.epilogue, m[3].extra), (Epilogue::None, None));
    assert_eq!(m[3].c, Buf::OutputGrad(0));
    assert_eq!(plan.train[0], Op::Gather { one_hot: true });
    assert_eq!(plan.predict[0], Op::Gather { one_hot: false });
}

#[test]
fn the_convnet_lowers_convolutions_to_products_over_positions() {
    let spec = ModelSpec::convnet(28, 28, 10);
    let plan = Plan::new(&spec, 64, LossKind::Categorical, 1);
    assert_eq!(
        names(&plan.eval),
        [
            "gather",
            "im2col",
            "matmul",
            "max_pool",
            "im2col",
            "matmul",
            "max_pool",
            "im2col",
            "matmul",
            "matmul",
            "matmul",
            "softmax_xent"
        ]
    );
    let m = matmuls(&plan.train);
    // conv2d_0: 64 examples x 26·26 positions, 3·3·1 patch values, 32 filters.
    assert_eq!(
        (m[0].m, m[0].k, m[0].n, m[0].positions),
        (64 * 676, 9, 32, 676)
    );
    assert_eq!(m[0].step_mk(10), (10 * 676, 9));
    assert_eq!(m[0].form.epilogue, Epilogue::BiasRelu);
    // The dense layer after Flatten reads the last convolution's output.
    let dense = m.iter().find(|mm| mm.b == Buf::Param(6)).unwrap();
    assert_eq!((dense.a, dense.k), (Buf::Output(4), 576));
    // Backward: the pools route gradients with the relu derivative of the
    // convolution below folded in; the first convolution has no input gradient.
    let train = names(&plan.train);
    let backward = &train[train.iter().position(|&n| n == "softmax_xent").unwrap() + 1..];
    assert_eq!(
        backward,
        [
            "matmul",
            "column_sums",
            "matmul",
            "matmul",
            "column_sums",
            "matmul",
            "matmul",
            "column_sums",
            "matmul",
            "col2im",
            "max_pool_grad",
            "matmul",
            "column_sums",
            "matmul",
            "col2im",
            "max_pool_grad",
            "matmul",
            "column_sums",
            "update"
        ]
    );
    assert!(plan.train.contains(&Op::ColumnSums {
        src: Buf::PreGrad(0),
        dst: Buf::Grad(1),
        cols: 32,
        positions: 676
    }));
    assert_eq!(plan.len(Buf::Patches(2)), 64 * 121 * 288);
    assert_eq!(plan.len(Buf::PatchesGrad(0)), 0);
}

#[test]
fn dropout_runs_only_in_training() {
    let spec = ModelSpec::sequential([4])
        .dense(8, Activation::Relu)
        .dropout(0.5)
        .dense(2, Activation::Softmax);
    let plan = Plan::new(&spec, 3, LossKind::SparseCategorical, 0);
    assert_eq!(
        names(&plan.train),
        [
            "gather",
            "matmul",
            "dropout",
            "matmul",
            "softmax_xent",
            "matmul",
            "column_sums",
            "matmul",
            "dropout",
            "relu_grad",
            "matmul",
            "column_sums",
            "update"
        ]
    );
    assert_eq!(
        names(&plan.eval),
        ["gather", "matmul", "matmul", "softmax_xent"]
    );
    // Inference reads the relu output where training reads the dropout's.
    assert_eq!(matmuls(&plan.eval)[1].a, Buf::Output(0));
    assert_eq!(matmuls(&plan.train)[1].a, Buf::Output(1));
}

#[test]
fn no_input_gradient_below_the_first_layer_with_parameters() {
    let spec = ModelSpec::sequential([8, 8, 1])
        .dropout(0.2)
        .max_pool(2)
        .conv2d(4, 3, Activation::Relu)
        .flatten()
        .dense(3, Activation::Softmax);
    let plan = Plan::new(&spec, 5, LossKind::SparseCategorical, 0);
    let train = names(&plan.train);
    // The convolution's input gradient, the pool's and the dropout's would
    // feed nothing: none is computed.
    for op in ["col2im", "max_pool_grad"] {
        assert!(!train.contains(&op), "{train:?}");
    }
    assert_eq!(train.iter().filter(|&&n| n == "dropout").count(), 1);
    assert_eq!(matmuls(&plan.train).len(), 5, "{train:?}");
}
