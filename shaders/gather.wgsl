// Builds a batch on the device: row r of x is image order[row_offset + r] of the
// u8 data set (packed four pixels to a u32) as f32 / 255. With ONE_HOT, the first
// `classes` invocations of each row also write that row's one-hot target. With
// TRANSPOSED, the batch is also written transposed into `xt` (features x batch,
// the rows past the step's zeroed), so the first layer's weight gradient
// Xᵀ·delta is a plain matmul over a fixed batch size.

override ONE_HOT: bool = false;
override TRANSPOSED: bool = false;

struct Shape {
    features: u32,
    classes: u32,
    batch: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> images: array<u32>;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read> order: array<u32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;
@group(0) @binding(4) var<storage, read_write> targets: array<f32>;
@group(0) @binding(5) var<uniform> shape: Shape;
@group(0) @binding(6) var<storage, read_write> xt: array<f32>;

fn byte_at(byte_index: u32) -> u32 {
    return (images[byte_index / 4u] >> (8u * (byte_index % 4u))) & 0xffu;
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = gid.x;
    let r = gid.y;
    if r >= shape.batch || p >= shape.features {
        return;
    }
    if r >= step.rows {
        if TRANSPOSED {
            xt[p * shape.batch + r] = 0.0;
        }
        return;
    }
    let example = order[step.row_offset + r];
    let value = f32(byte_at(example * shape.features + p)) / 255.0;
    x[r * shape.features + p] = value;
    if TRANSPOSED {
        xt[p * shape.batch + r] = value;
    }
    if ONE_HOT && p < shape.classes {
        let label = (labels[example / 4u] >> (8u * (example % 4u))) & 0xffu;
        targets[r * shape.classes + p] = select(0.0, 1.0, p == label);
    }
}
