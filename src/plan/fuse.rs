//! Folds element-wise ops into the product that writes their input, when
//! nothing else reads the product's own result: a bias add, then a relu,
//! into the forward product (`Epilogue::Bias`, `BiasRelu`), and a relu
//! derivative into the input-gradient product (`Epilogue::ReluMask`). Each
//! fusion saves a launch and a pass over the buffer.

use super::{Buf, Epilogue, Matmul, Op};

/// `ops` with every fusable pair fused, repeatedly (a bias then a relu).
pub(super) fn fuse(ops: Vec<Op>) -> Vec<Op> {
    let mut out: Vec<Op> = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let later = &ops[i + 1..];
        if let Some(Op::Matmul(mm)) = out.last_mut() {
            if let Some(fused) = fused(*mm, op, later) {
                *mm = fused;
                continue;
            }
        }
        out.push(*op);
    }
    out
}

/// `mm` with `next` folded into it, if `next` reads `mm`'s result and
/// nothing in `later` reads that result again.
fn fused(mm: Matmul, next: &Op, later: &[Op]) -> Option<Matmul> {
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
        (Op::ReluGrad { grad, mask, dst, .. }, Epilogue::None)
            if grad == mm.c && unread_later(grad) && mask != mm.c =>
        {
            Some(Matmul {
                c: dst,
                extra: Some(mask),
                form: with_epilogue(mm, Epilogue::ReluMask),
                ..mm
            })
        }
        _ => None,
    }
}

fn with_epilogue(mm: Matmul, epilogue: Epilogue) -> super::MatmulForm {
    super::MatmulForm { epilogue, ..mm.form }
}
