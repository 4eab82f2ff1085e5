// L-BFGS-π meta-training (engine kernel family `policy`): per-problem scalar work of the trajectory record and
// of the reverse sweep (crates/l2o-meta/src/policy.rs has the equations, `policy_gpu.rs` the launcher). One thread
// per problem; the vector work is done by the `reduce` and `lincomb` kernels. Every column index comes in the
// params, so this file knows no layout beyond the record fields below.
//
// Step record at column rb (of scal[b][·]): the Gram matrix G (16, row-major), p, τ, t, NORESET (1: d_k came
// from the two-loop, 0: reset to −g), GAM (γ used at step k), GFROM (step index of γ's pair, −1: none), YY (y_kᵀy_k)
// and GACC (Σ over later steps of λγ / y_kᵀy_k: the γ part of λs_k).
const R_P: u32 = 16u;   const R_TAU: u32 = 17u;  const R_T: u32 = 18u;   const R_NORESET: u32 = 19u;
const R_GAM: u32 = 20u; const R_GFROM: u32 = 21u; const R_YY: u32 = 22u; const R_GACC: u32 = 23u;

struct Params {
    batch: u32, stride: u32, k: u32, rb: u32,
    c0: u32, c1: u32, c2: u32, c3: u32,
    c4: u32, c5: u32, c6: u32, c7: u32,
}

@group(0) @binding(0) var<storage, read> pb: Params;
// A private copy of the parameters, made at the top of every entry point: reads of a storage buffer inside
// loops are gathers on the software adapter (and a uniform buffer would be recompiled per bind group there).
var<private> p: Params;
// [c1, c2, t_max, ε_c, τm, τM, ε, n_h, W1 (n_h×16), b1, W2 (n_h×16), b2] (the L-BFGS constants buffer)
@group(0) @binding(1) var<storage, read> cst: array<Real>;
@group(0) @binding(2) var<storage, read_write> scal: array<Real>;
// ∂L/∂φ per problem, [B][len φ] (summed over problems on the host: no float atomics, reproducible)
@group(0) @binding(3) var<storage, read_write> dphi: array<Real>;

// Forward, after `policy_step`: copy G (c0..c0+16), p, τ (c0+16, c0+17), t (c1), the reset flag (DB column c2:
// 0 = no reset), γ (c3) and the live γ source (c4) into the record of step k at rb.
@compute @workgroup_size(64)
fn record_pre(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let b = gid.x;
    if (b >= p.batch) { return; }
    let s = b * p.stride;
    for (var i = 0u; i < 18u; i++) { scal[s + p.rb + i] = scal[s + p.c0 + i]; }
    scal[s + p.rb + R_T] = scal[s + p.c1];
    scal[s + p.rb + R_NORESET] = select(Real(0.0), Real(1.0), scal[s + p.c2] == 0.0);
    scal[s + p.rb + R_GAM] = scal[s + p.c3];
    scal[s + p.rb + R_GFROM] = scal[s + p.c4];
}

// Forward, after `pair_update` of step k: ρ_k at c0; y_kᵀy_k at c1; the live γ source at c4 becomes k when the
// pair was accepted; GACC of the record starts at 0.
@compute @workgroup_size(64)
fn record_post(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let b = gid.x;
    if (b >= p.batch) { return; }
    let s = b * p.stride;
    if (scal[s + p.c0] != 0.0) { scal[s + p.c4] = Real(p.k); }
    scal[s + p.rb + R_YY] = scal[s + p.c1];
    scal[s + p.rb + R_GACC] = 0.0;
}

// Reverse of the policy at step k for λt = ⟨λS, d_k⟩ (column c0), `policy_adjoint` (shaders/policy_adjoint.wgsl):
// writes CD_j = λG_0j + λG_j0 at c1..c1+4 (the d row and column) and CS_j = λG_2j + λG_j2 at c2..c2+4 (the s_{k−1}
// row and column), ∂φ into this problem's row of dphi.
@compute @workgroup_size(64)
fn rev_policy(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let b = gid.x;
    if (b >= p.batch) { return; }
    let s = b * p.stride;
    let a = policy_adjoint(s + p.rb, scal[s + p.c0], b);
    for (var j = 0u; j < 4u; j++) {
        scal[s + p.c1 + j] = a.cd[j];
        scal[s + p.c2 + j] = a.cs[j];
    }
}

// Second loop of the two-loop, reversed, pair j: from C = ⟨λr, s_j⟩ (c0), ρ_j (c1), β_j (c2): λα_j = C → c3,
// N = −C ρ_j → c4 (λr += N y_j), M = C β_j ρ_j → c5 (the λρ_j part of λs_j along y_j).
@compute @workgroup_size(64)
fn rev_loop2(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let b = gid.x;
    if (b >= p.batch) { return; }
    let s = b * p.stride;
    let c = scal[s + p.c0];
    let rho = scal[s + p.c1];
    scal[s + p.c3] = c;
    scal[s + p.c4] = -c * rho;
    scal[s + p.c5] = c * scal[s + p.c2] * rho;
}

// γ of step k (record rb), from λγ = ⟨λr, q_c⟩ (c0): GACC of the pair h that γ came from += λγ / y_hᵀy_h
// (record base of step h = c1 + h·c2). Nothing when d_k was reset or γ = 1 (no pair yet).
@compute @workgroup_size(64)
fn rev_gamma(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let b = gid.x;
    if (b >= p.batch) { return; }
    let s = b * p.stride;
    let h = scal[s + p.rb + R_GFROM];
    if (scal[s + p.rb + R_NORESET] == 0.0 || h < 0.0) { return; }
    let hb = s + p.c1 + u32(h) * p.c2;
    scal[hb + R_GACC] += scal[s + p.c0] / scal[hb + R_YY];
}

// First loop reversed, pair j: λα_j (c1) −= Z = ⟨λq, y_j⟩ (c0); with ρ_j (c2), α_j (c3): P = λα_j ρ_j → c4
// (λs_j += P q_j, λq += P s_j), MQ = −λα_j α_j ρ_j → c5 (the λρ_j part along y_j).
@compute @workgroup_size(64)
fn rev_loop1(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let b = gid.x;
    if (b >= p.batch) { return; }
    let s = b * p.stride;
    let la = scal[s + p.c1] - scal[s + p.c0];
    let rho = scal[s + p.c2];
    scal[s + p.c1] = la;
    scal[s + p.c4] = la * rho;
    scal[s + p.c5] = -la * scal[s + p.c3] * rho;
}
