// Image ops over the step's examples, channels-last (the OP override), one
// output value per invocation (x: the value, y: the example). Im2col writes
// window rows in the kernel's [ky, kx, channel] order, zero in the padding;
// col2im sums, for each input value, the window values that read it, in the
// CPU's order (windows row-major); the max-pool gradient goes to the first
// position (row-major) holding the window's maximum, times relu's derivative
// there when `params.relu` is 1. Bindings and `ImageParams`:
// src/backend/gpu/kernels/image.rs; the CPU's: src/backend/cpu/image_ops.rs.

override OP: u32 = 0u;

fn image_len() -> u32 {
    return params.height * params.width * params.channels;
}

fn patch_len() -> u32 {
    return params.size * params.size * params.channels;
}

fn pooled_len() -> u32 {
    return params.out_height * params.out_width * params.channels;
}

fn im2col(r: u32, i: u32) {
    let c = params.channels;
    let patch_size = patch_len();
    let position = i / patch_size;
    let j = i % patch_size;
    let ky = j / (params.size * c);
    let kx = (j / c) % params.size;
    let ch = j % c;
    let iy = i32(position / params.out_width + ky) - i32(params.pad_top);
    let ix = i32(position % params.out_width + kx) - i32(params.pad_left);
    var value = 0.0;
    if iy >= 0 && ix >= 0 && iy < i32(params.height) && ix < i32(params.width) {
        value = src[r * image_len() + (u32(iy) * params.width + u32(ix)) * c + ch];
    }
    dst[r * params.count + i] = value;
}

fn col2im(r: u32, i: u32) {
    let c = params.channels;
    let patch_size = patch_len();
    let positions = params.out_height * params.out_width;
    let pixel = i / c;
    let ch = i % c;
    let iy = pixel / params.width;
    let ix = pixel % params.width;
    var sum = 0.0;
    // Windows in row-major order: oy rising is ky falling.
    for (var ky = i32(params.size) - 1; ky >= 0; ky--) {
        let oy = i32(iy + params.pad_top) - ky;
        if oy < 0 || oy >= i32(params.out_height) {
            continue;
        }
        for (var kx = i32(params.size) - 1; kx >= 0; kx--) {
            let ox = i32(ix + params.pad_left) - kx;
            if ox < 0 || ox >= i32(params.out_width) {
                continue;
            }
            let window = u32(oy) * params.out_width + u32(ox);
            sum += src[r * positions * patch_size + window * patch_size + (u32(ky) * params.size + u32(kx)) * c + ch];
        }
    }
    dst[r * params.count + i] = sum;
}

// The index (within one example) of the first maximum of the window of
// output (oy, ox), channel ch.
fn first_max(r: u32, oy: u32, ox: u32, ch: u32) -> u32 {
    let base = r * image_len();
    var best = ((oy * params.size) * params.width + ox * params.size) * params.channels + ch;
    for (var dy = 0u; dy < params.size; dy++) {
        for (var dx = 0u; dx < params.size; dx++) {
            let at = ((oy * params.size + dy) * params.width + ox * params.size + dx) * params.channels + ch;
            if src[base + at] > src[base + best] {
                best = at;
            }
        }
    }
    return best;
}

fn max_pool(r: u32, i: u32) {
    let c = params.channels;
    let o = i / c;
    let ch = i % c;
    let at = first_max(r, o / params.out_width, o % params.out_width, ch);
    dst[r * params.count + i] = src[r * image_len() + at];
}

fn max_pool_grad(r: u32, i: u32) {
    let c = params.channels;
    let pixel = i / c;
    let ch = i % c;
    let oy = (pixel / params.width) / params.size;
    let ox = (pixel % params.width) / params.size;
    var value = 0.0;
    if oy < params.out_height && ox < params.out_width && first_max(r, oy, ox, ch) == i {
        let relu_zero = params.relu == 1u && !(src[r * image_len() + i] > 0.0);
        if !relu_zero {
            value = grad[r * pooled_len() + (oy * params.out_width + ox) * c + ch];
        }
    }
    dst[r * params.count + i] = value;
}

@compute @workgroup_size(LINEAR_WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let r = gid.y;
    if r >= step.rows || i >= params.count {
        return;
    }
    switch OP {
        case OP_IM2COL: {
            im2col(r, i);
        }
        case OP_COL2IM: {
            col2im(r, i);
        }
        case OP_MAX_POOL: {
            max_pool(r, i);
        }
        case OP_MAX_POOL_GRAD: {
            max_pool_grad(r, i);
        }
        default: {}
    }
}
