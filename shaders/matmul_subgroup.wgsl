// matmul_vec4.wgsl's NN and TN forms for devices whose subgroups are exactly
// LANES lanes (4 to 64; the host builds one for the device's size): each lane
// loads a different part of A and the lanes share it through
// subgroupBroadcast, a register shuffle, instead of every lane loading every
// value. On lavapipe every load is a loop over the lanes, so this cuts the
// loads per multiply-add by 2-4x.
// (Naga accepts subgroup built-ins without `enable subgroups;` on devices
// opened with the subgroup feature, and rejects the directive.)
//
// Requirements as matmul_vec4.wgsl (not TRANSPOSE_B), plus a subgroup size of
// exactly LANES, so that a workgroup of WORKGROUP_X invocations holds
// WORKGROUP_X / LANES subgroups.
//
// The host prepends matmul_subgroup_buffer.wgsl (B in a storage buffer) or
// matmul_subgroup_texture.wgsl (B in a texture, whose loads lavapipe
// vectorises), each defining `load_b(kk, col4)`: op(B)[kk, 4 col4 .. 4 col4 + 4].

// Rows of C per subgroup (TILE_ROWS, 16); each lane owns one vec4 of columns.
const ROWS: u32 = TILE_ROWS;
const SUBGROUPS: u32 = WORKGROUP_X / LANES;

@compute @workgroup_size(WORKGROUP_X, WORKGROUP_Y, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_id) subgroup: u32,
) {
    let mk = step_mk();
    let m = mk.x;
    let k = mk.y;
    let n4 = dims.n / 4u;
    let row0 = (wg.y * SUBGROUPS + subgroup) * ROWS;
    let col4 = wg.x * (TILE_COLS / 4u) + lane;
    let col = min(col4, n4 - 1u);
    // A subgroup entirely below C has nothing to do; the test is the same for
    // all its lanes, so the broadcasts below still see every lane.
    if row0 >= m {
        return;
    }

    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    // Every lane runs the loops (clamped loads), so the broadcasts see all lanes.
    if TRANSPOSE_A {
        // A stored K x M: lanes 0-3 load the 16 rows' values at kk as 4 vec4s.
        let m4 = m / 4u;
        let a_idx = min(row0 / 4u + lane % 4u, m4 - 1u);
        for (var kk = 0u; kk < k; kk++) {
            let av = a[kk * m4 + a_idx];
            let bv = load_b(kk, col);
            let x0 = subgroupBroadcast(av, 0u);
            let x1 = subgroupBroadcast(av, 1u);
            let x2 = subgroupBroadcast(av, 2u);
            let x3 = subgroupBroadcast(av, 3u);
            acc[0] = fma(vec4<f32>(x0.x), bv, acc[0]);
            acc[1] = fma(vec4<f32>(x0.y), bv, acc[1]);
            acc[2] = fma(vec4<f32>(x0.z), bv, acc[2]);
            acc[3] = fma(vec4<f32>(x0.w), bv, acc[3]);
            acc[4] = fma(vec4<f32>(x1.x), bv, acc[4]);
            acc[5] = fma(vec4<f32>(x1.y), bv, acc[5]);
            acc[6] = fma(vec4<f32>(x1.z), bv, acc[6]);
            acc[7] = fma(vec4<f32>(x1.w), bv, acc[7]);
            acc[8] = fma(vec4<f32>(x2.x), bv, acc[8]);
            acc[9] = fma(vec4<f32>(x2.y), bv, acc[9]);
            acc[10] = fma(vec4<f32>(x2.z), bv, acc[10]);
            acc[11] = fma(vec4<f32>(x2.w), bv, acc[11]);
            acc[12] = fma(vec4<f32>(x3.x), bv, acc[12]);
            acc[13] = fma(vec4<f32>(x3.y), bv, acc[13]);
            acc[14] = fma(vec4<f32>(x3.z), bv, acc[14]);
            acc[15] = fma(vec4<f32>(x3.w), bv, acc[15]);
        }
    } else {
        // A stored M x K: lane l loads rows row0 + l, row0 + LANES + l, ... (the
        // 16 rows over the lanes), 4 k at a time. The host writes these lines
        // for the device's subgroup size: a broadcast's lane must be a constant.
        let k4 = k / 4u;
//@nn_rows
        for (var q = 0u; q < k4; q++) {
            let y0 = load_b(4u * q, col);
            let y1 = load_b(4u * q + 1u, col);
            let y2 = load_b(4u * q + 2u, col);
            let y3 = load_b(4u * q + 3u, col);
//@nn_step
        }
    }

    if col4 >= n4 {
        return;
    }
    for (var i = 0u; i < ROWS; i++) {
        let row = row0 + i;
        if row >= m {
            break;
        }
        let idx = row * n4 + col4;
        c[idx] = epilogue4(acc[i], col4, idx);
    }
}
