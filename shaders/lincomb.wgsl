// Batched linear combinations (engine kernel family `lincomb`):
//     out_b ← [c_out·σ_b(col_out)·out_b] + Σ_{j<nterms} c_j·σ_b(col_j)·in_{j,b}
// where σ_b(col) = scal[b][col] (per-problem coefficients that stay on the device) or 1 when col = NONE, and the
// bracketed term is present only when `accumulate` = 1. Problems whose status is not 0 (converged, diverged,
// line search failed) are left untouched when use_status = 1, and so are problems with scal[b][mask_col] = 0.
// axpy (y ← y + a·x), scale (x ← a·x) and copy are special cases. An input must not alias `out` (use the
// accumulate term for out itself).

struct Params {
    n: u32, batch: u32, out_off: u32, out_stride: u32,
    nterms: u32, accumulate: u32, scal_stride: u32, mask_col: u32,
    out_col: u32, use_status: u32, q0: u32, q1: u32,
    in_off: vec4<u32>,
    in_stride: vec4<u32>,
    col: vec4<u32>,
}

@group(0) @binding(0) var<storage, read> p: Params;
@group(0) @binding(1) var<storage, read> cst: array<Real>;
@group(0) @binding(2) var<storage, read_write> out: array<Real>;
@group(0) @binding(3) var<storage, read> in0: array<Real>;
@group(0) @binding(4) var<storage, read> in1: array<Real>;
@group(0) @binding(5) var<storage, read> in2: array<Real>;
@group(0) @binding(6) var<storage, read> in3: array<Real>;
@group(0) @binding(7) var<storage, read> scal: array<Real>;
@group(0) @binding(8) var<storage, read> status: array<u32>;

fn sigma(b: u32, col: u32) -> Real {
    if (col == NONE) { return 1.0; }
    return scal[b * p.scal_stride + col];
}

@compute @workgroup_size(256)
fn lincomb_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = gid.y;
    if (b >= p.batch) { return; }
    if (p.use_status == 1u && status[b] != 0u) { return; }
    if (p.mask_col != NONE && scal[b * p.scal_stride + p.mask_col] == 0.0) { return; }
    let c0 = cst[1] * sigma(b, p.col.x);
    let c1 = cst[2] * sigma(b, p.col.y);
    let c2 = cst[3] * sigma(b, p.col.z);
    let c3 = cst[4] * sigma(b, p.col.w);
    let co = cst[0] * sigma(b, p.out_col);
    let step = nwg.x * 256u;
    for (var i = gid.x; i < p.n; i = i + step) {
        var v: Real = 0.0;
        if (p.accumulate == 1u) { v = co * out[p.out_off + b * p.out_stride + i]; }
        if (p.nterms > 0u) { v = v + c0 * in0[p.in_off.x + b * p.in_stride.x + i]; }
        if (p.nterms > 1u) { v = v + c1 * in1[p.in_off.y + b * p.in_stride.y + i]; }
        if (p.nterms > 2u) { v = v + c2 * in2[p.in_off.z + b * p.in_stride.z + i]; }
        if (p.nterms > 3u) { v = v + c3 * in3[p.in_off.w + b * p.in_stride.w + i]; }
        out[p.out_off + b * p.out_stride + i] = v;
    }
}
