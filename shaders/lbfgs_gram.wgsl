// The L-BFGS two-loop recursion on Gram entries (engine kernel family `lbfgs_gram`): "vector-free L-BFGS"
// (Chen, Wang & Zhou 2014). One thread per problem; the basis is the ring of `basis.wgsl` with K = 2M + 1 slots:
// s_0 … s_{M−1} in slots 0 … M−1, y_0 … y_{M−1} in slots M … 2M−1, the gradient g in slot 2M, and its Gram matrix
// G (row-major, gram[b·K² + j·K + l]). The direction d = −H·g is returned as coefficients δ of the basis,
// d = Σ_j δ_j b_j, since every vector of the recursion is such a combination:
//   δ ← −e_g                                          (q = −g)
//   for i = newest … oldest:  α_i ← ρ_i Σ_j δ_j G[s_i][j] ;  δ[y_i] −= α_i
//   δ ← γ δ                                            (γ = s_jᵀy_j / y_jᵀy_j, newest accepted pair j; 1 if none)
//   for i = oldest … newest:  β_i ← ρ_i Σ_j δ_j G[y_i][j] ;  δ[s_i] += α_i − β_i
// ρ_i = 1 / s_iᵀy_i for a pair that passes the curvature test s_iᵀy_i > ε_c·‖s_i‖·‖y_i‖ with a finite ρ_i, else 0
// (the pair drops out of both loops). Writes δ to out[out_off + b·out_stride + 0 … K−1] and gᵀd = Σ_j δ_j G[g][j]
// at column K, and also at out[b·out_stride + q0] unless q0 is L2O_NONE (a column of the optimizer's scalar
// row, when `out` is that row). Problems whose status is not 0 are left untouched.
// pair_cols: copies what L-BFGS's pair test reads from G into the scalar row of each problem: for the pair in
// slot `head`, out[b·out_stride + q0] = s·y, [q1] = y·y, [q2] = s·s, and ‖g‖² at column L2O_G2.

struct Params { batch: u32, head: u32, count: u32, out_off: u32, out_stride: u32, q0: u32, q1: u32, q2: u32 }

@group(0) @binding(0) var<storage, read> pb: Params;
var<private> p: Params;
@group(0) @binding(1) var<storage, read_write> gram: array<Real>;
@group(0) @binding(2) var<storage, read_write> out: array<Real>;
// [curvature ε_c]
@group(0) @binding(3) var<storage, read> cst: array<Real>;
@group(0) @binding(4) var<storage, read> status: array<u32>;

const K: u32 = 2u * M + 1u;

fn g_at(g0: u32, j: u32, l: u32) -> Real { return gram[g0 + j * K + l]; }

@compute @workgroup_size(64)
fn direction(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let b = gid.x;
    if (b >= p.batch || status[b] != 0u) { return; }
    let g0 = b * K * K;
    let eps = cst[0];
    var rho: array<Real, M>;
    var alpha: array<Real, M>;
    var delta: array<Real, K>;
    for (var j = 0u; j < K; j = j + 1u) { delta[j] = 0.0; }
    delta[2u * M] = -1.0;
    var gamma: Real = 1.0;
    var have_gamma = false;
    // ρ of the pairs in use, newest first; γ from the newest accepted pair
    for (var t = 0u; t < p.count; t = t + 1u) {
        let i = (p.head + M - t) % M;
        let sy = g_at(g0, i, M + i);
        let ss = g_at(g0, i, i);
        let yy = g_at(g0, M + i, M + i);
        var r: Real = 0.0;
        if (sy > eps * sqrt(ss * yy)) {
            r = 1.0 / sy;
            if (!l2o_is_finite(r)) { r = 0.0; }
        }
        rho[i] = r;
        if (r != 0.0 && !have_gamma) {
            let gm = sy / yy;
            if (l2o_is_finite(gm) && gm > 0.0) {
                gamma = gm;
                have_gamma = true;
            }
        }
    }
    for (var t = 0u; t < p.count; t = t + 1u) {
        let i = (p.head + M - t) % M;
        var a: Real = 0.0;
        if (rho[i] != 0.0) {
            var sq: Real = 0.0;
            for (var j = 0u; j < K; j = j + 1u) { sq = sq + delta[j] * g_at(g0, i, j); }
            a = rho[i] * sq;
        }
        alpha[i] = a;
        delta[M + i] = delta[M + i] - a;
    }
    for (var j = 0u; j < K; j = j + 1u) { delta[j] = gamma * delta[j]; }
    for (var t = 0u; t < p.count; t = t + 1u) {
        let i = (p.head + M + 1u - p.count + t) % M;   // oldest … newest
        if (rho[i] != 0.0) {
            var yr: Real = 0.0;
            for (var j = 0u; j < K; j = j + 1u) { yr = yr + delta[j] * g_at(g0, M + i, j); }
            delta[i] = delta[i] + (alpha[i] - rho[i] * yr);
        }
    }
    let o = p.out_off + b * p.out_stride;
    var gd: Real = 0.0;
    for (var j = 0u; j < K; j = j + 1u) {
        out[o + j] = delta[j];
        gd = gd + delta[j] * g_at(g0, 2u * M, j);
    }
    out[o + K] = gd;
    if (p.q0 != L2O_NONE) { out[b * p.out_stride + p.q0] = gd; }
}

@compute @workgroup_size(64)
fn pair_cols(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let b = gid.x;
    if (b >= p.batch || status[b] != 0u) { return; }
    let g0 = b * K * K;
    let i = p.head;
    let r = b * p.out_stride;
    out[r + p.q0] = g_at(g0, i, M + i);
    out[r + p.q1] = g_at(g0, M + i, M + i);
    out[r + p.q2] = g_at(g0, i, i);
    out[r + L2O_G2] = g_at(g0, 2u * M, 2u * M);
}
