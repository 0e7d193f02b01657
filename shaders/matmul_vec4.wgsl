// The fast path of matmul.wgsl for operands whose contiguous dimensions are
// multiples of 4: every load brings in a vec4, and each invocation computes an
// 8 x 8 block of C. On lavapipe (a software Vulkan driver) each load whose address
// differs between invocations is a loop over the SIMD lanes, so a matmul costs its
// loads: an 8 x 8 block does 4 multiply-adds per float loaded, twice what a 4 x 4
// block does (measurements in the README).
//
// Requirements, checked by the host (`matmul::vec4_fits`): K % 4 == 0
// unless A is transposed, M % 4 == 0 when it is, N % 4 == 0, and not both
// operands transposed. The batch dimension is never the vectorised one, so a
// partial last batch is fine. Edge blocks clamp their loads and mask their stores.
// Bindings (with Elem = vec4<f32>): src/backend/gpu/kernels/matmul.rs.

// TILE_ROWS (8) rows x TILE_COLS (8) columns per invocation, as two vec4s.
const ROWS: u32 = TILE_ROWS;

@compute @workgroup_size(WORKGROUP_X, WORKGROUP_Y, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let mk = step_mk();
    let m = mk.x;
    let k = mk.y;
    let n4 = dims.n / 4u;
    // This invocation's columns: two vec4s, the second clamped into range.
    let col_a = gid.x * (TILE_COLS / 4u);
    let col_b = min(col_a + 1u, n4 - 1u);
    let row0 = gid.y * ROWS;
    if col_a >= n4 || row0 >= m {
        return;
    }

    // acc[2 * i + h]: row row0 + i, vec4 column h.
    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = vec4<f32>(0.0);
    }
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
            let rows = array<f32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
            for (var i = 0u; i < ROWS; i++) {
                acc[2u * i] = fma(vec4<f32>(rows[i]), ya, acc[2u * i]);
                acc[2u * i + 1u] = fma(vec4<f32>(rows[i]), yb, acc[2u * i + 1u]);
            }
        }
    } else {
        // A stored M x K: one load gives op(A)[row, kk..kk+4].
        let k4 = k / 4u;
        var a_row: array<u32, 8>;
        for (var i = 0u; i < ROWS; i++) {
            a_row[i] = min(row0 + i, m - 1u) * k4;
        }
        for (var q = 0u; q < k4; q++) {
            if TRANSPOSE_B {
                // B stored N x K: one load gives op(B)[kk..kk+4, col].
                var y: array<vec4<f32>, 8>;
                for (var j = 0u; j < 8u; j++) {
                    let col = min(col_a * 4u + j, n4 * 4u - 1u);
                    y[j] = b[col * k4 + q];
                }
                for (var i = 0u; i < ROWS; i++) {
                    let x = a[a_row[i] + q];
                    acc[2u * i] += vec4<f32>(dot(x, y[0]), dot(x, y[1]), dot(x, y[2]), dot(x, y[3]));
                    acc[2u * i + 1u] += vec4<f32>(dot(x, y[4]), dot(x, y[5]), dot(x, y[6]), dot(x, y[7]));
                }
            } else {
                // B stored K x N: one load gives op(B)[kk, col..col+4].
                let base = 4u * q * n4;
                var ya: array<vec4<f32>, 4>;
                var yb: array<vec4<f32>, 4>;
                for (var t = 0u; t < 4u; t++) {
                    ya[t] = b[base + t * n4 + col_a];
                    yb[t] = b[base + t * n4 + col_b];
                }
                for (var i = 0u; i < ROWS; i++) {
                    let x = a[a_row[i] + q];
                    var lo = acc[2u * i];
                    var hi = acc[2u * i + 1u];
                    lo = fma(vec4<f32>(x.x), ya[0], lo);
                    hi = fma(vec4<f32>(x.x), yb[0], hi);
                    lo = fma(vec4<f32>(x.y), ya[1], lo);
                    hi = fma(vec4<f32>(x.y), yb[1], hi);
                    lo = fma(vec4<f32>(x.z), ya[2], lo);
                    hi = fma(vec4<f32>(x.z), yb[2], hi);
                    lo = fma(vec4<f32>(x.w), ya[3], lo);
                    hi = fma(vec4<f32>(x.w), yb[3], hi);
                    acc[2u * i] = lo;
                    acc[2u * i + 1u] = hi;
                }
            }
        }
    }

    for (var i = 0u; i < ROWS; i++) {
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
