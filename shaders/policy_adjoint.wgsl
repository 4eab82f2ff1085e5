
// The reverse of the L-BFGS-π policy at one step (seed 003 §4; `l2o_meta::policy::adjoint` has the equations),
// appended to the `policy` family and to `policy_fused`, which both declare `cst`, `scal` and `dphi` ([B][len φ]).
// rb: the step's record (G at rb..rb+16, then R_P, R_T); lt = λt = ⟨λS, d_k⟩. λτ = t·λt, λp = λτ inside the clip
// (0 on an active bound); with u0, u1, u2 recomputed by `policy_net`: λu1 = λp u2/‖u2‖², λu2 = λp (u1 − 2p u2)/‖u2‖²,
// ∂φ += ..., λu0 = W1ᵀλu1 + W2ᵀλu2, λG_ij = σ_ij λu0_ij / X_ij (0 at the ε floor). Returns CD_j = λG_0j + λG_j0
// (the d row and column) and CS_j = λG_2j + λG_j2 (the s_{k−1} row and column).
struct PolicyAdjoint {
    cd: array<Real, 4>,
    cs: array<Real, 4>,
}

fn policy_adjoint(rb: u32, lt: Real, b: u32) -> PolicyAdjoint {
    var out: PolicyAdjoint;
    for (var j = 0u; j < 4u; j++) { out.cd[j] = 0.0; out.cs[j] = 0.0; }
    let pp = scal[rb + 16u];
    if (!(pp > cst[4] && pp < cst[5])) { return out; }
    let lp = scal[rb + 18u] * lt;
    var o = policy_net(rb);
    let nh = u32(cst[7]);
    let w1 = 8u;
    let b1 = w1 + 16u * nh;
    let w2 = b1 + nh;
    let b2 = w2 + 16u * nh;
    let len = 2u * (16u * nh + nh);
    let q = o.q;
    var lu0: array<Real, 16>;
    for (var k = 0u; k < 16u; k++) { lu0[k] = 0.0; }
    let ob = b * len;
    for (var r = 0u; r < nh; r++) {
        let l1 = lp * o.u2[r] / q;
        let l2 = lp * (o.u1[r] - 2.0 * pp * o.u2[r]) / q;
        dphi[ob + b1 - 8u + r] += l1;
        dphi[ob + b2 - 8u + r] += l2;
        for (var k = 0u; k < 16u; k++) {
            dphi[ob + 16u * r + k] += l1 * o.u0[k];
            dphi[ob + w2 - 8u + 16u * r + k] += l2 * o.u0[k];
            lu0[k] += cst[w1 + 16u * r + k] * l1 + cst[w2 + 16u * r + k] * l2;
        }
    }
    var lg: array<Real, 16>;
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            let v = o.x[4u * i + j];
            var l: Real = 0.0;
            if (v > cst[6]) { l = lu0[4u * i + j] / v; if (i < j) { l = -l; } }
            lg[4u * i + j] = l;
        }
    }
    for (var j = 0u; j < 4u; j++) {
        out.cd[j] = lg[j] + lg[4u * j];
        out.cs[j] = lg[8u + j] + lg[4u * j + 2u];
    }
    return out;
}
