//! The CPU's image ops: a convolution's windows (im2col) and their adjoint,
//! max-pooling and its gradient, each example on its own rayon task, into
//! caller-owned buffers (a step allocates nothing). Images are channels-last.

use rayon::prelude::*;

use crate::plan::{ConvGeometry, PoolGeometry};

/// Writes each example's windows as `positions` rows of `patch` values,
/// in the kernel's `[ky, kx, channel]` order; padding reads as zero. Each
/// window row is one copy of `kernel · channels` contiguous input values
/// where it lies inside the image.
pub fn im2col(src: &[f32], dst: &mut [f32], conv: &ConvGeometry, rows: usize) {
    let image = conv.input;
    let (in_len, out_len) = (image.len(), conv.positions() * conv.patch());
    let (c, k) = (image.channels, conv.kernel);
    dst[..rows * out_len]
        .par_chunks_mut(out_len)
        .zip(src[..rows * in_len].par_chunks(in_len))
        .for_each(|(patches, x)| {
            // One window row (`k · c` values) at a time.
            let mut out = patches.chunks_exact_mut(k * c);
            for oy in 0..conv.out_height {
                for ox in 0..conv.out_width {
                    // The window's columns inside the image: kx in first..last.
                    let left = ox as isize - conv.pad_left as isize;
                    let first = (-left).max(0) as usize;
                    let last = (image.width as isize - left).clamp(0, k as isize) as usize;
                    for ky in 0..k {
                        let dst = out.next().expect("a patch per window row");
                        let iy = (oy + ky).checked_sub(conv.pad_top);
                        match iy {
                            Some(iy) if iy < image.height && first < last => {
                                let ix = (left + first as isize) as usize;
                                let at = (iy * image.width + ix) * c;
                                dst[..first * c].fill(0.0);
                                dst[first * c..last * c]
                                    .copy_from_slice(&x[at..at + (last - first) * c]);
                                dst[last * c..].fill(0.0);
                            }
                            _ => dst.fill(0.0),
                        }
                    }
                }
            }
        });
}

/// The adjoint of [`im2col`]: each input value is the sum of the window
/// values that read it, summed in a fixed order (so every run agrees).
pub fn col2im(src: &[f32], dst: &mut [f32], conv: &ConvGeometry, rows: usize) {
    let image = conv.input;
    let (in_len, patches_len) = (image.len(), conv.positions() * conv.patch());
    let (c, k, patch) = (image.channels, conv.kernel, conv.patch());
    dst[..rows * in_len]
        .par_chunks_mut(in_len)
        .zip(src[..rows * patches_len].par_chunks(patches_len))
        .for_each(|(x, patches)| {
            x.fill(0.0);
            for oy in 0..conv.out_height {
                for ox in 0..conv.out_width {
                    let row = &patches[(oy * conv.out_width + ox) * patch..][..patch];
                    for ky in 0..k {
                        let Some(iy) = (oy + ky).checked_sub(conv.pad_top) else {
                            continue;
                        };
                        if iy >= image.height {
                            continue;
                        }
                        for kx in 0..k {
                            let Some(ix) = (ox + kx).checked_sub(conv.pad_left) else {
                                continue;
                            };
                            if ix >= image.width {
                                continue;
                            }
                            let at = (iy * image.width + ix) * c;
                            let values = &row[(ky * k + kx) * c..][..c];
                            for (x, v) in x[at..at + c].iter_mut().zip(values) {
                                *x += v;
                            }
                        }
                    }
                }
            }
        });
}

/// The input offset (within one example) of window position `(dy, dx)` of
/// output `(oy, ox)`, channel 0.
fn window_at(pool: &PoolGeometry, oy: usize, ox: usize, dy: usize, dx: usize) -> usize {
    let (iy, ix) = (oy * pool.size + dy, ox * pool.size + dx);
    (iy * pool.input.width + ix) * pool.input.channels
}

/// Each window's maximum, channel by channel.
pub fn max_pool(src: &[f32], dst: &mut [f32], pool: &PoolGeometry, rows: usize) {
    let (in_len, out_len, c) = (pool.input.len(), pool.output_len(), pool.input.channels);
    dst[..rows * out_len]
        .par_chunks_mut(out_len)
        .zip(src[..rows * in_len].par_chunks(in_len))
        .for_each(|(y, x)| {
            for (o, out) in y.chunks_exact_mut(c).enumerate() {
                let (oy, ox) = (o / pool.out_width, o % pool.out_width);
                out.copy_from_slice(&x[window_at(pool, oy, ox, 0, 0)..][..c]);
                for dy in 0..pool.size {
                    for dx in 0..pool.size {
                        let at = window_at(pool, oy, ox, dy, dx);
                        for (m, &v) in out.iter_mut().zip(&x[at..at + c]) {
                            // A select, so the loop vectorises.
                            *m = if v > *m { v } else { *m };
                        }
                    }
                }
            }
        });
}

/// The pool's input gradient: each window's gradient at the first position
/// (row-major) holding its maximum, zero everywhere else; with `relu`, zero
/// too where that maximum is not positive (relu's derivative, `src` being a
/// relu's output).
pub fn max_pool_grad(
    grad: &[f32],
    src: &[f32],
    dst: &mut [f32],
    pool: &PoolGeometry,
    relu: bool,
    rows: usize,
) {
    let (in_len, out_len, c) = (pool.input.len(), pool.output_len(), pool.input.channels);
    dst[..rows * in_len]
        .par_chunks_mut(in_len)
        .zip(src[..rows * in_len].par_chunks(in_len))
        .zip(grad[..rows * out_len].par_chunks(out_len))
        .for_each(|((dx_out, x), dy_in)| {
            dx_out.fill(0.0);
            for (o, g) in dy_in.chunks_exact(c).enumerate() {
                let (oy, ox) = (o / pool.out_width, o % pool.out_width);
                for (ch, &g) in g.iter().enumerate() {
                    let mut best = window_at(pool, oy, ox, 0, 0) + ch;
                    for dy in 0..pool.size {
                        for dx in 0..pool.size {
                            let at = window_at(pool, oy, ox, dy, dx) + ch;
                            if x[at] > x[best] {
                                best = at;
                            }
                        }
                    }
                    // As relu's derivative elsewhere: kept only where the output is > 0
                    // (a NaN output keeps nothing).
                    dx_out[best] = if !relu || x[best] > 0.0 { g } else { 0.0 };
                }
            }
        });
}
