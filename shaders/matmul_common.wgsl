// What the three matmul kernels (matmul.wgsl, matmul_vec4.wgsl,
// matmul_subgroup.wgsl) share: their specialisation constants and the step's
// dimensions. The host generates the bindings, `Dims`, `Elem` and the
// EPILOGUE_* and BATCH_* values from src/backend/gpu/kernels/matmul.rs.

// A is stored K x M (we multiply by its transpose) instead of M x K.
override TRANSPOSE_A: bool = false;
// B is stored N x K instead of K x N.
override TRANSPOSE_B: bool = false;
// EPILOGUE_NONE: C = AB; EPILOGUE_BIAS: C = AB + bias; EPILOGUE_BIAS_RELU:
// C = relu(AB + bias); EPILOGUE_RELU_MASK: C = AB * relu'(mask), mask being the
// relu output of the same shape (backward).
override EPILOGUE: u32 = 0u;
// Which dimension is the batch and takes the step's row count: BATCH_M, BATCH_K
// or neither.
override BATCH_DIM: u32 = 0u;

// (M, K) of this step: the batch dimension takes the step's row count times
// the rows per example (`dims.positions`: a convolution's output positions).
fn step_mk() -> vec2<u32> {
    let rows = step.rows * dims.positions;
    return vec2<u32>(
        select(dims.m, rows, BATCH_DIM == BATCH_M),
        select(dims.k, rows, BATCH_DIM == BATCH_K),
    );
}

// acc + x.x * y0 + x.y * y1 + x.z * y2 + x.w * y3: a vec4 of A's row times
// four rows of B (the vec4 kernels' inner step).
fn madd4(x: vec4<f32>, y0: vec4<f32>, y1: vec4<f32>, y2: vec4<f32>, y3: vec4<f32>, acc: vec4<f32>) -> vec4<f32> {
    return fma(vec4<f32>(x.x), y0, fma(vec4<f32>(x.y), y1, fma(vec4<f32>(x.z), y2, fma(vec4<f32>(x.w), y3, acc))));
}
