// Builds a batch on the device: row r of x is image order[row_offset + r] of the
// u8 data set (packed four pixels to a u32) as f32 * PIXEL_SCALE (1 / 255, a
// correctly rounded multiplication, as on the CPU). With ONE_HOT, the
// first `classes` invocations of each row also write that row's one-hot target
// (the grid covers max(features, classes) columns). With TRANSPOSED, the batch
// is also written transposed into `xt` (features x batch, the rows past the
// step's zeroed), so the first layer's weight gradient Xᵀ·delta is a plain
// matmul over a fixed batch size. Bindings and `Shape`:
// src/backend/gpu/kernels/gather.rs.

override ONE_HOT: bool = false;
override TRANSPOSED: bool = false;

fn byte_at(byte_index: u32) -> u32 {
    return (images[byte_index / 4u] >> (8u * (byte_index % 4u))) & 0xffu;
}

@compute @workgroup_size(LINEAR_WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p = gid.x;
    let r = gid.y;
    if r >= shape.batch {
        return;
    }
    if r >= step.rows {
        if TRANSPOSED && p < shape.features {
            xt[p * shape.batch + r] = 0.0;
        }
        return;
    }
    let example = order[step.row_offset + r];
    if p < shape.features {
        let value = f32(byte_at(example * shape.features + p)) * PIXEL_SCALE;
        x[r * shape.features + p] = value;
        if TRANSPOSED {
            xt[p * shape.batch + r] = value;
        }
    }
    if ONE_HOT && p < shape.classes {
        let label = (labels[example / 4u] >> (8u * (example % 4u))) & 0xffu;
        targets[r * shape.classes + p] = select(0.0, 1.0, p == label);
    }
}
