//! The ops of a training step that the CPU's max-pool gradient computes
//! while it sends each window's gradient to its one position (see
//! [`super::image_ops::max_pool_grad`]): the bias gradient of the convolution
//! below the pool (the column sums of the pool gradient) and, for the first
//! layer, its kernel gradient, whose product would read the whole pool
//! gradient for a quarter of nonzeros. The plan stays as it is (the GPU runs
//! every op); the CPU skips the ops computed this way.

use std::collections::HashMap;

use crate::plan::{BatchDim, Buf, Epilogue, Op};

/// What a max-pool gradient also computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PoolRoute {
    /// The convolution's bias gradient.
    pub bias: Buf,
    /// Its kernel gradient, when nothing else reads the pool gradient (which
    /// then is not written at all).
    pub kernel: Option<KernelRoute>,
}

impl PoolRoute {
    /// Whether `buf` is one of the gradients it computes.
    pub fn computes(&self, buf: Buf) -> bool {
        buf == self.bias || self.kernel.is_some_and(|k| k.grad == buf)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct KernelRoute {
    /// The convolution's windows (`rows x positions x self.rows`).
    pub patches: Buf,
    /// The kernel gradient (`self.rows x channels`).
    pub grad: Buf,
    pub rows: usize,
}

/// The most kernel-gradient rows routed: each costs a multiply-add per value
/// sent, where the product's blocked kernel needs a quarter of that per
/// value of the pool gradient; the first layer of an MNIST convnet has 9.
const MAX_KERNEL_ROWS: usize = 32;

/// The routes of `ops`' max-pool gradients, by the pool gradient's output.
pub(super) fn routes(ops: &[Op]) -> HashMap<Buf, PoolRoute> {
    let mut routes = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        let Op::MaxPoolGrad { dst, pool, .. } = *op else {
            continue;
        };
        // The ops that read this gradient before anything writes it again.
        let until = ops[i + 1..]
            .iter()
            .position(|later| later.writes().contains(&dst))
            .map_or(ops.len(), |j| i + 1 + j);
        let between = &ops[i + 1..until];
        let readers: Vec<&Op> = between
            .iter()
            .filter(|later| later.reads().contains(&dst))
            .collect();
        let (channels, positions) = (pool.input.channels, pool.input.height * pool.input.width);
        let bias = readers.iter().find_map(|op| match **op {
            Op::ColumnSums {
                src,
                dst: sums,
                cols,
                positions: p,
            } if src == dst && cols == channels && p == positions => Some(sums),
            _ => None,
        });
        let Some(bias) = bias else {
            continue;
        };
        let kernel = readers.iter().find_map(|op| match **op {
            Op::Matmul(mm)
                if mm.b == dst
                    && mm.form.transpose_a
                    && !mm.form.transpose_b
                    && mm.form.epilogue == Epilogue::None
                    && mm.form.batch_dim == BatchDim::K
                    && mm.n == channels
                    && mm.positions == positions
                    && mm.m <= MAX_KERNEL_ROWS
                    && !between.iter().any(|o| o.writes().contains(&mm.a)) =>
            {
                Some(KernelRoute {
                    patches: mm.a,
                    grad: mm.c,
                    rows: mm.m,
                })
            }
            _ => None,
        });
        // Routed only when these two are all that read the pool gradient.
        let kernel = kernel.filter(|_| readers.len() == 2);
        routes.insert(dst, PoolRoute { bias, kernel });
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::LossKind;
    use crate::model::ModelSpec;
    use crate::plan::Plan;

    /// In the book's convnet, the first pool gradient computes its
    /// convolution's bias and kernel gradients (the first layer computes no
    /// input gradient), the second only the bias gradient (the input
    /// gradient product reads the pool gradient too).
    #[test]
    fn the_convnets_pool_gradients_compute_what_only_they_feed() {
        let plan = Plan::new(
            &ModelSpec::convnet(28, 28, 10),
            64,
            LossKind::Categorical,
            1,
        );
        let routes = routes(&plan.train);
        let mut found: Vec<PoolRoute> = plan
            .train
            .iter()
            .filter_map(|op| match op {
                Op::MaxPoolGrad { dst, .. } => routes.get(dst).copied(),
                _ => None,
            })
            .collect();
        found.sort_by_key(|r| r.kernel.is_some());
        assert_eq!(found.len(), 2, "{routes:?}");
        assert_eq!(found[0].kernel, None);
        let kernel = found[1].kernel.expect("the first layer's kernel gradient");
        assert_eq!((kernel.patches, kernel.rows), (Buf::Patches(0), 9));
        assert_eq!(kernel.grad, Buf::Grad(0));
        let routed = |b: &Buf| routes.values().any(|r| r.computes(*b));
        let skipped: Vec<Buf> = plan
            .train
            .iter()
            .flat_map(|op| op.writes())
            .filter(routed)
            .collect();
        assert_eq!(
            skipped.len(),
            3,
            "two bias gradients and one kernel gradient"
        );
        // The skipped ops write nothing else.
        for op in &plan.train {
            let writes = op.writes();
            if writes.iter().any(routed) {
                assert!(writes.iter().all(routed), "{op:?}");
            }
        }
    }
}
