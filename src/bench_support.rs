//! Not part of the API: single ops at the model's shapes for the crate's own
//! kernel benchmarks (`benches/kernels.rs`). They run through the same plan
//! executors as training.

use std::ops::ControlFlow;
use std::sync::Arc;

use crate::backend::gpu::tune::random;
use crate::backend::{Executor, RunSettings, Split};
use crate::data::catalog::{CLASSES, FEATURES};
use crate::data::{Dataset, Splits};
use crate::device::Device;
use crate::evaluate::{block, executor, Error};
use crate::loss::LossKind;
use crate::model::ModelSpec;
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
        let data = Arc::new(Splits::new(set.clone(), set));
        let params: Vec<Vec<f32>> = (0..plan.tensors.len())
            .map(|t| random(plan.tensor_len(t), t as u64))
            .collect();
        let params: Vec<&[f32]> = params.iter().map(Vec::as_slice).collect();
        let settings = RunSettings {
            optimizer,
            report_every: usize::MAX,
            seed: 0,
        };
        let (exec, _) = pollster::block_on(executor(device, plan, data, settings, &params))?;
        Ok(Self { exec, rows })
    }

    /// Runs the step and waits for it.
    pub fn run(&mut self) -> Result<(), Error> {
        let order: Vec<u32> = (0..self.rows as u32).collect();
        let driver = self.exec.driver();
        let mut go_on = |_: &crate::backend::Metrics| ControlFlow::Continue(());
        let run = self
            .exec
            .run(Program::Train, Split::Train, Some(&order), &mut go_on);
        block(driver, async { Ok(run.await.map(drop)?) })
    }
}

/// The book's network and batch, whose ops the benchmarks time.
fn book(state_slots: usize) -> Plan {
    let spec = ModelSpec::mlp(FEATURES, &[512], CLASSES);
    Plan::new(&spec, 128, LossKind::SparseCategorical, state_slots)
}

/// The matmuls of the book's training step, and the product the wgpu device
/// computes the first layer's weight gradient with (the transposed batch times
/// delta): (name, FLOPs per op, bench).
pub fn matmuls(device: &Device, repeats: usize) -> Result<Vec<(String, u64, OpBench)>, Error> {
    let mut products: Vec<Matmul> = book(0)
        .train
        .iter()
        .filter_map(|op| match op {
            Op::Matmul(mm) => Some(*mm),
            _ => None,
        })
        .collect();
    let first_grad = products[products.len() - 1];
    products.push(Matmul {
        form: MatmulForm {
            transpose_a: false,
            batch_dim: BatchDim::None,
            ..first_grad.form
        },
        ..first_grad
    });
    products
        .into_iter()
        .map(|mm| {
            let MatmulForm {
                transpose_a,
                transpose_b,
                epilogue,
                batch_dim,
            } = mm.form;
            let (m, k, n) = (mm.m, mm.k, mm.n);
            let role = match (transpose_a, transpose_b, epilogue) {
                (true, _, _) => "grad_weights",
                (_, true, _) => "grad_input",
                (_, _, Epilogue::None) => "grad_weights_from_xt",
                _ => "forward",
            };
            let a = if transpose_a { (k, m) } else { (m, k) };
            let b = if transpose_b { (n, k) } else { (k, n) };
            let extra = if epilogue == Epilogue::ReluMask {
                (m, n)
            } else {
                (1, n)
            };
            let single = Matmul {
                a: Buf::Param(0),
                b: Buf::Param(1),
                c: Buf::Grad(3),
                extra: (epilogue != Epilogue::None).then_some(Buf::Param(2)),
                ..mm
            };
            let rows = match batch_dim {
                BatchDim::M => m,
                BatchDim::K => k,
                BatchDim::None => 1,
            };
            let plan = Plan::bare(
                rows,
                1,
                2,
                vec![a, b, extra, (m, n)],
                vec![Op::Matmul(single); repeats],
            );
            let bench = OpBench::new(device, plan, rows, None)?;
            Ok((format!("{role}_{m}x{k}x{n}"), (2 * m * k * n) as u64, bench))
        })
        .collect()
}

/// The fused loss and its gradient over the book's batch of logits.
pub fn softmax_xent(device: &Device, repeats: usize) -> Result<OpBench, Error> {
    let book = book(0);
    let op = Op::SoftmaxXent {
        logits: Buf::Param(0),
        grad: Some(Buf::Grad(0)),
        dense_targets: false,
    };
    let plan = Plan::bare(
        book.batch,
        1,
        book.classes,
        vec![(book.batch, book.classes)],
        vec![op; repeats],
    );
    OpBench::new(device, plan, book.batch, None)
}

/// One RMSprop update of the book's 407,050 parameters.
pub fn rmsprop(device: &Device) -> Result<OpBench, Error> {
    let book = book(1);
    let mut plan = Plan::bare(1, 1, 2, book.tensors, vec![Op::Update]);
    plan.state_slots = 1;
    OpBench::new(
        device,
        plan,
        1,
        Some(OptimizerSpec::keras_default(OptimizerKind::Rmsprop)),
    )
}
