// Fused, numerically stable softmax + cross-entropy over a batch of logits, in one
// workgroup: per row the log-sum-exp loss, whether the argmax is the target, and
// (MODE_LOSS_AND_GRADIENT) the gradient (softmax * sum(t) - t) / rows into `out`. The batch's loss
// sum and correct count are reduced in a fixed order (no float atomics) into the
// step's slot of the metric arrays, so a seed gives the same run twice. MODE_PROBABILITIES
// writes only the probabilities exp(z - lse) into `out` (predictions).
// Bindings, `Shape` and the modes: src/backend/gpu/kernels/softmax_xent.rs.

// Targets are probability rows in `targets` instead of labels via `order`.
override DENSE_TARGETS: bool = false;
override MODE: u32 = MODE_LOSS_AND_GRADIENT;

const THREADS: u32 = LINEAR_WORKGROUP;
var<workgroup> part_loss: array<f32, THREADS>;
var<workgroup> part_correct: array<u32, THREADS>;

fn sparse_label(r: u32) -> u32 {
    let example = order[step.row_offset + r];
    return (labels[example / 4u] >> (8u * (example % 4u))) & 0xffu;
}

@compute @workgroup_size(LINEAR_WORKGROUP, 1, 1)
fn main(@builtin(local_invocation_index) lid: u32) {
    let rows = step.rows;
    let classes = shape.classes;
    let scale = 1.0 / f32(rows);
    var loss = 0.0;
    var correct = 0u;
    for (var r = lid; r < rows; r += THREADS) {
        let base = r * classes;
        var max_z = logits[base];
        var best = 0u;
        for (var c = 1u; c < classes; c++) {
            let z = logits[base + c];
            if z > max_z {
                max_z = z;
                best = c;
            }
        }
        var sum_exp = 0.0;
        for (var c = 0u; c < classes; c++) {
            sum_exp += exp(logits[base + c] - max_z);
        }
        let lse = max_z + log(sum_exp);
        if MODE == MODE_PROBABILITIES {
            for (var c = 0u; c < classes; c++) {
                out[base + c] = exp(logits[base + c] - lse);
            }
        } else if DENSE_TARGETS {
            var t_sum = 0.0;
            var t_best = 0u;
            var t_max = targets[base];
            for (var c = 0u; c < classes; c++) {
                let t = targets[base + c];
                t_sum += t;
                loss += t * (lse - logits[base + c]);
                if t > t_max {
                    t_max = t;
                    t_best = c;
                }
            }
            if t_best == best {
                correct += 1u;
            }
            if MODE == MODE_LOSS_AND_GRADIENT {
                for (var c = 0u; c < classes; c++) {
                    let p = exp(logits[base + c] - lse);
                    out[base + c] = scale * (p * t_sum - targets[base + c]);
                }
            }
        } else {
            let label = sparse_label(r);
            loss += lse - logits[base + label];
            if label == best {
                correct += 1u;
            }
            if MODE == MODE_LOSS_AND_GRADIENT {
                for (var c = 0u; c < classes; c++) {
                    let p = exp(logits[base + c] - lse);
                    out[base + c] = scale * (p - select(0.0, 1.0, c == label));
                }
            }
        }
    }
    part_loss[lid] = loss;
    part_correct[lid] = correct;
    workgroupBarrier();
    for (var width = THREADS / 2u; width > 0u; width /= 2u) {
        if lid < width {
            part_loss[lid] += part_loss[lid + width];
            part_correct[lid] += part_correct[lid + width];
        }
        workgroupBarrier();
    }
    if lid == 0u && MODE != MODE_PROBABILITIES {
        loss_sums[step.slot] = part_loss[0];
        correct_counts[step.slot] = part_correct[0];
    }
}
