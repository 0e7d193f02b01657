// The fused epilogue (EPILOGUE in matmul_common.wgsl) on a vec4 of C, for the
// kernels whose `extra` binding holds vec4s: `v` is C at vec4 index `idx`, in
// vec4 column `col4`.
fn epilogue4(acc: vec4<f32>, col4: u32, idx: u32) -> vec4<f32> {
    var v = acc;
    if EPILOGUE == 1u || EPILOGUE == 2u {
        v += extra[col4];
    }
    if EPILOGUE == 2u {
        v = max(v, vec4<f32>(0.0));
    }
    if EPILOGUE == 3u {
        v = select(vec4<f32>(0.0), v, extra[idx] > vec4<f32>(0.0));
    }
    return v;
}
