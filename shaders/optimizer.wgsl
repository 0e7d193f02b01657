// One optimizer update over every parameter at once (parameters, gradients and
// each state slot live in one buffer, padded to a multiple of 4 floats; the
// slots follow one another in `state`), with Keras' formulas, as in
// src/optim.rs. It also marks the step's loss when an updated parameter is not
// finite. Four parameters per vec4 load: on lavapipe the loads are the cost.
// Bindings and `Hyper`: src/backend/gpu/kernels/optimizer.rs.

// One of the RULE_* constants, generated from `Rule` in the Rust module.
override RULE: u32 = RULE_RMSPROP;

@compute @workgroup_size(LINEAR_WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    // Adam's bias-corrected step size at the 1-based step t.
    let t = f32(hyper.steps_before + step.slot + 1u);
    let adam_lr = hyper.lr * sqrt(1.0 - pow(hyper.beta2, t)) / (1.0 - pow(hyper.beta1, t));
    // A grid-stride loop, so any parameter count fits the dispatch limits.
    for (var i = gid.x; i < hyper.count4; i += groups.x * LINEAR_WORKGROUP) {
        let g = grads[i];
        // This vec4's place in the optimizer's second state slot.
        let j = hyper.count4 + i;
        switch RULE {
            case RULE_SGD: {
                params[i] -= hyper.lr * g;
            }
            case RULE_SGD_MOMENTUM, RULE_SGD_NESTEROV: {
                let v = hyper.momentum * state[i] - hyper.lr * g;
                state[i] = v;
                params[i] += select(v, hyper.momentum * v - hyper.lr * g, RULE == RULE_SGD_NESTEROV);
            }
            case RULE_RMSPROP, RULE_RMSPROP_MOMENTUM: {
                let v = hyper.rho * state[i] + (1.0 - hyper.rho) * g * g;
                state[i] = v;
                let increment = hyper.lr * g / sqrt(v + vec4<f32>(hyper.epsilon));
                if RULE == RULE_RMSPROP_MOMENTUM {
                    let u = hyper.momentum * state[j] + increment;
                    state[j] = u;
                    params[i] -= u;
                } else {
                    params[i] -= increment;
                }
            }
            case RULE_ADAM: {
                let m = state[i] + (g - state[i]) * (1.0 - hyper.beta1);
                let v = state[j] + (g * g - state[j]) * (1.0 - hyper.beta2);
                state[i] = m;
                state[j] = v;
                params[i] -= adam_lr * m / (sqrt(v) + vec4<f32>(hyper.epsilon));
            }
            // Every rule has its case; WGSL requires a default.
            default: {}
        }
        // A parameter that is no longer a number need not show in the loss (a
        // relu can map NaN to 0), so it makes the step's loss NaN itself: the
        // read-back then stops the run. Tested on the bits (all-ones exponent),
        // since compilers may assume that comparisons never see a NaN.
        let bits = bitcast<vec4<u32>>(params[i]) & vec4<u32>(0x7f800000u);
        if any(bits == vec4<u32>(0x7f800000u)) {
            // A quiet NaN (the exponent bits OR'd into 0x7fc00000), computed
            // from a runtime value: WGSL refuses a NaN constant (Tint does).
            loss_sums[step.slot] = bitcast<f32>(bits.x | 0x7fc00000u);
        }
    }
}
