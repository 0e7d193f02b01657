// The fast path of matmul.wgsl for operands whose contiguous dimensions are
// multiples of 4: every load brings in a vec4. On SIMD hardware, and above all on
// software rasterisers such as lavapipe where each divergent load is a loop over
// the lanes, the cost of a matmul is its loads, so each invocation computes a
// 4 x 4 block of C from 8 vec4 loads per 4 steps of k (NN and NT forms) or 2 per
// step (TN form): 8 multiply-adds per load instead of 2.
//
// Requirements, checked by the host before choosing this kernel: K % 4 == 0
// unless A is transposed, M % 4 == 0 when it is, N % 4 == 0, and not both
// operands transposed. The batch dimension (M or K, see BATCH_DIM) is never the
// vectorised one, so a partial last batch is fine.

override TRANSPOSE_A: bool = false;
override TRANSPOSE_B: bool = false;
// As in matmul.wgsl: 0 none, 1 bias, 2 bias + relu, 3 times relu'(mask).
override EPILOGUE: u32 = 0u;
// 0 none, 1: M is the step's row count, 2: K is.
override BATCH_DIM: u32 = 0u;

struct Dims {
    m: u32,
    k: u32,
    n: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> extra: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> dims: Dims;

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    var m = dims.m;
    var k = dims.k;
    if BATCH_DIM == 1u {
        m = step.rows;
    }
    if BATCH_DIM == 2u {
        k = step.rows;
    }
    let n4 = dims.n / 4u;
    let col4 = gid.x;
    let row0 = gid.y * 4u;
    if col4 >= n4 || row0 >= m {
        return;
    }

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    if TRANSPOSE_A {
        // A stored K x M: one load gives op(A)[row0..row0+4, kk].
        let m4 = m / 4u;
        for (var kk = 0u; kk < k; kk++) {
            let av = a[kk * m4 + gid.y];
            let bv = b[kk * n4 + col4];
            acc0 = fma(vec4<f32>(av.x), bv, acc0);
            acc1 = fma(vec4<f32>(av.y), bv, acc1);
            acc2 = fma(vec4<f32>(av.z), bv, acc2);
            acc3 = fma(vec4<f32>(av.w), bv, acc3);
        }
    } else {
        // A stored M x K: one load gives op(A)[row, kk..kk+4].
        let k4 = k / 4u;
        let a0 = min(row0, m - 1u) * k4;
        let a1 = min(row0 + 1u, m - 1u) * k4;
        let a2 = min(row0 + 2u, m - 1u) * k4;
        let a3 = min(row0 + 3u, m - 1u) * k4;
        for (var q = 0u; q < k4; q++) {
            let x0 = a[a0 + q];
            let x1 = a[a1 + q];
            let x2 = a[a2 + q];
            let x3 = a[a3 + q];
            if TRANSPOSE_B {
                // B stored N x K: one load gives op(B)[kk..kk+4, col].
                let c0 = col4 * 4u * k4 + q;
                let y0 = b[c0];
                let y1 = b[c0 + k4];
                let y2 = b[c0 + 2u * k4];
                let y3 = b[c0 + 3u * k4];
                acc0 += vec4<f32>(dot(x0, y0), dot(x0, y1), dot(x0, y2), dot(x0, y3));
                acc1 += vec4<f32>(dot(x1, y0), dot(x1, y1), dot(x1, y2), dot(x1, y3));
                acc2 += vec4<f32>(dot(x2, y0), dot(x2, y1), dot(x2, y2), dot(x2, y3));
                acc3 += vec4<f32>(dot(x3, y0), dot(x3, y1), dot(x3, y2), dot(x3, y3));
            } else {
                // B stored K x N: one load gives op(B)[kk, col..col+4].
                let b0 = 4u * q * n4 + col4;
                let y0 = b[b0];
                let y1 = b[b0 + n4];
                let y2 = b[b0 + 2u * n4];
                let y3 = b[b0 + 3u * n4];
                acc0 = fma(vec4<f32>(x0.x), y0, fma(vec4<f32>(x0.y), y1, fma(vec4<f32>(x0.z), y2, fma(vec4<f32>(x0.w), y3, acc0))));
                acc1 = fma(vec4<f32>(x1.x), y0, fma(vec4<f32>(x1.y), y1, fma(vec4<f32>(x1.z), y2, fma(vec4<f32>(x1.w), y3, acc1))));
                acc2 = fma(vec4<f32>(x2.x), y0, fma(vec4<f32>(x2.y), y1, fma(vec4<f32>(x2.z), y2, fma(vec4<f32>(x2.w), y3, acc2))));
                acc3 = fma(vec4<f32>(x3.x), y0, fma(vec4<f32>(x3.y), y1, fma(vec4<f32>(x3.z), y2, fma(vec4<f32>(x3.w), y3, acc3))));
            }
        }
    }

    var acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + i;
        if row >= m {
            break;
        }
        let idx = row * n4 + col4;
        var v = acc[i];
        if EPILOGUE == 1u || EPILOGUE == 2u {
            v += extra[col4];
        }
        if EPILOGUE == 2u {
            v = max(v, vec4<f32>(0.0));
        }
        if EPILOGUE == 3u {
            v = select(vec4<f32>(0.0), v, extra[idx] > vec4<f32>(0.0));
        }
        c[idx] = v;
    }
}
