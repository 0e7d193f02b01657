// The fused epilogue (EPILOGUE in matmul_common.wgsl) on one float of C, for
// the kernels whose `extra` binding holds floats: `acc` is C at index `idx`,
// in column `col`.
fn epilogue1(acc: f32, col: u32, idx: u32) -> f32 {
    var v = acc;
    if EPILOGUE == EPILOGUE_BIAS || EPILOGUE == EPILOGUE_BIAS_RELU {
        v += extra[col];
    }
    if EPILOGUE == EPILOGUE_BIAS_RELU {
        v = max(v, 0.0);
    }
    if EPILOGUE == EPILOGUE_RELU_MASK && extra[idx] <= 0.0 {
        v = 0.0;
    }
    return v;
}
