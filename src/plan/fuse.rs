//! Folds element-wise ops into the op that writes their input, when nothing
//! else reads that op's own result: a bias add, then a relu, into the
//! forward product (`Epilogue::Bias`, `BiasRelu`), and a relu derivative
//! into the input-gradient product (`Epilogue::ReluMask`) or the max-pool's
//! gradient. Each fusion saves a launch and a pass over the buffer.

use super::{Buf, Epilogue, Matmul, Op};

/// `ops` with every fusable pair fused, repeatedly (a bias then a relu).
pub(super) fn fuse(ops: Vec<Op>) -> Vec<Op> {
    let mut out: Vec<Op> = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let later = &ops[i + 1..];
        if let Some(prev) = out.last_mut() {
            if let Some(fused) = fused(*prev, op, later) {
                *prev = fused;
                continue;
            }
        }
        out.push(*op);
    }
    out
}

/// `prev` with `next` folded into it, if `next` reads `prev`'s result and
/// nothing in `later` reads that result again.
fn fused(prev: Op, next: &Op, later: &[Op]) -> Option<Op> {
    let unread_later = |buf: Buf| !later.iter().any(|op| op.reads().contains(&buf));
    match (prev, *next) {
        (Op::Matmul(mm), _) => fused_product(mm, next, later).map(Op::Matmul),
        (
            Op::MaxPoolGrad {
                grad,
                src,
                dst,
                pool,
                relu: false,
            },
            Op::ReluGrad {
                grad: relu_grad,
                mask,
                dst: relu_dst,
                ..
            },
        ) if relu_grad == dst && mask == src && unread_later(dst) => Some(Op::MaxPoolGrad {
            grad,
            src,
            dst: relu_dst,
            pool,
            relu: true,
        }),
        _ => None,
    }
}

/// `mm` with `next` folded into its epilogue.
fn fused_product(mm: Matmul, next: &Op, later: &[Op]) -> Option<Matmul> {
    let unread_later = |buf: Buf| !later.iter().any(|op| op.reads().contains(&buf));
    match (*next, mm.form.epilogue) {
        (Op::AddBias { buf, bias, .. }, Epilogue::None) if buf == mm.c => Some(Matmul {
            extra: Some(bias),
            form: with_epilogue(mm, Epilogue::Bias),
            ..mm
        }),
        (Op::Relu { src, dst, .. }, Epilogue::Bias) if src == mm.c && unread_later(src) => {
            Some(Matmul {
                c: dst,
                form: with_epilogue(mm, Epilogue::BiasRelu),
                ..mm
            })
        }
        (
            Op::ReluGrad {
                grad, mask, dst, ..
            },
            Epilogue::None,
        ) if grad == mm.c && unread_later(grad) && mask != mm.c => Some(Matmul {
            c: dst,
            extra: Some(mask),
            form: with_epilogue(mm, Epilogue::ReluMask),
            ..mm
        }),
        _ => None,
    }
}

fn with_epilogue(mm: Matmul, epilogue: Epilogue) -> super::MatmulForm {
    super::MatmulForm {
        epilogue,
        ..mm.form
    }
}
