//! The CPU reference math, one function per kernel of the GPU backend, written to
//! read like the book. Every function writes into caller-owned buffers, so a
//! training step allocates nothing.

use ndarray::{ArrayView2, ArrayViewMut2, Axis, Zip};
use rayon::prelude::*;

use crate::data::{pixel, Dataset};
use crate::plan::DropoutMask;

/// Builds the `f32` batch of pixel values for the examples `indices`.
pub fn gather_batch(data: &Dataset, indices: &[u32], mut out: ArrayViewMut2<f32>) {
    let features = out.ncols();
    let out = out.as_slice_mut().expect("a batch buffer is contiguous");
    // Rows as slices, so the conversion vectorises.
    for (row, &i) in out.chunks_exact_mut(features).zip(indices) {
        for (o, &p) in row.iter_mut().zip(data.image(i as usize)) {
            *o = pixel(p);
        }
    }
}

/// `out = x · w + bias`, then relu when asked.
pub fn dense_forward(
    x: ArrayView2<f32>,
    w: ArrayView2<f32>,
    bias: &[f32],
    relu: bool,
    out: ArrayViewMut2<f32>,
) {
    par_gemm(x, w, out, |block, _| add_bias(bias, relu, block));
}

/// `out += bias` row by row, then relu when asked.
pub fn add_bias(bias: &[f32], relu: bool, mut out: ArrayViewMut2<f32>) {
    for mut row in out.rows_mut() {
        for (o, b) in row.iter_mut().zip(bias) {
            let z = *o + b;
            *o = if relu { z.max(0.0) } else { z };
        }
    }
}

/// `c = a · b` (any of the operands may be a transposed view).
pub fn matmul(a: ArrayView2<f32>, b: ArrayView2<f32>, c: ArrayViewMut2<f32>) {
    par_gemm(a, b, c, |_, _| {});
}

/// `c = a · b · relu'(mask)`: the input gradient of a layer below a relu.
pub fn matmul_relu_mask(
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    c: ArrayViewMut2<f32>,
    mask: ArrayView2<f32>,
) {
    par_gemm(a, b, c, |mut block, rows| {
        // A select rather than a branch, so the loop vectorises.
        Zip::from(&mut block)
            .and(&mask.slice(ndarray::s![rows, ..]))
            .for_each(|g, &m| *g = if m > 0.0 { *g } else { 0.0 });
    });
}

/// `c = a · b` on the calling thread, for views of any strides.
fn sgemm(a: ArrayView2<f32>, b: ArrayView2<f32>, c: &mut ArrayViewMut2<f32>) {
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    assert_eq!(
        (b.nrows(), c.nrows(), c.ncols()),
        (k, m, n),
        "product shapes"
    );
    let (sa, sb) = (a.strides(), b.strides());
    let (c_row, c_col) = (c.strides()[0], c.strides()[1]);
    // SAFETY: the views are valid for their shapes and strides, checked
    // above to agree; `c` is borrowed mutably and overlaps neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_col,
            c_row,
            false,
            a.as_ptr(),
            sa[1],
            sa[0],
            b.as_ptr(),
            sb[1],
            sb[0],
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Products below this many multiply-adds run on one thread: a fork-join
/// costs more than it saves there (the MLP's 128x512x10 products take 0.03 ms
/// on one thread, 0.05-0.07 ms split over two, `bench --profile`).
const PARALLEL_MACS: usize = 1 << 20;

/// `c = a · b` on rayon's threads: the rows of `c` (or, for a product of
/// few rows, its columns) split in one block per thread, each a
/// single-threaded GEMM, then `epilogue` on each row block with its rows
/// (for a column split, once on the whole of `c` afterwards). One thread
/// pool for every CPU op, so the image ops' idle workers do not compete
/// with a second pool's.
fn par_gemm(
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    mut c: ArrayViewMut2<f32>,
    epilogue: impl Fn(ArrayViewMut2<f32>, std::ops::Range<usize>) + Sync,
) {
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    let threads = rayon::current_num_threads();
    if threads == 1 || m * k * n < PARALLEL_MACS {
        sgemm(a, b, &mut c);
        epilogue(c, 0..m);
        return;
    }
    if k >= DEPTH_SPLIT * m.max(n) {
        depth_split_gemm(a, b, &mut c, threads);
        epilogue(c, 0..m);
        return;
    }
    if m >= n || m >= 64 * threads {
        let block = m.div_ceil(threads);
        let blocks: Vec<_> = c.axis_chunks_iter_mut(Axis(0), block).enumerate().collect();
        blocks.into_par_iter().for_each(|(i, mut c)| {
            let rows = i * block..i * block + c.nrows();
            sgemm(a.slice(ndarray::s![rows.clone(), ..]), b, &mut c);
            epilogue(c, rows);
        });
    } else {
        let block = n.div_ceil(threads);
        let blocks: Vec<_> = c.axis_chunks_iter_mut(Axis(1), block).enumerate().collect();
        blocks.into_par_iter().for_each(|(i, mut c)| {
            let cols = i * block..i * block + c.ncols();
            sgemm(a, b.slice(ndarray::s![.., cols]), &mut c);
        });
        epilogue(c, 0..m);
    }
}

/// A product at least this many times deeper than either side of its
/// result splits its depth across threads (see [`depth_split_gemm`]).
const DEPTH_SPLIT: usize = 16;

thread_local! {
    /// [`depth_split_gemm`]'s partial results, grown to the largest asked
    /// (so a step allocates nothing once the first has run).
    static PARTIALS: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// `c = a · b` for a small result of a deep product (a convolution's kernel
/// gradient sums over every position of the batch): each thread multiplies
/// its share of the depth, reading a share of both operands where a split
/// of the result would have every thread read all of one, and the partial
/// results add up in thread order (so every run with as many threads agrees).
fn depth_split_gemm(
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    c: &mut ArrayViewMut2<f32>,
    threads: usize,
) {
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    let block = k.div_ceil(threads);
    // With many threads, fewer parts than threads cover the depth.
    let parts = k.div_ceil(block);
    let mut partials = PARTIALS.take();
    partials.resize((parts - 1) * m * n, 0.0);
    let depth = |i: usize| i * block..((i + 1) * block).min(k);
    let part = |i: usize, c: &mut ArrayViewMut2<f32>| {
        let range = depth(i);
        sgemm(
            a.slice(ndarray::s![.., range.clone()]),
            b.slice(ndarray::s![range, ..]),
            c,
        );
    };
    rayon::join(
        || part(0, c),
        || {
            partials
                .par_chunks_mut(m * n)
                .enumerate()
                .for_each(|(i, partial)| {
                    let mut view = ArrayViewMut2::from_shape((m, n), partial).expect("m x n");
                    part(i + 1, &mut view);
                })
        },
    );
    for partial in partials.chunks_exact(m * n) {
        *c += &ndarray::ArrayView2::from_shape((m, n), partial).expect("m x n");
    }
    PARTIALS.set(partials);
}

/// `a * b + c`: fused (rounded once) natively, where the multiversioned
/// kernels' targets have the instruction; rounded twice in wasm, which has
/// none, and where `mul_add` is a call to a software fma, ten times slower.
#[inline(always)]
pub fn madd(a: f32, b: f32, c: f32) -> f32 {
    if cfg!(target_arch = "wasm32") {
        a * b + c
    } else {
        a.mul_add(b, c)
    }
}

/// `dst = grad * relu'(mask)`, `mask` being the relu's output.
pub fn relu_grad(grad: &[f32], mask: &[f32], dst: &mut [f32]) {
    for ((d, &g), &m) in dst.iter_mut().zip(grad).zip(mask) {
        *d = if m > 0.0 { g } else { 0.0 };
    }
}

/// `dst = relu(src)`.
pub fn relu(src: &[f32], dst: &mut [f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = s.max(0.0);
    }
}

/// `dst = src * keep / (1 - rate)` with the mask of `step` (see
/// [`DropoutMask::keeps`]): the forward pass on activations, the backward
/// pass on their gradients.
pub fn dropout(src: &[f32], dst: &mut [f32], mask: &DropoutMask, seed: u64, step: u64) {
    let scale = mask.scale();
    for (i, (d, &s)) in dst.iter_mut().zip(src).enumerate() {
        *d = if mask.keeps(seed, step, i) {
            s * scale
        } else {
            0.0
        };
    }
}

/// Column sums of the `cols`-wide rows of `grad` into `out` (the bias
/// gradient), summed in row order; the columns split across rayon's
/// threads when there are many rows.
pub fn column_sums(grad: &[f32], cols: usize, out: &mut [f32]) {
    let threads = rayon::current_num_threads();
    if threads == 1 || grad.len() < PARALLEL_MACS || cols < 2 * 16 {
        return column_block_sums(grad, cols, 0, out);
    }
    // Column blocks of whole 64-byte lines, so threads share no line.
    let block = cols.div_ceil(threads).next_multiple_of(16);
    out.par_chunks_mut(block)
        .enumerate()
        .for_each(|(i, out)| column_block_sums(grad, cols, i * block, out));
}

/// The sums of columns `first..first + out.len()` of `grad`'s rows.
#[multiversion::multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma", "aarch64+neon"))]
fn column_block_sums(grad: &[f32], cols: usize, first: usize, out: &mut [f32]) {
    // Sixteen columns at a time, summed in registers rather than in `out`.
    for (j, out) in out.chunks_mut(16).enumerate() {
        let at = first + 16 * j;
        let mut sums = [0.0f32; 16];
        for row in grad.chunks_exact(cols) {
            for (s, v) in sums.iter_mut().zip(&row[at..at + out.len()]) {
                *s += v;
            }
        }
        out.copy_from_slice(&sums[..out.len()]);
    }
}

/// Labels of a batch for the loss: integer classes or one-hot (or any
/// probability) rows.
#[derive(Clone, Copy)]
pub enum Targets<'a> {
    Sparse(&'a [u8]),
    Dense(ArrayView2<'a, f32>),
}

impl Targets<'_> {
    fn row_class(&self, r: usize) -> usize {
        match self {
            Targets::Sparse(labels) => labels[r] as usize,
            Targets::Dense(t) => argmax(t.row(r).iter().copied()),
        }
    }
}

/// Index of the largest value (the first one on ties, as numpy's argmax).
pub fn argmax(values: impl Iterator<Item = f32>) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// Fused, numerically stable softmax + cross-entropy over the rows of `logits`.
/// Returns the summed loss and the number of rows whose argmax is the target
/// class, and writes `grad_scale * dloss/dlogits = grad_scale * (softmax * sum(t) - t)`
/// into `grad` when given (pass `1 / batch` for the mean loss).
pub fn softmax_cross_entropy(
    logits: ArrayView2<f32>,
    targets: Targets,
    grad_scale: f32,
    mut grad: Option<ArrayViewMut2<f32>>,
) -> (f64, u64) {
    let mut loss_sum = 0.0f64;
    let mut correct = 0u64;
    for (r, z) in logits.rows().into_iter().enumerate() {
        let mut g = grad.as_mut().map(|g| g.row_mut(r));
        let max = z.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let sum_exp: f32 = z.iter().map(|&v| (v - max).exp()).sum();
        let log_sum_exp = max + sum_exp.ln();
        let class = targets.row_class(r);
        if argmax(z.iter().copied()) == class {
            correct += 1;
        }
        match targets {
            Targets::Sparse(labels) => {
                let label = labels[r] as usize;
                loss_sum += (log_sum_exp - z[label]) as f64;
                if let Some(g) = g.as_mut() {
                    for (c, (gv, &zv)) in g.iter_mut().zip(&z).enumerate() {
                        let p = (zv - log_sum_exp).exp();
                        *gv = grad_scale * (p - if c == label { 1.0 } else { 0.0 });
                    }
                }
            }
            Targets::Dense(t) => {
                let t = t.row(r);
                let t_sum: f32 = t.sum();
                for (c, (&zv, &tv)) in z.iter().zip(&t).enumerate() {
                    loss_sum += (tv * (log_sum_exp - zv)) as f64;
                    if let Some(g) = g.as_mut() {
                        let p = (zv - log_sum_exp).exp();
                        g[c] = grad_scale * (p * t_sum - tv);
                    }
                }
            }
        }
    }
    (loss_sum, correct)
}

/// Row-wise softmax of `logits` into `probs`, computed as `exp(z - lse)` like
/// the loss, so a prediction agrees with the loss's probabilities.
pub fn softmax(logits: ArrayView2<f32>, mut probs: ArrayViewMut2<f32>) {
    for (z, mut p) in logits.rows().into_iter().zip(probs.rows_mut()) {
        let max = z.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let log_sum_exp = max + z.iter().map(|&v| (v - max).exp()).sum::<f32>().ln();
        for (pv, &zv) in p.iter_mut().zip(&z) {
            *pv = (zv - log_sum_exp).exp();
        }
    }
}

/// Writes one-hot rows for `labels` into `out`.
pub fn one_hot(labels: &[u8], mut out: ArrayViewMut2<f32>) {
    out.fill(0.0);
    for (mut row, &l) in out.axis_iter_mut(Axis(0)).zip(labels) {
        row[l as usize] = 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::Lcg;

    /// A deep product split across any number of threads, more threads
    /// than the depth splits into included (128 threads over a depth of
    /// 7,744 leave the last ones nothing), equals the f64 product.
    #[test]
    fn a_depth_split_product_is_right_for_any_thread_count() {
        let (m, k, n) = (9, 7744, 10);
        let mut rng = Lcg(3);
        let a: Vec<f32> = (0..m * k).map(|_| rng.signed()).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rng.signed()).collect();
        let a = ArrayView2::from_shape((m, k), &a).unwrap();
        let b = ArrayView2::from_shape((k, n), &b).unwrap();
        for threads in [2, 3, 7, 128] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut c = vec![f32::NAN; m * n];
            pool.install(|| matmul(a, b, ArrayViewMut2::from_shape((m, n), &mut c).unwrap()));
            for (i, &got) in c.iter().enumerate() {
                let (r, col) = (i / n, i % n);
                let want: f64 = (0..k).map(|j| a[[r, j]] as f64 * b[[j, col]] as f64).sum();
                assert!(
                    (got as f64 - want).abs() < 1e-3,
                    "{threads} threads, ({r}, {col}): {got} vs {want}"
                );
            }
        }
    }
}
