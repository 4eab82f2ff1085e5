// Fused L-BFGS (kernel family `lbfgs_fused`, after `lbfgs.wgsl`, whose bindings 0–4, parameters and per-problem
// state machines it shares): one thread per problem runs a whole line-search round — the inner product of the
// trial gradient with d, the line-search update, and on acceptance the new pair, its Gram rows, the pair test,
// the next direction by the two-loop recursion on Gram entries and the next trial point — so an L-BFGS
// iteration is the task's evaluation plus one dispatch per round. This is the vector-free schedule (Chen, Wang &
// Zhou 2014) with every pass over the n coordinates of a problem done by its own thread: the shape for small n
// (the launcher chooses it below `l2o_optim::lbfgs_fused::MAX_N`).
//
// Basis ring per problem b (as `basis.wgsl`): K = 2M + 1 vectors vecs[(b·K + j)·n + i] (`ring`) — s_0…s_{M−1} in
// slots 0…M−1, y_0…y_{M−1} in slots M…2M−1, g in slot 2M — and G = gram[b·K² + j·K + l]. (Interleaving the
// problems, vecs[(j·n + i)·B + b], was measured 2.8× slower on the software adapter: each thread's run of
// coordinates is what its cache lines serve there.) Every Gram entry is summed
// from the stored vectors in coordinate order, in blocks of BLK coordinates (a block's sum, then the blocks in
// order: the rounding error grows with BLK + n/BLK, not n). ρ_i and γ come from the scalar row (the pair test of
// `pair_update_at`, the same decision the two-loop path makes), never from a second test on G.
//
// Generated per M by the launcher (the `defines`): M, K, FWG (workgroup size) and the K-unrolled passes
// `accept_pass` and `combine_pass` (rule 1 of the software adapter: constant indices keep values in registers).
// p.slot: the ring slot the accepted pair goes to; p.q0: the pairs in use after it is inserted; p.n: n.

@group(0) @binding(5) var<storage, read_write> vecs: array<Real>;
@group(0) @binding(6) var<storage, read_write> gram: array<Real>;
@group(0) @binding(7) var<storage, read_write> theta: array<Real>;
@group(0) @binding(8) var<storage, read_write> grad: array<Real>;
@group(0) @binding(9) var<storage, read_write> theta_t: array<Real>;
@group(0) @binding(10) var<storage, read> grad_t: array<Real>;
@group(0) @binding(11) var<storage, read_write> dir: array<Real>;
// 1 once a problem has accepted its step in this iteration (cleared by the host before every iteration): its
// later rounds of the same iteration leave it alone.
@group(0) @binding(12) var<storage, read_write> parked: array<u32>;

const BLK: u32 = 32u;
const KK: u32 = K * K;

fn ring(j: u32, i: u32, b: u32) -> u32 { return (b * K + j) * p.n + i; }

fn g_at(b: u32, j: u32, l: u32) -> Real { return gram[b * KK + j * K + l]; }

// g_tᵀd, blocked.
fn gt_dot_d(b: u32) -> Real {
    let n = p.n;
    let o = b * n;
    var tot: Real = 0.0;
    for (var i0 = 0u; i0 < n; i0 = i0 + BLK) {
        let i1 = min(i0 + BLK, n);
        var acc: Real = 0.0;
        for (var i = i0; i < i1; i = i + 1u) { acc = acc + grad_t[o + i] * dir[o + i]; }
        tot = tot + acc;
    }
    return tot;
}

// θ_t ← θ + t·d.
fn trial_pass(b: u32, t: Real) {
    let o = b * p.n;
    for (var i = 0u; i < p.n; i = i + 1u) { theta_t[o + i] = theta[o + i] + t * dir[o + i]; }
}

// The direction of problem b from G (newest pair in slot `head`, `count` pairs), exactly the two-loop recursion
// of `lbfgs.rs` on coefficients δ of the basis (d = Σ_j δ_j v_j), then the line-search start (`ls_begin_at`: the
// reset to −g when d is no descent direction, the first trial step) and the first trial point.
fn direction_at(b: u32, head: u32, count: u32) {
    let s = b * p.stride;
    var delta: array<Real, K>;
    for (var j = 0u; j < K; j = j + 1u) { delta[j] = 0.0; }
    delta[2u * M] = -1.0;
    var alpha: array<Real, M>;
    for (var t = 0u; t < count; t = t + 1u) {
        let i = (head + M - t) % M;
        let rho = scal[s + RHO0 + i];
        var a: Real = 0.0;
        if (rho != 0.0) {
            var sq: Real = 0.0;
            for (var j = 0u; j < K; j = j + 1u) { sq = sq + delta[j] * g_at(b, i, j); }
            a = rho * sq;
        }
        alpha[i] = a;
        delta[M + i] = delta[M + i] - a;
    }
    let gamma = scal[s + GAMMA];
    for (var j = 0u; j < K; j = j + 1u) { delta[j] = gamma * delta[j]; }
    for (var t = 0u; t < count; t = t + 1u) {
        let i = (head + M + 1u - count + t) % M;   // oldest … newest
        let rho = scal[s + RHO0 + i];
        if (rho != 0.0) {
            var yr: Real = 0.0;
            for (var j = 0u; j < K; j = j + 1u) { yr = yr + delta[j] * g_at(b, M + i, j); }
            delta[i] = delta[i] + (alpha[i] - rho * yr);
        }
    }
    var gd: Real = 0.0;
    for (var j = 0u; j < K; j = j + 1u) { gd = gd + delta[j] * g_at(b, 2u * M, j); }
    scal[s + GD] = gd;
    ls_begin_at(b);
    // d ← DA·d + DB·g, on the coefficients
    let da = scal[s + DA];
    for (var j = 0u; j < K; j = j + 1u) { delta[j] = da * delta[j]; }
    delta[2u * M] = delta[2u * M] + scal[s + DB];
    combine_pass(b, delta, scal[s + T]);
}

// Before the first iteration: g into its ring slot, its Gram entry (the other vectors are still zero), the first
// direction and trial point.
@compute @workgroup_size(FWG)
fn fused_start(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let b = gid.x;
    if (b >= p.batch || status[b] != 0u) { return; }
    let n = p.n;
    let o = b * n;
    var tot: Real = 0.0;
    for (var i0 = 0u; i0 < n; i0 = i0 + BLK) {
        let i1 = min(i0 + BLK, n);
        var acc: Real = 0.0;
        for (var i = i0; i < i1; i = i + 1u) {
            let g = grad[o + i];
            vecs[ring(2u * M, i, b)] = g;
            acc = acc + g * g;
        }
        tot = tot + acc;
    }
    gram[b * KK + 2u * M * K + 2u * M] = tot;
    direction_at(b, 0u, 0u);
}

// One line-search round after the task evaluated f and ∇f at θ_t (scal[FT], grad_t).
@compute @workgroup_size(FWG)
fn fused_round(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let b = gid.x;
    if (b >= p.batch || status[b] != 0u || parked[b] != 0u) { return; }
    let s = b * p.stride;
    if (scal[s + PENDING] == 0.0) { return; }
    scal[s + GDT] = gt_dot_d(b);
    ls_update_at(b);
    if (status[b] != 0u) { return; }
    if (scal[s + PENDING] != 0.0) {
        trial_pass(b, scal[s + T]);
        return;
    }
    parked[b] = 1u;
    accept_at(b, p.slot, p.q0);
}

// An accepted step: s, y, g into the ring (the pair into `slot`), θ ← θ_t, g ← g_t, the three Gram rows, the
// pair test, the next direction with `count` pairs and its trial point.
fn accept_at(b: u32, slot: u32, count: u32) {
    let s = b * p.stride;
    accept_pass(b, slot);
    scal[s + SY] = g_at(b, slot, M + slot);
    scal[s + YY] = g_at(b, M + slot, M + slot);
    scal[s + SS] = g_at(b, slot, slot);
    scal[s + L2O_G2] = g_at(b, 2u * M, 2u * M);
    pair_update_at(b, slot);
    direction_at(b, slot, count);
}

