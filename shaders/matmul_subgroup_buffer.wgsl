// B of matmul_subgroup.wgsl in a storage buffer (`b: array<vec4<f32>>`).

fn load_b(kk: u32, col4: u32) -> vec4<f32> {
    return b[kk * (dims.n / 4u) + col4];
}
