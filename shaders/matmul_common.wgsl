// What the three matmul kernels (matmul.wgsl, matmul_vec4.wgsl,
// matmul_subgroup.wgsl) share: their specialisation constants and dimensions.
// The host prepends this file to each of them.

// A is stored K x M (we multiply by its transpose) instead of M x K.
override TRANSPOSE_A: bool = false;
// B is stored N x K instead of K x N.
override TRANSPOSE_B: bool = false;
// 0: C = AB; 1: C = AB + bias; 2: C = relu(AB + bias);
// 3: C = AB * relu'(mask), mask being the relu output of the same shape (backward).
override EPILOGUE: u32 = 0u;
// Which dimension is the batch and takes the step's row count: 0 none, 1 M, 2 K.
override BATCH_DIM: u32 = 0u;

struct Dims {
    m: u32,
    k: u32,
    n: u32,
    _pad: u32,
}

@group(0) @binding(4) var<uniform> dims: Dims;

// (M, K) of this step: the batch dimension takes the step's row count.
fn step_mk() -> vec2<u32> {
    return vec2<u32>(
        select(dims.m, step.rows, BATCH_DIM == 1u),
        select(dims.k, step.rows, BATCH_DIM == 2u),
    );
}
