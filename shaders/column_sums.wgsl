// Bias gradient: the column sums of a rows x cols gradient, one invocation per
// column summing in row order (deterministic, no atomics; adjacent invocations
// read adjacent columns).

struct Dims {
    m: u32,
    k: u32,
    n: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> grad: array<f32>;
@group(0) @binding(1) var<storage, read_write> sums: array<f32>;
@group(0) @binding(2) var<uniform> dims: Dims;

@compute @workgroup_size(64, 1, 1)
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
