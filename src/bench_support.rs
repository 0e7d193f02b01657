//! Not part of the API: single ops at the model's shapes for the crate's own
//! kernel benchmarks (`benches/kernels.rs`). They run through the same plan
//! executors as training.

use std::sync::Arc;

use crate::backend::{Executor, RunSettings, Split};
use crate::data::{Dataset, Splits};
use crate::device::Device;
use crate::evaluate::{executor, Error};
use crate::optim::{OptimizerKind, OptimizerSpec};
use crate::plan::{BatchDim, Buf, Epilogue, Matmul, MatmulForm, Op, Plan, Program};

/// One op repeated `repeats` times in one step: a GPU step is one submit and
/// one wait, so the time per op carries 1/repeats of the sync.
pub struct OpBench {
    exec: Box<dyn Executor>,
    rows: usize,
}

impl OpBench {
    fn new(
        device: &Device,
        plan: Plan,
        rows: usize,
        optimizer: Option<OptimizerSpec>,
    ) -> Result<Self, Error> {
        let set = Dataset::new(vec![0; rows], vec![0; rows], 1, 2)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let data = Arc::new(Splits {
            train: set.clone(),
            test: set,
        });
        let params: Vec<Vec<f32>> = (0..plan.tensors.len())
            .map(|t| {
                (0..plan.tensor_len(t))
                    .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
                    .collect()
            })
            .collect();
        let params: Vec<&[f32]> = params.iter().map(Vec::as_slice).collect();
        let settings = RunSettings {
            optimizer,
            report_every: usize::MAX,
        };
        let (exec, _) = executor(device, plan, data, settings, &params)?;
        Ok(Self { exec, rows })
    }

    /// Runs the step and waits for it.
    pub fn run(&mut self) -> Result<(), Error> {
        let order: Vec<u32> = (0..self.rows as u32).collect();
        self.exec
            .run(Program::Train, Split::Train, Some(&order), &mut |_| {})?;
        Ok(())
    }
}

/// The matmul forms of the book's training step: (name, FLOPs per op, bench).
pub fn matmuls(device: &Device, repeats: usize) -> Result<Vec<(String, u64, OpBench)>, Error> {
    let form = |ta, tb, epilogue, batch_dim| MatmulForm {
        transpose_a: ta,
        transpose_b: tb,
        epilogue,
        batch_dim,
    };
    let cases = [
        (
            "forward_128x784x512",
            form(false, false, Epilogue::BiasRelu, BatchDim::M),
            128,
            784,
            512,
        ),
        (
            "forward_128x512x10",
            form(false, false, Epilogue::Bias, BatchDim::M),
            128,
            512,
            10,
        ),
        (
            "grad_weights_784x128x512",
            form(true, false, Epilogue::None, BatchDim::K),
            784,
            128,
            512,
        ),
        // The first layer's form in training: the transposed batch times delta.
        (
            "grad_weights_from_xt_784x128x512",
            form(false, false, Epilogue::None, BatchDim::None),
            784,
            128,
            512,
        ),
        (
            "grad_weights_512x128x10",
            form(true, false, Epilogue::None, BatchDim::K),
            512,
            128,
            10,
        ),
        (
            "grad_input_128x10x512",
            form(false, true, Epilogue::ReluMask, BatchDim::M),
            128,
            10,
            512,
        ),
    ];
    cases
        .into_iter()
        .map(|(name, form, m, k, n)| {
            let (a, b) = if form.transpose_a {
                ((k, m), (k, n))
            } else {
                ((m, k), (if form.transpose_b { (n, k) } else { (k, n) }))
            };
            let extra = if form.epilogue == Epilogue::ReluMask {
                (m, n)
            } else {
                (1, n)
            };
            let mm = Matmul {
                a: Buf::Param(0),
                b: Buf::Param(1),
                c: Buf::Grad(3),
                extra: (form.epilogue != Epilogue::None).then_some(Buf::Param(2)),
                form,
                m,
                k,
                n,
            };
            let rows = match form.batch_dim {
                BatchDim::M => m,
                BatchDim::K => k,
                BatchDim::None => 1,
            };
            let plan = Plan::bare(
                rows,
                1,
                2,
                vec![a, b, extra, (m, n)],
                vec![Op::Matmul(mm); repeats],
            );
            Ok((
                name.to_string(),
                (2 * m * k * n) as u64,
                OpBench::new(device, plan, rows, None)?,
            ))
        })
        .collect()
}

/// The fused loss and its gradient over a 128 x 10 batch.
pub fn softmax_xent(device: &Device, repeats: usize) -> Result<OpBench, Error> {
    let op = Op::SoftmaxXent {
        logits: Buf::Param(0),
        grad: Some(Buf::Grad(0)),
        dense_targets: false,
    };
    OpBench::new(
        device,
        Plan::bare(128, 1, 10, vec![(128, 10)], vec![op; repeats]),
        128,
        None,
    )
}

/// One RMSprop update of the book's 407,050 parameters.
pub fn rmsprop(device: &Device) -> Result<OpBench, Error> {
    let mut plan = Plan::bare(
        1,
        1,
        2,
        vec![(784, 512), (1, 512), (512, 10), (1, 10)],
        vec![Op::Update],
    );
    plan.state_slots = 1;
    OpBench::new(
        device,
        plan,
        1,
        Some(OptimizerSpec::keras_default(OptimizerKind::Rmsprop)),
    )
}
