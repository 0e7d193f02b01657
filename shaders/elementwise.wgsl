// Element-wise ops over the step's rows of `params.width` values (the OP
// override): a bias added in place, relu, relu's derivative (`aux` the relu's
// output), and dropout, whose mask is the hash of plan::dropout_hash (Chris
// Wellons' lowbias32 over the seed, the optimizer step, the layer's stream and
// the value's index in the batch); the step's high word is 0 here, as it is
// on the host below 2^32 steps. Bindings and `ElementwiseParams`:
// src/backend/gpu/kernels/elementwise.rs.

override OP: u32 = 0u;

fn mix(x0: u32) -> u32 {
    var x = x0;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    return x ^ (x >> 16u);
}

fn keeps(index: u32) -> bool {
    let steps = hyper.steps_before + step.slot;
    var h = mix(params.seed_lo);
    h = mix(h ^ params.seed_hi);
    h = mix(h ^ steps);
    h = mix(h ^ 0u);
    h = mix(h ^ params.stream);
    h = mix(h ^ index);
    return h >= params.threshold;
}

@compute @workgroup_size(LINEAR_WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let r = gid.y;
    if r >= step.rows || i >= params.width {
        return;
    }
    let at = r * params.width + i;
    switch OP {
        case OP_ADD_BIAS: {
            dst[at] += aux[i % params.cols];
        }
        case OP_RELU: {
            dst[at] = max(src[at], 0.0);
        }
        case OP_RELU_GRAD: {
            dst[at] = select(0.0, src[at], aux[at] > 0.0);
        }
        case OP_DROPOUT: {
            dst[at] = select(0.0, src[at] * params.scale, keeps(at));
        }
        default: {}
    }
}
