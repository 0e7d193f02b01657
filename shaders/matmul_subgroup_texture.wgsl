// B of matmul_subgroup.wgsl in an rgba32float texture of (N / 4) x K texels,
// a copy of the buffer the host makes before the dispatch. lavapipe fetches
// texels for all SIMD lanes with vector gathers, where a storage-buffer load
// is a loop over the lanes.

fn load_b(kk: u32, col4: u32) -> vec4<f32> {
    return textureLoad(b, vec2<u32>(col4, kk), 0);
}
