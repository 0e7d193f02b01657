// Bias gradient: the column sums of a rows x cols gradient, one invocation per
// column summing in row order (deterministic, no atomics; adjacent invocations
// read adjacent columns). Bindings and `Dims`: src/backend/gpu/kernels/column_sums.rs.

@compute @workgroup_size(LINEAR_WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    let cols = dims.n;
    if col >= cols {
        return;
    }
    var s = 0.0;
    for (var r = 0u; r < step.rows; r++) {
        s += grad[r * cols + col];
    }
    sums[col] = s;
}
