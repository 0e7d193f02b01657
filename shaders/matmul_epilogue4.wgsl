// The fused epilogue (EPILOGUE in matmul_common.wgsl) on a vec4 of C, for the
// kernels whose `extra` binding holds vec4s: `v` is C at vec4 index `idx`, in
// vec4 column `col4`.
fn epilogue4(acc: vec4<f32>, col4: u32, idx: u32) -> vec4<f32> {
    var v = acc;
    if EPILOGUE == EPILOGUE_BIAS || EPILOGUE == EPILOGUE_BIAS_RELU {
        v += extra[col4];
    }
    if EPILOGUE == EPILOGUE_BIAS_RELU {
        v = max(v, vec4<f32>(0.0));
    }
    if EPILOGUE == EPILOGUE_RELU_MASK {
        v = select(vec4<f32>(0.0), v, extra[idx] > vec4<f32>(0.0));
    }
    return v;
}
