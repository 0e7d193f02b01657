//! The CPU's image ops: a convolution's windows (im2col) and their adjoint,
//! max-pooling and its gradient, each example on its own rayon task, into
//! caller-owned buffers (a step allocates nothing). Images are channels-last.

use rayon::prelude::*;

use super::ops::madd;
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
/// With `sums`, also what the convolution below the pool derives from that
/// gradient, added up as each window sends its gradient to its one position
/// (three quarters of the result are zeros), sparing passes over the result:
/// see [`PoolGradSums`].
pub fn max_pool_grad(
    grad: &[f32],
    src: &[f32],
    dst: &mut [f32],
    pool: &PoolGeometry,
    relu: bool,
    rows: usize,
    sums: Option<PoolGradSums>,
) {
    let (in_len, out_len) = (pool.input.len(), pool.output_len());
    let examples = dst[..rows * in_len]
        .par_chunks_mut(in_len)
        .zip(src[..rows * in_len].par_chunks(in_len))
        .zip(grad[..rows * out_len].par_chunks(out_len));
    let Some(sums) = sums else {
        return examples.for_each(|((dx_out, x), dy_in)| {
            max_pool_grad_example(dy_in, x, dx_out, pool, relu, None);
        });
    };
    let c = pool.input.channels;
    let kernel_rows = sums.kernel.as_ref().map_or(0, |k| k.rows);
    // Per example: the channel sums, then the kernel rows' sums.
    let per_example = c * (1 + kernel_rows);
    let positions = pool.input.height * pool.input.width;
    let patches = sums.kernel.as_ref().map(|k| k.patches);
    examples
        .zip(sums.partials[..rows * per_example].par_chunks_mut(per_example))
        .enumerate()
        .for_each(|(e, (((dx_out, x), dy_in), partial))| {
            partial.fill(0.0);
            let per_example_patches = patches.map(|p| {
                let len = positions * kernel_rows;
                &p[e * len..(e + 1) * len]
            });
            let routed = Routed {
                partial,
                patches: per_example_patches,
                kernel_rows,
                write_result: sums.write_result,
            };
            max_pool_grad_example(dy_in, x, dx_out, pool, relu, Some(routed));
        });
    let partials = &sums.partials[..rows * per_example];
    sum_examples(partials, per_example, 0, sums.bias);
    if let Some(kernel) = sums.kernel {
        sum_examples(partials, per_example, c, kernel.out);
    }
}

/// `out` = the sum over examples of `out.len()` values from offset `at` of
/// each example's `per_example` partials, in example order (so the result
/// does not depend on the threads).
fn sum_examples(partials: &[f32], per_example: usize, at: usize, out: &mut [f32]) {
    out.fill(0.0);
    for example in partials.chunks_exact(per_example) {
        for (o, s) in out.iter_mut().zip(&example[at..]) {
            *o += s;
        }
    }
}

/// What [`max_pool_grad`] adds up for the convolution below the pool.
pub struct PoolGradSums<'a> {
    /// Scratch of at least `rows x channels x (1 + kernel rows)`.
    pub partials: &'a mut [f32],
    /// The column sums of the result over its positions: the convolution's
    /// bias gradient (`channels`).
    pub bias: &'a mut [f32],
    /// Its kernel gradient too.
    pub kernel: Option<KernelGrad<'a>>,
    /// Whether the result itself is wanted: not when nothing but these sums
    /// reads it (below the first layer, no input gradient is computed).
    pub write_result: bool,
}

/// `patchesᵀ · result`: the kernel gradient of a convolution from its
/// windows, for the first layer's few rows (`kernel x kernel x channels in`),
/// where a product would read the whole result for a quarter of nonzeros.
pub struct KernelGrad<'a> {
    /// The convolution's windows, `rows x positions x self.rows`.
    pub patches: &'a [f32],
    /// Values of a window (the kernel gradient's rows).
    pub rows: usize,
    /// `rows x channels`.
    pub out: &'a mut [f32],
}

/// One example's share of [`PoolGradSums`].
struct Routed<'a> {
    /// Its channel sums, then its kernel rows' sums.
    partial: &'a mut [f32],
    /// Its windows, `positions x kernel_rows`, when the kernel's sums are asked.
    patches: Option<&'a [f32]>,
    kernel_rows: usize,
    write_result: bool,
}

#[multiversion::multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma", "aarch64+neon"))]
fn max_pool_grad_example(
    dy_in: &[f32],
    x: &[f32],
    dx_out: &mut [f32],
    pool: &PoolGeometry,
    relu: bool,
    mut routed: Option<Routed>,
) {
    let c = pool.input.channels;
    let write_result = routed.as_ref().is_none_or(|r| r.write_result);
    // Windows tile the whole input unless rows or columns are left over.
    let tiled = pool.out_height * pool.size == pool.input.height
        && pool.out_width * pool.size == pool.input.width;
    if !tiled && write_result {
        dx_out.fill(0.0);
    }
    for (o, g) in dy_in.chunks_exact(c).enumerate() {
        let (oy, ox) = (o / pool.out_width, o % pool.out_width);
        for first in (0..c).step_by(POOL_LANES) {
            let lanes = POOL_LANES.min(c - first);
            let at = |dy, dx| window_at(pool, oy, ox, dy, dx) + first;
            let mut max = lanes_of(x, at(0, 0), lanes);
            for dy in 0..pool.size {
                for dx in 0..pool.size {
                    let v = lanes_of(x, at(dy, dx), lanes);
                    for l in 0..POOL_LANES {
                        max[l] = if v[l] > max[l] { v[l] } else { max[l] };
                    }
                }
            }
            // As relu's derivative elsewhere: kept only where the
            // output is > 0 (a NaN output keeps nothing).
            let g = lanes_of(g, first, lanes);
            let mut kept = [0.0f32; POOL_LANES];
            for l in 0..POOL_LANES {
                kept[l] = if !relu || max[l] > 0.0 { g[l] } else { 0.0 };
            }
            if let Some(r) = routed.as_mut() {
                for (s, k) in r.partial[first..first + lanes].iter_mut().zip(&kept) {
                    *s += k;
                }
            }
            // The first position (row-major) equal to the maximum takes the
            // gradient, found walking backwards; a NaN first value (the
            // maximum then, equal to nothing) keeps it.
            let mut winner = [0u32; POOL_LANES];
            for index in (0..pool.size * pool.size).rev() {
                let v = lanes_of(x, at(index / pool.size, index % pool.size), lanes);
                for l in 0..POOL_LANES {
                    winner[l] = if v[l] == max[l] {
                        index as u32
                    } else {
                        winner[l]
                    };
                }
            }
            for dy in 0..pool.size {
                for dx in 0..pool.size {
                    let at = at(dy, dx);
                    let index = (dy * pool.size + dx) as u32;
                    let mut sent = [0.0f32; POOL_LANES];
                    for l in 0..POOL_LANES {
                        sent[l] = if winner[l] == index { kept[l] } else { 0.0 };
                    }
                    if write_result {
                        dx_out[at..at + lanes].copy_from_slice(&sent[..lanes]);
                    }
                    if let Some(Routed {
                        partial,
                        patches: Some(patches),
                        kernel_rows,
                        ..
                    }) = routed.as_mut()
                    {
                        // This position's window values times what it was sent.
                        let position = (at - first) / c;
                        let window = &patches[position * *kernel_rows..][..*kernel_rows];
                        for (row, &w) in partial[c..].chunks_exact_mut(c).zip(window) {
                            let row = &mut row[first..first + lanes];
                            if let Ok(row) = <&mut [f32; POOL_LANES]>::try_from(&mut *row) {
                                for l in 0..POOL_LANES {
                                    row[l] = madd(w, sent[l], row[l]);
                                }
                            } else {
                                for (s, &d) in row.iter_mut().zip(&sent) {
                                    *s = madd(w, d, *s);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `lanes` values of `src` from `at`, as a whole register's worth (zeros
/// past `lanes`): whole arrays stay in registers, where selects on a
/// slice became masked stores that the next read could not forward from.
#[inline(always)]
fn lanes_of(src: &[f32], at: usize, lanes: usize) -> [f32; POOL_LANES] {
    match src.get(at..at + POOL_LANES) {
        Some(whole) if lanes == POOL_LANES => whole.try_into().expect("POOL_LANES values"),
        _ => {
            let mut v = [0.0; POOL_LANES];
            v[..lanes].copy_from_slice(&src[at..at + lanes]);
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Image;
    use crate::test_util::Lcg;

    /// The sums the pool gradient adds up as it routes equal the column sums
    /// of what it wrote and the kernel gradient from it (f64 references), and
    /// asking for them changes nothing it writes (or, told to, it writes
    /// nothing): with leftover rows and columns, more channels than one lane
    /// group, and relu's mask on and off.
    #[test]
    fn the_pool_gradients_sums_equal_the_column_sums_and_the_kernel_product() {
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
            let sums = PoolGradSums {
                partials: &mut partials,
                bias: &mut out,
                kernel: None,
                write_result: true,
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

            // The kernel gradient `patchesᵀ · result` from the routed
            // values, the result itself left unwritten.
            let k = 5;
            let positions = 5 * 7;
            let patches: Vec<f32> = (0..rows * positions * k).map(|_| rng.signed()).collect();
            let mut untouched = vec![7.0f32; x.len()];
            let mut partials = vec![f32::NAN; rows * 18 * (1 + k)];
            let (mut bias, mut kernel) = (vec![f32::NAN; 18], vec![f32::NAN; k * 18]);
            let sums = PoolGradSums {
                partials: &mut partials,
                bias: &mut bias,
                kernel: Some(KernelGrad {
                    patches: &patches,
                    rows: k,
                    out: &mut kernel,
                }),
                write_result: false,
            };
            max_pool_grad(&dy, &x, &mut untouched, &pool, relu, rows, Some(sums));
            assert!(untouched.iter().all(|&v| v == 7.0));
            assert_eq!(bias, out);
            for j in 0..k {
                for ch in 0..18 {
                    let reference: f64 = (0..rows * positions)
                        .map(|p| patches[p * k + j] as f64 * plain[p * 18 + ch] as f64)
                        .sum();
                    let got = kernel[j * 18 + ch] as f64;
                    assert!(
                        (got - reference).abs() < 1e-5,
                        "({j}, {ch}): {got} vs {reference}"
                    );
                }
            }
        }
    }
}
