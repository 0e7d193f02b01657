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
    dst[..rows * out_len]
        .par_chunks_mut(out_len)
        .zip(src[..rows * in_len].par_chunks(in_len))
        .for_each(|(patches, x)| im2col_example(x, patches, conv));
}

#[multiversion::multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma", "aarch64+neon"))]
fn im2col_example(x: &[f32], patches: &mut [f32], conv: &ConvGeometry) {
    let image = conv.input;
    let (c, k) = (image.channels, conv.kernel);
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
                    Some(iy) if iy < image.height && first == 0 && last == k => {
                        let at = (iy * image.width + left as usize) * c;
                        copy_row(dst, &x[at..at + k * c]);
                    }
                    Some(iy) if iy < image.height && first < last => {
                        let ix = (left + first as isize) as usize;
                        let at = (iy * image.width + ix) * c;
                        dst[..first * c].fill(0.0);
                        dst[first * c..last * c].copy_from_slice(&x[at..at + (last - first) * c]);
                        dst[last * c..].fill(0.0);
                    }
                    _ => dst.fill(0.0),
                }
            }
        }
    }
}

/// `dst = src` for a window row. A first layer's rows are a few values
/// (3 for a 3x3 kernel over one channel): a copy of known length stays in
/// registers, where a `memcpy` call would cost more than the copy.
#[inline(always)]
fn copy_row(dst: &mut [f32], src: &[f32]) {
    fn exact<const N: usize>(dst: &mut [f32], src: &[f32]) {
        dst[..N].copy_from_slice(&src[..N]);
    }
    match dst.len() {
        1 => exact::<1>(dst, src),
        2 => exact::<2>(dst, src),
        3 => exact::<3>(dst, src),
        4 => exact::<4>(dst, src),
        5 => exact::<5>(dst, src),
        6 => exact::<6>(dst, src),
        7 => exact::<7>(dst, src),
        8 => exact::<8>(dst, src),
        _ => dst.copy_from_slice(src),
    }
}

/// The adjoint of [`im2col`]: each input value is the sum of the window
/// values that read it, summed in a fixed order (so every run agrees). Each
/// window row adds its part inside the image as one contiguous run.
pub fn col2im(src: &[f32], dst: &mut [f32], conv: &ConvGeometry, rows: usize) {
    let image = conv.input;
    let (in_len, patches_len) = (image.len(), conv.positions() * conv.patch());
    dst[..rows * in_len]
        .par_chunks_mut(in_len)
        .zip(src[..rows * patches_len].par_chunks(patches_len))
        .for_each(|(x, patches)| col2im_example(patches, x, conv));
}

#[multiversion::multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma", "aarch64+neon"))]
fn col2im_example(patches: &[f32], x: &mut [f32], conv: &ConvGeometry) {
    let image = conv.input;
    let (c, k) = (image.channels, conv.kernel);
    x.fill(0.0);
    let mut window_rows = patches.chunks_exact(k * c);
    for oy in 0..conv.out_height {
        for ox in 0..conv.out_width {
            let left = ox as isize - conv.pad_left as isize;
            let first = (-left).max(0) as usize;
            let last = (image.width as isize - left).clamp(0, k as isize) as usize;
            for ky in 0..k {
                let row = window_rows.next().expect("a patch per window row");
                let iy = (oy + ky).checked_sub(conv.pad_top);
                if let Some(iy) = iy.filter(|&iy| iy < image.height && first < last) {
                    let at = (iy * image.width + (left + first as isize) as usize) * c;
                    let run = &row[first * c..last * c];
                    for (x, v) in x[at..at + run.len()].iter_mut().zip(run) {
                        *x += v;
                    }
                }
            }
        }
    }
}

/// The input offset (within one example) of window position `(dy, dx)` of
/// output `(oy, ox)`, channel 0.
fn window_at(pool: &PoolGeometry, oy: usize, ox: usize, dy: usize, dx: usize) -> usize {
    let (iy, ix) = (oy * pool.size + dy, ox * pool.size + dx);
    (iy * pool.input.width + ix) * pool.input.channels
}

/// Each window's maximum, channel by channel.
pub fn max_pool(src: &[f32], dst: &mut [f32], pool: &PoolGeometry, rows: usize) {
    let (in_len, out_len) = (pool.input.len(), pool.output_len());
    dst[..rows * out_len]
        .par_chunks_mut(out_len)
        .zip(src[..rows * in_len].par_chunks(in_len))
        .for_each(|(y, x)| max_pool_example(x, y, pool));
}

#[multiversion::multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma", "aarch64+neon"))]
fn max_pool_example(x: &[f32], y: &mut [f32], pool: &PoolGeometry) {
    let c = pool.input.channels;
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
}

/// Channels a pool's gradient handles at once, in registers.
const POOL_LANES: usize = 16;

/// The pool's input gradient: each window's gradient at the first position
/// (row-major) holding its maximum, zero everywhere else; with `relu`, zero
/// too where that maximum is not positive (relu's derivative, `src` being a
/// relu's output). Runs on [`POOL_LANES`] channels at a time with selects
/// rather than branches, so it vectorises.
pub fn max_pool_grad(
    grad: &[f32],
    src: &[f32],
    dst: &mut [f32],
    pool: &PoolGeometry,
    relu: bool,
    rows: usize,
) {
    let (in_len, out_len) = (pool.input.len(), pool.output_len());
    dst[..rows * in_len]
        .par_chunks_mut(in_len)
        .zip(src[..rows * in_len].par_chunks(in_len))
        .zip(grad[..rows * out_len].par_chunks(out_len))
        .for_each(|((dx_out, x), dy_in)| max_pool_grad_example(dy_in, x, dx_out, pool, relu));
}

#[multiversion::multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma", "aarch64+neon"))]
fn max_pool_grad_example(
    dy_in: &[f32],
    x: &[f32],
    dx_out: &mut [f32],
    pool: &PoolGeometry,
    relu: bool,
) {
    let c = pool.input.channels;
    // Windows tile the whole input unless rows or columns are left over.
    let tiled = pool.out_height * pool.size == pool.input.height
        && pool.out_width * pool.size == pool.input.width;
    if !tiled {
        dx_out.fill(0.0);
    }
    for (o, g) in dy_in.chunks_exact(c).enumerate() {
        let (oy, ox) = (o / pool.out_width, o % pool.out_width);
        for first in (0..c).step_by(POOL_LANES) {
            let lanes = POOL_LANES.min(c - first);
            let origin = window_at(pool, oy, ox, 0, 0) + first;
            let mut max = [0.0f32; POOL_LANES];
            max[..lanes].copy_from_slice(&x[origin..origin + lanes]);
            for dy in 0..pool.size {
                for dx in 0..pool.size {
                    let at = window_at(pool, oy, ox, dy, dx) + first;
                    for (m, &v) in max[..lanes].iter_mut().zip(&x[at..at + lanes]) {
                        *m = if v > *m { v } else { *m };
                    }
                }
            }
            // As relu's derivative elsewhere: kept only where the
            // output is > 0 (a NaN output keeps nothing).
            let mut kept = [0.0f32; POOL_LANES];
            for ((k, &m), &g) in kept.iter_mut().zip(&max).zip(&g[first..first + lanes]) {
                *k = if !relu || m > 0.0 { g } else { 0.0 };
            }
            // The first position equal to the maximum takes the
            // gradient; a NaN first value (the maximum then) keeps
            // it, as no later value compares greater.
            let mut taken = [false; POOL_LANES];
            for dy in 0..pool.size {
                for dx in 0..pool.size {
                    let at = window_at(pool, oy, ox, dy, dx) + first;
                    let corner = dy == 0 && dx == 0;
                    let lane = taken.iter_mut().zip(&max).zip(&kept);
                    for ((d, &v), ((t, &m), &k)) in dx_out[at..at + lanes]
                        .iter_mut()
                        .zip(&x[at..at + lanes])
                        .zip(lane)
                    {
                        let hit = !*t && (v == m || (corner && v.is_nan()));
                        *d = if hit { k } else { 0.0 };
                        *t |= hit;
                    }
                }
            }
        }
    }
}
