// Batched linear combinations (engine kernel family `lincomb`):
//     out_b ← [c_out·σ_b(col_out)·out_b] + Σ_{j<nterms} c_j·σ_b(col_j)·in_{j,b}
// where σ_b(col) = scal[b][col] (per-problem coefficients that stay on the device) or 1 when col = L2O_NONE, and the
// bracketed term is present only when `accumulate` = 1. Problems whose status is not 0 (converged, diverged,
// line search failed) are left untouched when use_status = 1, and so are problems with scal[b][mask_col] = 0.
// axpy (y ← y + a·x), scale (x ← a·x) and copy are special cases. An input must not alias `out` (use the
// accumulate term for out itself).

struct Params {
    n: u32, batch: u32, out_off: u32, out_stride: u32,
    nterms: u32, accumulate: u32, scal_stride: u32, mask_col: u32,
    out_col: u32, use_status: u32, aligned: u32, per: u32,
    in_off: vec4<u32>,
    in_stride: vec4<u32>,
    col: vec4<u32>,
}

@group(0) @binding(0) var<storage, read> pb: Params;
// A private copy of the parameters, made at the top of every entry point: reads of a storage buffer inside
// loops are gathers on the software adapter (and a uniform buffer would be recompiled per bind group there).
var<private> p: Params;
@group(0) @binding(1) var<storage, read> cst: array<Real>;
@group(0) @binding(2) var<storage, read_write> out: array<Real>;
@group(0) @binding(3) var<storage, read> in0: array<Real>;
@group(0) @binding(4) var<storage, read> in1: array<Real>;
@group(0) @binding(5) var<storage, read> in2: array<Real>;
@group(0) @binding(6) var<storage, read> in3: array<Real>;
@group(0) @binding(7) var<storage, read> scal: array<Real>;
@group(0) @binding(8) var<storage, read> status: array<u32>;
// out and the inputs again, four elements at a time (p.aligned = 1)
@group(0) @binding(9) var<storage, read_write> out4: array<vec4<Real>>;
@group(0) @binding(10) var<storage, read> in04: array<vec4<Real>>;
@group(0) @binding(11) var<storage, read> in14: array<vec4<Real>>;
@group(0) @binding(12) var<storage, read> in24: array<vec4<Real>>;
@group(0) @binding(13) var<storage, read> in34: array<vec4<Real>>;

fn sigma(b: u32, col: u32) -> Real {
    if (col == L2O_NONE) { return 1.0; }
    return scal[b * p.scal_stride + col];
}

// Two variants (constants LWG, LITEMS, LSEG of l2o_engine::kernels::lincomb::Layout): `grid` (GPUs) — one
// element per thread, neighbouring threads on neighbouring elements; `seg` (the software adapter) — each thread
// a contiguous run of LITEMS elements, four at a time when every operand offset and stride is a multiple of 4
// (p.aligned = 1). Every element is computed by the same expression in both: identical results.
@compute @workgroup_size(LWG)
fn lincomb_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = pb;
    // thread (b, r) of p.per threads per problem (problems packed into workgroups: at small n a workgroup per
    // problem would leave most of its threads idle)
    let lin = gid.x + gid.y * nwg.x * LWG;
    let b = lin / p.per;
    let r0 = lin % p.per;
    if (b >= p.batch) { return; }
    if (p.use_status == 1u && status[b] != 0u) { return; }
    if (p.mask_col != L2O_NONE && scal[b * p.scal_stride + p.mask_col] == 0.0) { return; }
    let c0 = cst[1] * sigma(b, p.col.x);
    let c1 = cst[2] * sigma(b, p.col.y);
    let c2 = cst[3] * sigma(b, p.col.z);
    let c3 = cst[4] * sigma(b, p.col.w);
    let co = cst[0] * sigma(b, p.out_col);
    let n = p.n;
    let nt = p.nterms;
    let acc = p.accumulate == 1u;
    let ob = p.out_off + b * p.out_stride;
    let i0b = p.in_off.x + b * p.in_stride.x;
    let i1b = p.in_off.y + b * p.in_stride.y;
    let i2b = p.in_off.z + b * p.in_stride.z;
    let i3b = p.in_off.w + b * p.in_stride.w;
    if (LSEG) {
        for (var r = r0; r * LITEMS < n; r = r + p.per) {
            let e0 = r * LITEMS;
            let e1 = min(e0 + LITEMS, n);
            var e = e0;
            if (p.aligned == 1u) {
                let full = (e1 - e0) / 4u;
                for (var q = 0u; q < full; q = q + 1u) {
                    let i = e0 + 4u * q;
                    var v = vec4<Real>(0.0);
                    if (acc) { v = co * out4[(ob + i) / 4u]; }
                    if (nt > 0u) { v = v + c0 * in04[(i0b + i) / 4u]; }
                    if (nt > 1u) { v = v + c1 * in14[(i1b + i) / 4u]; }
                    if (nt > 2u) { v = v + c2 * in24[(i2b + i) / 4u]; }
                    if (nt > 3u) { v = v + c3 * in34[(i3b + i) / 4u]; }
                    out4[(ob + i) / 4u] = v;
                }
                e = e0 + 4u * full;
            }
            for (; e < e1; e = e + 1u) {
                out[ob + e] = element(e, ob, i0b, i1b, i2b, i3b, co, c0, c1, c2, c3, acc, nt);
            }
        }
    } else {
        for (var i = r0; i < n; i = i + p.per) {
            out[ob + i] = element(i, ob, i0b, i1b, i2b, i3b, co, c0, c1, c2, c3, acc, nt);
        }
    }
}

fn element(i: u32, ob: u32, i0b: u32, i1b: u32, i2b: u32, i3b: u32, co: Real, c0: Real, c1: Real, c2: Real,
           c3: Real, acc: bool, nt: u32) -> Real {
    var v: Real = 0.0;
    if (acc) { v = co * out[ob + i]; }
    if (nt > 0u) { v = v + c0 * in0[i0b + i]; }
    if (nt > 1u) { v = v + c1 * in1[i1b + i]; }
    if (nt > 2u) { v = v + c2 * in2[i2b + i]; }
    if (nt > 3u) { v = v + c3 * in3[i3b + i]; }
    return v;
}
