
// The L-BFGS-π policy network (seed 003 §4, `l2o_optim::step_policy`), appended to the `lbfgs` family
// (`policy_step`) and to the `policy` family (`rev_policy`), which both bind `cst` and `scal`.
// cst[4..8] = τm, τM, ε, n_h; φ = cst[8..]: W1 (n_h×16, row-major), b1, W2 (n_h×16), b2.
// From the Gram matrix G of [d, g, s, y] at scal[g0..g0+16] (row-major): X = σ⊙G with σ = −1 above the
// diagonal, u0 = ln(max(X, ε)), u1 = W1 u0 + b1, u2 = W2 u0 + b2, q = ‖u2‖², p = u1ᵀu2 / q.
struct PolicyNet {
    x: array<Real, 16>,
    u0: array<Real, 16>,
    u1: array<Real, 16>,
    u2: array<Real, 16>,
    q: Real,
    p: Real,
}

fn policy_net(g0: u32) -> PolicyNet {
    var o: PolicyNet;
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            var v = scal[g0 + 4u * i + j];
            if (i < j) { v = -v; }
            o.x[4u * i + j] = v;
            o.u0[4u * i + j] = l2o_log(max(v, cst[6]));
        }
    }
    let nh = u32(cst[7]);
    let w1 = 8u;
    let b1 = w1 + 16u * nh;
    let w2 = b1 + nh;
    let b2 = w2 + 16u * nh;
    var num: Real = 0.0;
    for (var r = 0u; r < nh; r++) {
        var a = cst[b1 + r];
        var c = cst[b2 + r];
        for (var k = 0u; k < 16u; k++) {
            a += cst[w1 + 16u * r + k] * o.u0[k];
            c += cst[w2 + 16u * r + k] * o.u0[k];
        }
        o.u1[r] = a;
        o.u2[r] = c;
        num += a * c;
        o.q += c * c;
    }
    o.p = num / o.q;
    return o;
}
