// C = op(A) · op(B) with a fused epilogue, for narrow outputs (the 10-class
// layer, column sums): C has too few blocks to occupy a GPU, so each workgroup
// computes one TILE_ROWS x TILE_COLS block and its WORKGROUP_X invocations
// split the reduction over K between them (invocation i takes k = i, i +
// WORKGROUP_X, ...), then add their partial sums through workgroup memory,
// each output summed by one invocation in a fixed order (deterministic).
// Any shape and form: rows and columns past C are clamped and not stored.
// Bindings (with Elem = f32): src/backend/gpu/kernels/matmul.rs.

const OUTPUTS: u32 = TILE_ROWS * TILE_COLS;

// The partial sum of output o by invocation i at partial[i * OUTPUTS + o].
var<workgroup> partial: array<f32, WORKGROUP_X * OUTPUTS>;

@compute @workgroup_size(WORKGROUP_X, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) me: u32,
) {
    let mk = step_mk();
    let m = mk.x;
    let k = mk.y;
    let n = dims.n;
    let m0 = wg.y * TILE_ROWS;
    let n0 = wg.x * TILE_COLS;

    // Element (row, kk) of op(A) is at a_base[i] + kk * a_step; likewise B.
    var a_base: array<u32, TILE_ROWS>;
    var b_base: array<u32, TILE_COLS>;
    for (var i = 0u; i < TILE_ROWS; i++) {
        let row = min(m0 + i, m - 1u);
        a_base[i] = select(row * k, row, TRANSPOSE_A);
    }
    for (var j = 0u; j < TILE_COLS; j++) {
        let col = min(n0 + j, n - 1u);
        b_base[j] = select(col, col * k, TRANSPOSE_B);
    }
    let a_step = select(1u, m, TRANSPOSE_A);
    let b_step = select(n, 1u, TRANSPOSE_B);

    var acc: array<f32, OUTPUTS>;
    for (var kk = me; kk < k; kk += WORKGROUP_X) {
        var y: array<f32, TILE_COLS>;
        for (var j = 0u; j < TILE_COLS; j++) {
            y[j] = b[b_base[j] + kk * b_step];
        }
        for (var i = 0u; i < TILE_ROWS; i++) {
            let x = a[a_base[i] + kk * a_step];
            for (var j = 0u; j < TILE_COLS; j++) {
                acc[i * TILE_COLS + j] = fma(x, y[j], acc[i * TILE_COLS + j]);
            }
        }
    }
    for (var o = 0u; o < OUTPUTS; o++) {
        partial[me * OUTPUTS + o] = acc[o];
    }
    workgroupBarrier();

    // Invocation o adds up output o (WORKGROUP_X >= OUTPUTS, checked by the host).
    if me < OUTPUTS {
        let row = m0 + me / TILE_COLS;
        let col = n0 + me % TILE_COLS;
        var s = 0.0;
        for (var i = 0u; i < WORKGROUP_X; i++) {
            s += partial[i * OUTPUTS + me];
        }
        if row < m && col < n {
            let idx = row * n + col;
            c[idx] = epilogue1(s, col, idx);
        }
    }
}
