// Fused, numerically stable softmax + cross-entropy over a batch of logits, in one
// workgroup: per row the log-sum-exp loss, whether the argmax is the target, and
// (with WRITE_GRAD) the gradient (softmax * sum(t) - t) / rows. The batch's loss
// sum and correct count are reduced in a fixed order (no float atomics) into the
// step's slot of the metric arrays, so a seed gives the same run twice.

// Targets are probability rows in `targets` instead of labels via `order`.
override DENSE_TARGETS: bool = false;
override WRITE_GRAD: bool = true;

struct Shape {
    features: u32,
    classes: u32,
    batch: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> grad: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> order: array<u32>;
@group(0) @binding(4) var<storage, read> targets: array<f32>;
@group(0) @binding(5) var<storage, read_write> loss_sums: array<f32>;
@group(0) @binding(6) var<storage, read_write> correct_counts: array<u32>;
@group(0) @binding(7) var<uniform> shape: Shape;

const THREADS: u32 = 64u;
var<workgroup> part_loss: array<f32, THREADS>;
var<workgroup> part_correct: array<u32, THREADS>;

fn sparse_label(r: u32) -> u32 {
    let example = order[step.row_offset + r];
    return (labels[example / 4u] >> (8u * (example % 4u))) & 0xffu;
}

@compute @workgroup_size(64, 1, 1)
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
        if DENSE_TARGETS {
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
            if WRITE_GRAD {
                for (var c = 0u; c < classes; c++) {
                    let p = exp(logits[base + c] - lse);
                    grad[base + c] = scale * (p * t_sum - targets[base + c]);
                }
            }
        } else {
            let label = sparse_label(r);
            loss += lse - logits[base + label];
            if label == best {
                correct += 1u;
            }
            if WRITE_GRAD {
                for (var c = 0u; c < classes; c++) {
                    let p = exp(logits[base + c] - lse);
                    grad[base + c] = scale * (p - select(0.0, 1.0, c == label));
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
    if lid == 0u {
        loss_sums[step.slot] = part_loss[0];
        correct_counts[step.slot] = part_correct[0];
    }
}
