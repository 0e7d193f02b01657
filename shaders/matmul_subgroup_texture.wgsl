// Bindings of matmul_subgroup.wgsl with B in an rgba32float texture of
// (N / 4) x K texels, a copy of the buffer the host makes before the dispatch.
// lavapipe fetches texels for all SIMD lanes with vector gathers, where a
// storage-buffer load is a loop over the lanes.

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var b: texture_2d<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> extra: array<vec4<f32>>;

fn load_b(kk: u32, col4: u32) -> vec4<f32> {
    return textureLoad(b, vec2<u32>(col4, kk), 0);
}
