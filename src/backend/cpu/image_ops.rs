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
///
/// With `sums`, also the column sums of the result (the bias gradient of the
/// convolution below the pool): each window sends its gradient to exactly one
/// position, so they are the sums of what the windows send, added up as they
/// are sent, per example into `sums.partials` (`rows x channels`, then
/// summed in example order into `sums.out`), sparing a pass over the result.
pub fn max_pool_grad(
    grad: &[f32],
    src: &[f32],
    dst: &mut [f32],
    pool: &PoolGeometry,
    relu: bool,
    rows: usize,
    sums: Option<ChannelSums>,
) {
    let (in_len, out_len) = (pool.input.len(), pool.output_len());
    let examples = dst[..rows * in_len]
        .par_chunks_mut(in_len)
        .zip(src[..rows * in_len].par_chunks(in_len))
        .zip(grad[..rows * out_len].par_chunks(out_len));
    let Some(ChannelSums { partials, out }) = sums else {
        return examples.for_each(|((dx_out, x), dy_in)| {
            max_pool_grad_example(dy_in, x, dx_out, pool, relu, &mut []);
        });
    };
    let c = pool.input.channels;
    examples
        .zip(partials[..rows * c].par_chunks_mut(c))
        .for_each(|(((dx_out, x), dy_in), sums)| {
            sums.fill(0.0);
            max_pool_grad_example(dy_in, x, dx_out, pool, relu, sums);
        });
    out.fill(0.0);
    for example in partials[..rows * c].chunks_exact(c) {
        for (o, s) in out.iter_mut().zip(example) {
            *o += s;
        }
    }
}

/// Where [`max_pool_grad`] adds up the gradient it sends, per channel.
pub struct ChannelSums<'a> {
    /// Scratch of at least `rows x channels`.
    pub partials: &'a mut [f32],
    /// `channels` sums.
    pub out: &'a mut [f32],
}

#[multiversion::multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma", "aarch64+neon"))]
fn max_pool_grad_example(
    dy_in: &[f32],
    x: &[f32],
    dx_out: &mut [f32],
    pool: &PoolGeometry,
    relu: bool,
    sums: &mut [f32],
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
            if !sums.is_empty() {
                for (s, k) in sums[first..first + lanes].iter_mut().zip(&kept) {
                    *s += k;
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Image;
    use crate::test_util::Lcg;

    /// The sums the pool gradient adds up as it routes equal the column sums
    /// of what it wrote (an f64 reference), and asking for them changes
    /// nothing it writes: with leftover rows and columns, more channels than
    /// one lane group, and relu's mask on and off.
    #[test]
    fn the_pool_gradients_channel_sums_are_its_column_sums() {
        let (rows, input) = (
            3,
            Image {
                height: 5,
                width: 7,
                channels: 18,
            },
        );
        let pool = PoolGeometry {
            input,
            size: 2,
            out_height: 2,
            out_width: 3,
        };
        let mut rng = Lcg(7);
        let x: Vec<f32> = (0..rows * input.len()).map(|_| rng.signed()).collect();
        let dy: Vec<f32> = (0..rows * pool.output_len())
            .map(|_| rng.signed())
            .collect();
        for relu in [false, true] {
            let mut plain = vec![f32::NAN; x.len()];
            max_pool_grad(&dy, &x, &mut plain, &pool, relu, rows, None);
            let mut routed = vec![f32::NAN; x.len()];
            let (mut partials, mut out) = (vec![f32::NAN; rows * 18], vec![f32::NAN; 18]);
            let sums = ChannelSums {
                partials: &mut partials,
                out: &mut out,
            };
            max_pool_grad(&dy, &x, &mut routed, &pool, relu, rows, Some(sums));
            assert_eq!(plain, routed, "relu {relu}");
            for (ch, &sum) in out.iter().enumerate() {
                let reference: f64 = plain.iter().skip(ch).step_by(18).map(|&v| v as f64).sum();
                assert!(
                    (sum as f64 - reference).abs() < 1e-5,
                    "channel {ch}: {sum} vs {reference}"
                );
            }
            assert!(out.iter().any(|&s| s != 0.0));
        }
    }
}
