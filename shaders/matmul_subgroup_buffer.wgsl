// Bindings of matmul_subgroup.wgsl with B in a storage buffer.

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> extra: array<vec4<f32>>;

fn load_b(kk: u32, col4: u32) -> vec4<f32> {
    return b[kk * (dims.n / 4u) + col4];
}
