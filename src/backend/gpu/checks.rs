//! What the wgpu executor asks of an adapter, checked against the adapter's
//! limits before anything is built: each refusal is one line naming the limit,
//! what asked for it and how much.

use super::kernels::image::{self, ImageOp, ImageParams};
use super::kernels::matmul::{self, MatmulCaps, MatmulKernel};
use super::kernels::{all_slots, elementwise, gather, softmax_xent, Shape};
use super::shader::{Access, LINEAR_WORKGROUP};
use super::{GpuError, ParamLayout};
use crate::backend::Split;
use crate::data::Splits;
use crate::plan::{Op, Plan};

/// What a device offers the checks: its limits, whether it runs compute
/// shaders at all, and what the matmul choice depends on.
pub(crate) struct Offer<'a> {
    pub limits: &'a wgpu::Limits,
    pub compute_shaders: bool,
    pub caps: MatmulCaps,
}

fn at_most(limit: &'static str, allowed: u64, needed: u64, what: String) -> Result<(), GpuError> {
    if needed > allowed {
        return Err(GpuError::Limit {
            limit,
            allowed,
            needed,
            what,
        });
    }
    Ok(())
}

/// Fails with the first limit that `plan` over `data` exceeds.
pub(crate) fn check(offer: &Offer, plan: &Plan, data: &Splits) -> Result<(), GpuError> {
    let l = offer.limits;
    if !offer.compute_shaders {
        return Err(GpuError::Unsupported("compute shaders".into()));
    }
    for (kernel, slots) in all_slots() {
        let count =
            |access: &[Access]| slots.iter().filter(|s| access.contains(&s.access)).count() as u64;
        let storage = count(&[Access::Read, Access::ReadWrite]);
        at_most(
            "max_storage_buffers_per_shader_stage",
            l.max_storage_buffers_per_shader_stage as u64,
            storage,
            format!("the {kernel} kernel"),
        )?;
        // The kernel's own uniforms and the step table.
        at_most(
            "max_uniform_buffers_per_shader_stage",
            l.max_uniform_buffers_per_shader_stage as u64,
            count(&[Access::Uniform]) + 1,
            format!("the {kernel} kernel"),
        )?;
    }
    let widest = matmul::workgroup_shapes(offer.caps)
        .chain([(LINEAR_WORKGROUP, 1)])
        .fold((0, 0), |(x, y), (a, b)| (x.max(a), y.max(b)));
    at_most(
        "max_compute_workgroup_size_x",
        l.max_compute_workgroup_size_x as u64,
        widest.0 as u64,
        "the kernels' workgroups".into(),
    )?;
    at_most(
        "max_compute_workgroup_size_y",
        l.max_compute_workgroup_size_y as u64,
        widest.1 as u64,
        "the kernels' workgroups".into(),
    )?;
    let invocations = matmul::workgroup_shapes(offer.caps)
        .map(|(x, y)| x * y)
        .chain([LINEAR_WORKGROUP])
        .max()
        .unwrap_or(0);
    at_most(
        "max_compute_invocations_per_workgroup",
        l.max_compute_invocations_per_workgroup as u64,
        invocations as u64,
        "the kernels' workgroups".into(),
    )?;
    at_most(
        "max_compute_workgroup_storage_size",
        l.max_compute_workgroup_storage_size as u64,
        softmax_xent::WORKGROUP_BYTES as u64,
        "the softmax_xent kernel's reduction".into(),
    )?;
    check_grids(l.max_compute_workgroups_per_dimension as u64, plan)?;
    let binding = l.max_storage_buffer_binding_size.min(l.max_buffer_size);
    let f32_bytes = |n: usize| 4 * n as u64;
    for buf in plan.batch_buffers() {
        at_most(
            "max_storage_buffer_binding_size",
            binding,
            f32_bytes(plan.len(buf)),
            format!("a batch of {} rows ({buf:?})", plan.batch),
        )?;
    }
    // The buffers as the executor lays them out: each tensor aligned.
    let params = ParamLayout::new(
        (0..plan.tensors.len()).map(|t| plan.tensor_len(t)),
        l.min_storage_buffer_offset_alignment as u64,
    )
    .total as usize;
    at_most(
        "max_storage_buffer_binding_size",
        binding,
        f32_bytes(params),
        "the parameters".into(),
    )?;
    at_most(
        "max_storage_buffer_binding_size",
        binding,
        f32_bytes(params * plan.state_slots),
        format!("the optimizer's {} state slots", plan.state_slots),
    )?;
    for split in Split::ALL {
        if let Some(set) = split.of(data) {
            at_most(
                "max_storage_buffer_binding_size",
                binding,
                set.images.len() as u64,
                format!("the {} images", split.name()),
            )?;
        }
    }
    Ok(())
}

/// Every launch's workgroups per dimension.
fn check_grids(allowed: u64, plan: &Plan) -> Result<(), GpuError> {
    let limit = "max_compute_workgroups_per_dimension";
    let shape = Shape::of(plan);
    for op in plan.all_ops() {
        let (what, (x, y, z)) = match *op {
            Op::Gather { .. } => (
                format!("the gather of a batch of {} rows", plan.batch),
                gather::groups(&shape),
            ),
            Op::Matmul(mm) => (
                format!("a {}x{}x{} product", mm.m, mm.k, mm.n),
                // The scalar kernel, the fallback; the others are candidates
                // only where their grids fit (`matmul::candidates`).
                matmul::groups(MatmulKernel::Scalar, mm.m, mm.n),
            ),
            Op::ColumnSums { cols, .. } => (
                format!("the column sums of {cols} columns"),
                matmul::groups(MatmulKernel::Scalar, 1, cols),
            ),
            // One workgroup; a grid-stride loop clamped to the limit.
            Op::SoftmaxXent { .. } | Op::Softmax { .. } | Op::Update => continue,
            Op::AddBias {
                cols, positions, ..
            } => (
                format!("a bias over {positions} x {cols} values"),
                elementwise::groups(positions * cols, plan.batch),
            ),
            Op::Relu { width, .. } | Op::ReluGrad { width, .. } => (
                format!("a relu over {width} values"),
                elementwise::groups(width, plan.batch),
            ),
            Op::Dropout { mask, .. } => (
                format!("a dropout over {} values", mask.width),
                elementwise::groups(mask.width, plan.batch),
            ),
            Op::Im2col { conv, .. } | Op::Col2im { conv, .. } => (
                format!(
                    "the windows of a {}x{} convolution",
                    conv.kernel, conv.kernel
                ),
                image::groups(
                    ImageParams::conv(ImageOp::Im2col, &conv)
                        .count
                        .max(conv.input.len() as u32),
                    plan.batch,
                ),
            ),
            Op::MaxPool { pool, .. } | Op::MaxPoolGrad { pool, .. } => (
                format!("a {}x{} max-pool", pool.size, pool.size),
                image::groups(pool.input.len() as u32, plan.batch),
            ),
        };
        at_most(limit, allowed, x.max(y).max(z) as u64, what)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Dataset;
    use crate::loss::LossKind;
    use crate::model::ModelSpec;

    fn data() -> Splits {
        let set = Dataset::new(vec![0; 784 * 2], vec![0, 1], 784, 10).unwrap();
        Splits::new(set.clone(), set)
    }

    fn offer(limits: &wgpu::Limits) -> Offer<'_> {
        Offer {
            limits,
            compute_shaders: true,
            caps: MatmulCaps::new(limits, None),
        }
    }

    fn book(batch: usize) -> Plan {
        Plan::new(
            &ModelSpec::mlp(784, &[512], 10),
            batch,
            LossKind::SparseCategorical,
            1,
        )
    }

    #[test]
    fn the_book_fits_webgpu_defaults() {
        check(&offer(&wgpu::Limits::default()), &book(128), &data()).unwrap();
    }

    #[test]
    fn each_limit_below_the_request_is_named() {
        let defaults = wgpu::Limits::default();
        let cases: Vec<(wgpu::Limits, usize, &str)> = vec![
            (
                wgpu::Limits::default(),
                65_536,
                "the gather of a batch of 65536 rows: max_compute_workgroups_per_dimension must be at least 65536, this adapter allows 65535",
            ),
            (
                wgpu::Limits { max_storage_buffers_per_shader_stage: 4, ..defaults.clone() },
                128,
                "the gather kernel: max_storage_buffers_per_shader_stage must be at least 6, this adapter allows 4",
            ),
            (
                wgpu::Limits { max_compute_invocations_per_workgroup: 32, ..defaults.clone() },
                128,
                "the kernels' workgroups: max_compute_invocations_per_workgroup must be at least 64, this adapter allows 32",
            ),
            (
                wgpu::Limits { max_storage_buffer_binding_size: 1 << 20, ..defaults.clone() },
                1024,
                "a batch of 1024 rows (Input): max_storage_buffer_binding_size must be at least 3211264, this adapter allows 1048576",
            ),
        ];
        for (limits, batch, message) in cases {
            let e = check(&offer(&limits), &book(batch), &data()).unwrap_err();
            assert!(e.to_string().contains(message), "{e}");
        }
        // Adam's two state slots are bound as one buffer: twice the parameters.
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: 2 << 20,
            ..defaults.clone()
        };
        check(&offer(&limits), &book(128), &data()).unwrap();
        let adam = Plan::new(
            &ModelSpec::mlp(784, &[512], 10),
            128,
            LossKind::SparseCategorical,
            2,
        );
        let e = check(&offer(&limits), &adam, &data()).unwrap_err();
        assert!(
            e.to_string().contains("the optimizer's 2 state slots: max_storage_buffer_binding_size must be at least 3256832, this adapter allows 2097152"),
            "{e}"
        );
        let mut no_compute = offer(&defaults);
        no_compute.compute_shaders = false;
        let e = check(&no_compute, &book(128), &data()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "this adapter does not support compute shaders"
        );
    }
}
