// The fast path of matmul.wgsl for operands whose contiguous dimensions are
// multiples of 4: every load brings in a vec4, and each invocation computes an
// 8 x 8 block of C. On lavapipe (a software Vulkan driver) each load whose address
// differs between invocations is a loop over the SIMD lanes, so a matmul costs its
// loads: an 8 x 8 block does 4 multiply-adds per float loaded, twice what a 4 x 4
// block does (measurements in the README).
//
// In the loop over K, every index into the accumulators and the loaded rows
// is a constant (the loops over them are written out, for 8 x 8 blocks): SwiftShader, Chromium's WebGPU on machines
// without a GPU, keeps a private array in memory and turns each access at a
// variable index into a gather over its SIMD lanes, which made this kernel
// 2.7x slower there (36 ms against 13.6 ms for the book's first layer).
//
// Requirements, checked by the host (`matmul::vec4_fits`): K % 4 == 0
// unless A is transposed, M % 4 == 0 when it is, N % 4 == 0, and not both
// operands transposed. The batch dimension is never the vectorised one, so a
// partial last batch is fine. Edge blocks clamp their loads and mask their stores.
// Bindings (with Elem = vec4<f32>): src/backend/gpu/kernels/matmul.rs.

// 8 rows x 8 columns (two vec4s) of C per invocation.
const_assert TILE_ROWS == 8u && TILE_COLS == 8u;
@compute @workgroup_size(WORKGROUP_X, WORKGROUP_Y, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let mk = step_mk();
    let m = mk.x;
    let k = mk.y;
    let n4 = dims.n / 4u;
    // This invocation's columns: two vec4s, the second clamped into range.
    let col_a = gid.x * (TILE_COLS / 4u);
    let col_b = min(col_a + 1u, n4 - 1u);
    let row0 = gid.y * TILE_ROWS;
    if col_a >= n4 || row0 >= m {
        return;
    }

    // acc[2 * i + h]: row row0 + i, vec4 column h (zero-initialised).
    var acc: array<vec4<f32>, 16>;
    if TRANSPOSE_A {
        // A stored K x M: two loads give op(A)[row0..row0+8, kk].
        let m4 = m / 4u;
        let r_a = gid.y * 2u;
        let r_b = min(r_a + 1u, m4 - 1u);
        for (var kk = 0u; kk < k; kk++) {
            let lo = a[kk * m4 + r_a];
            let hi = a[kk * m4 + r_b];
            let ya = b[kk * n4 + col_a];
            let yb = b[kk * n4 + col_b];
            acc[0] = fma(vec4<f32>(lo.x), ya, acc[0]);
            acc[1] = fma(vec4<f32>(lo.x), yb, acc[1]);
            acc[2] = fma(vec4<f32>(lo.y), ya, acc[2]);
            acc[3] = fma(vec4<f32>(lo.y), yb, acc[3]);
            acc[4] = fma(vec4<f32>(lo.z), ya, acc[4]);
            acc[5] = fma(vec4<f32>(lo.z), yb, acc[5]);
            acc[6] = fma(vec4<f32>(lo.w), ya, acc[6]);
            acc[7] = fma(vec4<f32>(lo.w), yb, acc[7]);
            acc[8] = fma(vec4<f32>(hi.x), ya, acc[8]);
            acc[9] = fma(vec4<f32>(hi.x), yb, acc[9]);
            acc[10] = fma(vec4<f32>(hi.y), ya, acc[10]);
            acc[11] = fma(vec4<f32>(hi.y), yb, acc[11]);
            acc[12] = fma(vec4<f32>(hi.z), ya, acc[12]);
            acc[13] = fma(vec4<f32>(hi.z), yb, acc[13]);
            acc[14] = fma(vec4<f32>(hi.w), ya, acc[14]);
            acc[15] = fma(vec4<f32>(hi.w), yb, acc[15]);
        }
    } else {
        // A stored M x K: one load gives op(A)[row, kk..kk+4].
        let k4 = k / 4u;
        let a_row0 = min(row0 + 0u, m - 1u) * k4;
        let a_row1 = min(row0 + 1u, m - 1u) * k4;
        let a_row2 = min(row0 + 2u, m - 1u) * k4;
        let a_row3 = min(row0 + 3u, m - 1u) * k4;
        let a_row4 = min(row0 + 4u, m - 1u) * k4;
        let a_row5 = min(row0 + 5u, m - 1u) * k4;
        let a_row6 = min(row0 + 6u, m - 1u) * k4;
        let a_row7 = min(row0 + 7u, m - 1u) * k4;
        for (var q = 0u; q < k4; q++) {
            let x0 = a[a_row0 + q];
            let x1 = a[a_row1 + q];
            let x2 = a[a_row2 + q];
            let x3 = a[a_row3 + q];
            let x4 = a[a_row4 + q];
            let x5 = a[a_row5 + q];
            let x6 = a[a_row6 + q];
            let x7 = a[a_row7 + q];
            if TRANSPOSE_B {
                // B stored N x K: one load gives op(B)[kk..kk+4, col].
                let y0 = b[min(col_a * 4u + 0u, n4 * 4u - 1u) * k4 + q];
                let y1 = b[min(col_a * 4u + 1u, n4 * 4u - 1u) * k4 + q];
                let y2 = b[min(col_a * 4u + 2u, n4 * 4u - 1u) * k4 + q];
                let y3 = b[min(col_a * 4u + 3u, n4 * 4u - 1u) * k4 + q];
                let y4 = b[min(col_a * 4u + 4u, n4 * 4u - 1u) * k4 + q];
                let y5 = b[min(col_a * 4u + 5u, n4 * 4u - 1u) * k4 + q];
                let y6 = b[min(col_a * 4u + 6u, n4 * 4u - 1u) * k4 + q];
                let y7 = b[min(col_a * 4u + 7u, n4 * 4u - 1u) * k4 + q];
                acc[0] += vec4<f32>(dot(x0, y0), dot(x0, y1), dot(x0, y2), dot(x0, y3));
                acc[1] += vec4<f32>(dot(x0, y4), dot(x0, y5), dot(x0, y6), dot(x0, y7));
                acc[2] += vec4<f32>(dot(x1, y0), dot(x1, y1), dot(x1, y2), dot(x1, y3));
                acc[3] += vec4<f32>(dot(x1, y4), dot(x1, y5), dot(x1, y6), dot(x1, y7));
                acc[4] += vec4<f32>(dot(x2, y0), dot(x2, y1), dot(x2, y2), dot(x2, y3));
                acc[5] += vec4<f32>(dot(x2, y4), dot(x2, y5), dot(x2, y6), dot(x2, y7));
                acc[6] += vec4<f32>(dot(x3, y0), dot(x3, y1), dot(x3, y2), dot(x3, y3));
                acc[7] += vec4<f32>(dot(x3, y4), dot(x3, y5), dot(x3, y6), dot(x3, y7));
                acc[8] += vec4<f32>(dot(x4, y0), dot(x4, y1), dot(x4, y2), dot(x4, y3));
                acc[9] += vec4<f32>(dot(x4, y4), dot(x4, y5), dot(x4, y6), dot(x4, y7));
                acc[10] += vec4<f32>(dot(x5, y0), dot(x5, y1), dot(x5, y2), dot(x5, y3));
                acc[11] += vec4<f32>(dot(x5, y4), dot(x5, y5), dot(x5, y6), dot(x5, y7));
                acc[12] += vec4<f32>(dot(x6, y0), dot(x6, y1), dot(x6, y2), dot(x6, y3));
                acc[13] += vec4<f32>(dot(x6, y4), dot(x6, y5), dot(x6, y6), dot(x6, y7));
                acc[14] += vec4<f32>(dot(x7, y0), dot(x7, y1), dot(x7, y2), dot(x7, y3));
                acc[15] += vec4<f32>(dot(x7, y4), dot(x7, y5), dot(x7, y6), dot(x7, y7));
            } else {
                // B stored K x N: one load gives op(B)[kk, col..col+4].
                let base = 4u * q * n4;
                let ya0 = b[base + 0u * n4 + col_a];
                let ya1 = b[base + 1u * n4 + col_a];
                let ya2 = b[base + 2u * n4 + col_a];
                let ya3 = b[base + 3u * n4 + col_a];
                let yb0 = b[base + 0u * n4 + col_b];
                let yb1 = b[base + 1u * n4 + col_b];
                let yb2 = b[base + 2u * n4 + col_b];
                let yb3 = b[base + 3u * n4 + col_b];
                acc[0] = madd4(x0, ya0, ya1, ya2, ya3, acc[0]);
                acc[1] = madd4(x0, yb0, yb1, yb2, yb3, acc[1]);
                acc[2] = madd4(x1, ya0, ya1, ya2, ya3, acc[2]);
                acc[3] = madd4(x1, yb0, yb1, yb2, yb3, acc[3]);
                acc[4] = madd4(x2, ya0, ya1, ya2, ya3, acc[4]);
                acc[5] = madd4(x2, yb0, yb1, yb2, yb3, acc[5]);
                acc[6] = madd4(x3, ya0, ya1, ya2, ya3, acc[6]);
                acc[7] = madd4(x3, yb0, yb1, yb2, yb3, acc[7]);
                acc[8] = madd4(x4, ya0, ya1, ya2, ya3, acc[8]);
                acc[9] = madd4(x4, yb0, yb1, yb2, yb3, acc[9]);
                acc[10] = madd4(x5, ya0, ya1, ya2, ya3, acc[10]);
                acc[11] = madd4(x5, yb0, yb1, yb2, yb3, acc[11]);
                acc[12] = madd4(x6, ya0, ya1, ya2, ya3, acc[12]);
                acc[13] = madd4(x6, yb0, yb1, yb2, yb3, acc[13]);
                acc[14] = madd4(x7, ya0, ya1, ya2, ya3, acc[14]);
                acc[15] = madd4(x7, yb0, yb1, yb2, yb3, acc[15]);
            }
        }
    }

    for (var i = 0u; i < TILE_ROWS; i++) {
        let row = row0 + i;
        if row >= m {
            break;
        }
        for (var h = 0u; h < 2u; h++) {
            let col4 = col_a + h;
            if col4 >= n4 {
                break;
            }
            let idx = row * n4 + col4;
            c[idx] = epilogue4(acc[2u * i + h], col4, idx);
        }
    }
}
