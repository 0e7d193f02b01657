// C = op(A) · op(B) with a fused epilogue, register-tiled: each invocation
// computes a TILE_ROWS x TILE_COLS (4 x 4) block of C, so every loaded value feeds several
// multiply-adds. Edge tiles clamp their load indices into range (valid memory,
// discarded results) and mask their stores, so any shape is correct.
// Bindings (with Elem = f32): src/backend/gpu/kernels/matmul.rs.

@compute @workgroup_size(WORKGROUP_X, WORKGROUP_Y, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let mk = step_mk();
    let m = mk.x;
    let k = mk.y;
    let n = dims.n;
    let m0 = gid.y * TILE_ROWS;
    let n0 = gid.x * TILE_COLS;
    if m0 >= m || n0 >= n {
        return;
    }

    // Element (row, kk) of op(A) is at a_base[i] + kk * a_step; likewise for B.
    var a_base: array<u32, 4>;
    var b_base: array<u32, 4>;
    for (var i = 0u; i < 4u; i++) {
        let row = min(m0 + i, m - 1u);
        let col = min(n0 + i, n - 1u);
        a_base[i] = select(row * k, row, TRANSPOSE_A);
        b_base[i] = select(col, col * k, TRANSPOSE_B);
    }
    let a_step = select(1u, m, TRANSPOSE_A);
    let b_step = select(n, 1u, TRANSPOSE_B);

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var kk = 0u; kk < k; kk++) {
        let bo = kk * b_step;
        let bv = vec4<f32>(b[b_base[0] + bo], b[b_base[1] + bo], b[b_base[2] + bo], b[b_base[3] + bo]);
        let ao = kk * a_step;
        acc0 = fma(vec4<f32>(a[a_base[0] + ao]), bv, acc0);
        acc1 = fma(vec4<f32>(a[a_base[1] + ao]), bv, acc1);
        acc2 = fma(vec4<f32>(a[a_base[2] + ao]), bv, acc2);
        acc3 = fma(vec4<f32>(a[a_base[3] + ao]), bv, acc3);
    }

    var acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < TILE_ROWS; i++) {
        let row = m0 + i;
        if row >= m {
            break;
        }
        for (var j = 0u; j < TILE_COLS; j++) {
            let col = n0 + j;
            if col >= n {
                break;
            }
            let idx = row * n + col;
            c[idx] = epilogue1(acc[i][j], col, idx);
        }
    }
}
