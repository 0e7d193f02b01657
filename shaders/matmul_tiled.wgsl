// C = op(A) · op(B) with a fused epilogue, tiled through workgroup memory, the
// classic GPU kernel: the workgroup stages a TILE_K-deep slice of its rows of
// op(A) and its columns of op(B) in workgroup memory (each invocation loading
// a few floats, adjacent invocations adjacent addresses), then each invocation
// multiplies a TILE_ROWS x TILE_COLS register block out of it, so every float
// read from memory feeds WORKGROUP_X * TILE_COLS (or WORKGROUP_Y * TILE_ROWS)
// multiply-adds. Any shape and form: loads past K read zeros, rows and columns
// past C are clamped and not stored.
// Bindings (with Elem = f32): src/backend/gpu/kernels/matmul.rs, which also
// sets the tile sizes (WORKGROUP_*, TILE_*).

const BLOCK_ROWS: u32 = WORKGROUP_Y * TILE_ROWS;
const BLOCK_COLS: u32 = WORKGROUP_X * TILE_COLS;
const INVOCATIONS: u32 = WORKGROUP_X * WORKGROUP_Y;

// op(A)[block row r, k0 + kk] at a_tile[kk * BLOCK_ROWS + r]; likewise B.
var<workgroup> a_tile: array<f32, TILE_K * BLOCK_ROWS>;
var<workgroup> b_tile: array<f32, TILE_K * BLOCK_COLS>;

@compute @workgroup_size(WORKGROUP_X, WORKGROUP_Y, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) me: u32,
) {
    let mk = step_mk();
    let m = mk.x;
    let k = mk.y;
    let n = dims.n;
    let m0 = wg.y * BLOCK_ROWS;
    let n0 = wg.x * BLOCK_COLS;

    // acc[i * TILE_COLS + j]: row m0 + i * WORKGROUP_Y + lid.y, column
    // n0 + j * WORKGROUP_X + lid.x (interleaved, so that neighbouring
    // invocations read neighbouring workgroup-memory words).
    var acc: array<f32, TILE_ROWS * TILE_COLS>;
    for (var k0 = 0u; k0 < k; k0 += TILE_K) {
        for (var e = me; e < TILE_K * BLOCK_ROWS; e += INVOCATIONS) {
            // Adjacent invocations take adjacent addresses of A as stored.
            let r = select(e / TILE_K, e % BLOCK_ROWS, TRANSPOSE_A);
            let kk = select(e % TILE_K, e / BLOCK_ROWS, TRANSPOSE_A);
            let row = min(m0 + r, m - 1u);
            let kc = min(k0 + kk, k - 1u);
            let v = a[select(row * k + kc, kc * m + row, TRANSPOSE_A)];
            a_tile[kk * BLOCK_ROWS + r] = select(0.0, v, k0 + kk < k);
        }
        for (var e = me; e < TILE_K * BLOCK_COLS; e += INVOCATIONS) {
            let col = select(e % BLOCK_COLS, e / TILE_K, TRANSPOSE_B);
            let kk = select(e / BLOCK_COLS, e % TILE_K, TRANSPOSE_B);
            let cc = min(n0 + col, n - 1u);
            let kc = min(k0 + kk, k - 1u);
            let v = b[select(kc * n + cc, cc * k + kc, TRANSPOSE_B)];
            b_tile[kk * BLOCK_COLS + col] = select(0.0, v, k0 + kk < k);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            var x: array<f32, TILE_ROWS>;
            var y: array<f32, TILE_COLS>;
            for (var i = 0u; i < TILE_ROWS; i++) {
                x[i] = a_tile[kk * BLOCK_ROWS + i * WORKGROUP_Y + lid.y];
            }
            for (var j = 0u; j < TILE_COLS; j++) {
                y[j] = b_tile[kk * BLOCK_COLS + j * WORKGROUP_X + lid.x];
            }
            for (var i = 0u; i < TILE_ROWS; i++) {
                for (var j = 0u; j < TILE_COLS; j++) {
                    acc[i * TILE_COLS + j] = fma(x[i], y[j], acc[i * TILE_COLS + j]);
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < TILE_ROWS; i++) {
        let row = m0 + i * WORKGROUP_Y + lid.y;
        for (var j = 0u; j < TILE_COLS; j++) {
            let col = n0 + j * WORKGROUP_X + lid.x;
            if row < m && col < n {
                let idx = row * n + col;
                c[idx] = epilogue1(acc[i * TILE_COLS + j], col, idx);
            }
        }
    }
}
