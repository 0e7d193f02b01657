//! The first layer on sparse inputs. MNIST pixels are zero about 80% of the time,
//! so `X · W` and `Xᵀ · delta` skip the zeros: each sample adds only the weight
//! rows of its nonzero pixels, and each weight row gathers only the samples
//! where its pixel is nonzero. The results are the dense products' (in another
//! summation order); the conformance suite and the gradient check run them on
//! MNIST-like data against f64 references.

use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

use super::ops::madd;
use crate::data::{pixel, Dataset};

/// Use the sparse kernels when at most this fraction of the batch is nonzero;
/// above it, the dense matmul's better arithmetic intensity wins.
pub const MAX_DENSITY: f64 = 0.5;

/// The nonzero pixels of a batch, by row (CSR) and by column (CSC), as
/// `pixel / 255`. The columns, which only the weight gradient reads, are
/// sorted from the rows while the forward product runs (see [`forward`]).
/// Buffers keep their capacity from batch to batch.
#[derive(Debug, Default)]
pub struct SparseBatch {
    rows: SparseRows,
    columns: SparseColumns,
}

/// The nonzero pixels by row, and how many each column holds.
#[derive(Debug, Default)]
struct SparseRows {
    count: usize,
    features: usize,
    row_start: Vec<usize>,
    row_cols: Vec<u32>,
    row_vals: Vec<f32>,
    /// `column_counts[p + 1]`: the nonzero pixels in column `p`.
    column_counts: Vec<usize>,
}

/// The same entries by column.
#[derive(Debug, Default)]
struct SparseColumns {
    col_start: Vec<usize>,
    col_rows: Vec<u32>,
    col_vals: Vec<f32>,
    next: Vec<usize>,
    /// Whether these are the current batch's entries.
    current: bool,
}

impl SparseBatch {
    /// Collects the nonzero pixels of `indices` of `data`.
    pub fn gather(&mut self, data: &Dataset, indices: &[u32]) {
        self.rows.gather(data, indices);
        self.columns.current = false;
    }

    /// Fraction of the batch's pixels that are nonzero.
    pub fn density(&self) -> f64 {
        let rows = &self.rows;
        rows.row_cols.len() as f64 / (rows.count * rows.features).max(1) as f64
    }

    fn columns(&mut self) -> &SparseColumns {
        self.columns.sort(&self.rows);
        &self.columns
    }
}

impl SparseRows {
    fn gather(&mut self, data: &Dataset, indices: &[u32]) {
        self.count = indices.len();
        self.features = data.features;
        self.row_start.clear();
        self.row_cols.clear();
        self.row_vals.clear();
        self.row_start.push(0);
        self.column_counts.clear();
        self.column_counts.resize(data.features + 1, 0);
        for &i in indices {
            // Eight pixels at a time: most words of an MNIST image are all zero.
            for (w, word) in data.image(i as usize).chunks(8).enumerate() {
                if word.len() == 8 && u64::from_ne_bytes(word.try_into().unwrap()) == 0 {
                    continue;
                }
                for (j, &v) in word.iter().enumerate() {
                    if v != 0 {
                        let p = 8 * w + j;
                        self.row_cols.push(p as u32);
                        self.row_vals.push(pixel(v));
                        self.column_counts[p + 1] += 1;
                    }
                }
            }
            self.row_start.push(self.row_cols.len());
        }
    }
}

impl SparseColumns {
    /// Counting sort of `rows`' entries by column, unless done for this batch.
    fn sort(&mut self, rows: &SparseRows) {
        if self.current {
            return;
        }
        self.current = true;
        self.col_start.clone_from(&rows.column_counts);
        for p in 0..rows.features {
            self.col_start[p + 1] += self.col_start[p];
        }
        let nnz = rows.row_cols.len();
        self.col_rows.resize(nnz, 0);
        self.col_vals.resize(nnz, 0.0);
        self.next.clear();
        self.next
            .extend_from_slice(&self.col_start[..rows.features]);
        for r in 0..rows.count {
            for e in rows.row_start[r]..rows.row_start[r + 1] {
                let p = rows.row_cols[e] as usize;
                self.col_rows[self.next[p]] = r as u32;
                self.col_vals[self.next[p]] = rows.row_vals[e];
                self.next[p] += 1;
            }
        }
    }
}

/// `out[j] += sum_i x[i] * w[i][j]` for four rows at once (one load and store
/// of `out` per four multiply-adds), compiled for the widest vector unit present.
#[multiversion::multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma", "aarch64+neon"))]
fn axpy4(x: [f32; 4], w: [&[f32]; 4], out: &mut [f32]) {
    let n = out.len();
    let (w0, w1, w2, w3) = (&w[0][..n], &w[1][..n], &w[2][..n], &w[3][..n]);
    for j in 0..n {
        out[j] = madd(
            x[3],
            w3[j],
            madd(x[2], w2[j], madd(x[1], w1[j], madd(x[0], w0[j], out[j]))),
        );
    }
}

/// `out[j] += x * w[j]`.
#[multiversion::multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma", "aarch64+neon"))]
fn axpy(x: f32, w: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(w) {
        *o = madd(x, v, *o);
    }
}

/// `out += sum_e vals[e] * row(ids[e])`, four terms at a time.
fn accumulate_rows(
    ids: &[u32],
    vals: &[f32],
    row: impl Fn(usize) -> std::ops::Range<usize>,
    m: &[f32],
    out: &mut [f32],
) {
    let mut e = 0;
    while e + 4 <= ids.len() {
        let r = |i: usize| &m[row(ids[e + i] as usize)];
        axpy4(
            [vals[e], vals[e + 1], vals[e + 2], vals[e + 3]],
            [r(0), r(1), r(2), r(3)],
            out,
        );
        e += 4;
    }
    for (&id, &x) in ids[e..].iter().zip(&vals[e..]) {
        axpy(x, &m[row(id as usize)], out);
    }
}

/// `out = X · w (+ bias)` (then relu when asked) for the batch's rows; the
/// batch's columns are sorted meanwhile, so the weight gradient finds them
/// ready without a serial step of its own.
pub fn forward(
    batch: &mut SparseBatch,
    w: ArrayView2<f32>,
    bias: Option<&[f32]>,
    relu: bool,
    out: ArrayViewMut2<f32>,
) {
    let w = w.as_standard_layout();
    let width = w.ncols();
    let w = w.as_slice().expect("standard layout");
    let out = out.into_slice().expect("the batch buffer is contiguous");
    let SparseBatch { rows, columns } = batch;
    let rows = &*rows;
    rayon::join(
        || columns.sort(rows),
        || {
            out.par_chunks_mut(width).enumerate().for_each(|(r, row)| {
                match bias {
                    Some(bias) => row.copy_from_slice(bias),
                    None => row.fill(0.0),
                }
                let entries = rows.row_start[r]..rows.row_start[r + 1];
                accumulate_rows(
                    &rows.row_cols[entries.clone()],
                    &rows.row_vals[entries],
                    |p| p * width..(p + 1) * width,
                    w,
                    row,
                );
                if relu {
                    row.iter_mut().for_each(|v| *v = v.max(0.0));
                }
            })
        },
    );
}

/// `gw = Xᵀ · delta` for the batch: row p of `gw` sums `x[r, p] * delta[r, :]`
/// over the rows where pixel p is nonzero.
pub fn grad_weights(batch: &mut SparseBatch, delta: ArrayView2<f32>, gw: ArrayViewMut2<f32>) {
    let columns = batch.columns();
    let delta = delta.as_standard_layout();
    let width = delta.ncols();
    let delta = delta.as_slice().expect("standard layout");
    let cols = gw.ncols();
    let gw = gw.into_slice().expect("the gradient buffer is contiguous");
    gw.par_chunks_mut(cols).enumerate().for_each(|(p, row)| {
        row.fill(0.0);
        let entries = columns.col_start[p]..columns.col_start[p + 1];
        accumulate_rows(
            &columns.col_rows[entries.clone()],
            &columns.col_vals[entries],
            |r| r * width..(r + 1) * width,
            delta,
            row,
        );
    });
}
