// Hilbert LSTM scalar kernels (engine kernel family `hlstm`): the per-problem cell of seed 000 as designed in
// docs/hlstm.md — features of the Gram matrix, the L-BFGS two-loop in coefficient space (cell 2), the scalar
// network, the output coefficients — and its reverse mode. One thread per problem; the vector work (Gram
// matrices, cross products, linear combinations) is done by the `hilbert` kernels. This file is a line-by-line
// transcription of `crates/l2o-meta/src/hlstm.rs` (`cell_forward`, `cell_adjoint`), the f64 reference it is
// tested against.
//
// Compile-time constants (defines): M memory pairs, K = 2M+3 basis vectors [g, s_1..s_M, y_1..y_M, c, h],
// KK = K², QH = M·K, NF features, NH hidden units, KC candidate coefficients, NO outputs, CELL (1 or 2),
// PL = len φ, RW = K² + 4 (record row), NR = (M+2)(K+3) (reverse combine coefficients).
//
// Buffers: rec [B][T][RW] (G of step t, then the state entering it: γ, hasp, ν0), coef [B][T][3K] (κ_u, κ_c', κ_h'
// of step t: the forward `combine` coefficients), state [B][4] (γ, hasp, ν0, f_start), pk [B][3K] (⟨λu, V_j⟩,
// ⟨λc', V_j⟩, ⟨λh', V_j⟩), rcoef [B][NR] (the reverse `combine` coefficients), dphi [B][PL], lrec [B][2][T+1]
// (f_t, then the loss weights (w_t/B)·ℓ'(f_t)).

struct Params {
    batch: u32, t: u32, tsteps: u32, rec_stride: u32,
    coef_stride: u32, lrec_stride: u32, q0: u32, q1: u32,
}

@group(0) @binding(0) var<storage, read> pb: Params;
// A private copy of the parameters, made at the top of every entry point: reads of a storage buffer inside
// loops are gathers on the software adapter (and a uniform buffer would be recompiled per bind group there).
var<private> p: Params;
@group(0) @binding(1) var<storage, read> phi: array<Real>;
// [ε_c, loss kind (0 sum, 1 log), log floor, 1/B, w_1..w_T]
@group(0) @binding(2) var<storage, read> cst: array<Real>;
@group(0) @binding(3) var<storage, read_write> rec: array<Real>;
@group(0) @binding(4) var<storage, read_write> coef: array<Real>;
@group(0) @binding(5) var<storage, read_write> state: array<Real>;
@group(0) @binding(6) var<storage, read_write> pk: array<Real>;
@group(0) @binding(7) var<storage, read_write> rcoef: array<Real>;
@group(0) @binding(8) var<storage, read_write> dphi: array<Real>;
@group(0) @binding(9) var<storage, read_write> lrec: array<Real>;

const TAU_BOUND: f32 = 3.0;
const LOG_SCALE: f32 = 10.0;
const PSI_SERIES: f32 = 1e-3;
// φ offsets
const OW1: u32 = 0u;
const OB1: u32 = NH * NF;
const OW2: u32 = OB1 + NH;
const OB2: u32 = OW2 + NO * NH;
const RES0: u32 = 3u + KC;
const TAU: u32 = NO - 1u;
const IG: u32 = 0u;
const IC: u32 = 2u * M + 1u;
const IH: u32 = 2u * M + 2u;

fn si(i: u32) -> u32 { return 1u + i; }
fn yi(i: u32) -> u32 { return 1u + M + i; }

var<private> gb: u32;
fn G(i: u32, j: u32) -> Real { return rec[gb + i * K + j]; }
fn gdot(row: u32, v: ptr<private, array<Real, K>>) -> Real {
    var s: Real = 0.0;
    for (var l = 0u; l < K; l++) { s = s + G(row, l) * (*v)[l]; }
    return s;
}
fn gdot_h(row: u32, h: ptr<private, array<Real, QH>>, i: u32) -> Real {
    var s: Real = 0.0;
    for (var l = 0u; l < K; l++) { s = s + G(row, l) * (*h)[i * K + l]; }
    return s;
}
fn quad(v: ptr<private, array<Real, K>>) -> Real {
    var s: Real = 0.0;
    for (var i = 0u; i < K; i++) { s = s + (*v)[i] * gdot(i, v); }
    return s;
}
fn sigmoid(x: Real) -> Real { return 1.0 / (1.0 + l2o_exp(-x)); }
// λ(x) = tanh(ln x / LOG_SCALE)
fn logf(x: Real) -> Real { return l2o_tanh(l2o_log(x) / Real(LOG_SCALE)); }
fn logd(v: Real) -> Real { return (1.0 - v * v) / Real(LOG_SCALE); }

// entering state
var<private> s_gamma: Real;
var<private> s_hasp: bool;
var<private> s_nu0: Real;
// cell evaluation (names as in hlstm.rs CellEval)
var<private> nu: array<Real, K>;
var<private> mask: array<Real, K>;
var<private> acc: array<bool, M>;
var<private> rho: array<Real, M>;
var<private> gamma: Real;
var<private> gfrom: i32;
var<private> hasp: bool;
var<private> lref: Real;
var<private> nu0: Real;
var<private> q_hist: array<Real, QH>;
var<private> r_hist: array<Real, QH>;
var<private> alpha: array<Real, M>;
var<private> qv: array<Real, K>;
var<private> qc: array<Real, K>;
var<private> rr: array<Real, K>;
var<private> reset: bool;
var<private> sigma: Real;
var<private> delta: array<Real, K>;
var<private> gdelta: array<Real, K>;
var<private> dn: Real;
var<private> z: array<Real, NF>;
var<private> av: array<Real, NH>;
var<private> ov: array<Real, NO>;
var<private> fg: Real;
var<private> ig: Real;
var<private> og: Real;
var<private> tau: Real;
var<private> ee: Real;
var<private> khat: array<Real, K>;
var<private> kc: array<Real, K>;
var<private> qn: Real;
var<private> psi_v: Real;
var<private> psi_d: Real;
var<private> kh: array<Real, K>;
var<private> res: array<Real, K>;
var<private> ku: array<Real, K>;

fn psi(q: Real) {
    if (q < Real(PSI_SERIES)) {
        psi_v = 1.0 + q * (-1.0 / 3.0 + q * (2.0 / 15.0 + q * (-17.0 / 315.0 + q * (62.0 / 2835.0))));
        psi_d = -1.0 / 3.0 + q * (4.0 / 15.0 + q * (-51.0 / 315.0 + q * (248.0 / 2835.0)));
        return;
    }
    let x = sqrt(q);
    let t = l2o_tanh(x);
    psi_v = t / x;
    psi_d = (x * (1.0 - t * t) - t) / (2.0 * x * x * x);
}

fn lf_on(x: Real, on: bool) -> Real {
    if (on && x > 0.0 && l2o_is_finite(x)) { return logf(x); }
    return 0.0;
}

// The cell on G at rec[gb ..] with the entering state s_*; problem b (for φ nothing per problem).
fn cell() {
    let eps_c = cst[0];
    for (var j = 0u; j < K; j++) { nu[j] = sqrt(max(G(j, j), 0.0)); }
    for (var i = 0u; i < M; i++) {
        let sy = G(si(i), yi(i));
        acc[i] = l2o_is_finite(sy) && G(yi(i), yi(i)) > 0.0 && sy > eps_c * nu[si(i)] * nu[yi(i)];
        rho[i] = select(Real(0.0), 1.0 / sy, acc[i]);
    }
    for (var j = 0u; j < K; j++) { mask[j] = 0.0; }
    mask[IG] = select(Real(0.0), Real(1.0), nu[IG] > 0.0);
    mask[IC] = select(Real(0.0), Real(1.0), nu[IC] > 0.0);
    mask[IH] = select(Real(0.0), Real(1.0), nu[IH] > 0.0);
    gfrom = -1;
    for (var i = 0u; i < M; i++) {
        let a = select(Real(0.0), Real(1.0), acc[i]);
        mask[si(i)] = a * select(Real(0.0), Real(1.0), nu[si(i)] > 0.0);
        mask[yi(i)] = a * select(Real(0.0), Real(1.0), nu[yi(i)] > 0.0);
        if (acc[i] && gfrom < 0) { gfrom = i32(i); }
    }
    gamma = s_gamma;
    if (gfrom >= 0) {
        let h = u32(gfrom);
        gamma = G(si(h), yi(h)) / G(yi(h), yi(h));
    }
    hasp = s_hasp || gfrom >= 0;
    let nug = nu[IG];
    lref = select(min(nug, 1.0), gamma * nug, hasp);
    nu0 = select(nug, s_nu0, s_nu0 > 0.0);
    if (CELL == 2u) {
        for (var j = 0u; j < K; j++) { qv[j] = 0.0; }
        qv[IG] = -1.0;
        for (var i = 0u; i < M; i++) {
            alpha[i] = 0.0;
            if (acc[i]) {
                for (var j = 0u; j < K; j++) { q_hist[i * K + j] = qv[j]; }
                alpha[i] = rho[i] * gdot(si(i), &qv);
                qv[yi(i)] = qv[yi(i)] - alpha[i];
            }
        }
        for (var j = 0u; j < K; j++) { qc[j] = qv[j]; rr[j] = gamma * qv[j]; }
        for (var ii = 0u; ii < M; ii++) {
            let i = M - 1u - ii;
            if (acc[i]) {
                for (var j = 0u; j < K; j++) { r_hist[i * K + j] = rr[j]; }
                let beta = rho[i] * gdot(yi(i), &rr);
                rr[si(i)] = rr[si(i)] + alpha[i] - beta;
            }
        }
        let gd = gdot(IG, &rr);
        reset = !(gd < 0.0 && l2o_is_finite(gd));
        if (reset) {
            for (var j = 0u; j < K; j++) { rr[j] = 0.0; }
            rr[IG] = -1.0;
        }
        sigma = 1.0;
        if (!hasp && nug != 0.0) { sigma = min(1.0 / nug, 1.0); }
        for (var j = 0u; j < K; j++) { delta[j] = sigma * rr[j]; }
        for (var j = 0u; j < K; j++) { gdelta[j] = gdot(j, &delta); }
        dn = sqrt(max(quad(&delta), 0.0));
    }
    // features
    var f = 0u;
    for (var i = 0u; i < K; i++) {
        for (var j = i + 1u; j < K; j++) {
            var v: Real = 0.0;
            if (mask[i] * mask[j] > 0.0) { v = G(i, j) / (nu[i] * nu[j]); }
            z[f] = v;
            f++;
        }
    }
    z[f] = lf_on(nug / nu0, nug > 0.0 && nu0 > 0.0);
    f++;
    for (var i = 0u; i < M; i++) {
        z[f] = lf_on(nu[si(i)] / lref, mask[si(i)] > 0.0 && lref > 0.0);
        z[f + 1u] = lf_on(nu[yi(i)] / nug, mask[yi(i)] > 0.0 && nug > 0.0);
        f += 2u;
    }
    z[f] = l2o_tanh(nu[IC]);
    z[f + 1u] = nu[IH];
    f += 2u;
    for (var i = 0u; i < M; i++) { z[f] = select(Real(0.0), Real(1.0), acc[i]); f++; }
    z[f] = select(Real(0.0), Real(1.0), hasp);
    f++;
    if (CELL == 2u) {
        for (var j = 0u; j < K; j++) {
            var v: Real = 0.0;
            if (mask[j] > 0.0 && dn > 0.0) { v = gdelta[j] / (dn * nu[j]); }
            z[f] = v;
            f++;
        }
        z[f] = lf_on(dn / lref, dn > 0.0 && lref > 0.0);
        z[f + 1u] = select(Real(0.0), Real(1.0), !reset);
    }
    // network
    for (var r = 0u; r < NH; r++) {
        var s = phi[OB1 + r];
        for (var j = 0u; j < NF; j++) { s = s + phi[OW1 + r * NF + j] * z[j]; }
        av[r] = l2o_tanh(s);
    }
    for (var o = 0u; o < NO; o++) {
        var s = phi[OB2 + o];
        for (var j = 0u; j < NH; j++) { s = s + phi[OW2 + o * NH + j] * av[j]; }
        ov[o] = s;
    }
    fg = sigmoid(ov[0]);
    ig = sigmoid(ov[1]);
    og = sigmoid(ov[2]);
    tau = Real(TAU_BOUND) * l2o_tanh(ov[TAU] / Real(TAU_BOUND));
    ee = l2o_exp(tau);
    // output coefficients
    for (var j = 0u; j < K; j++) {
        khat[j] = 0.0;
        if (mask[j] > 0.0) { khat[j] = ov[3u + j] / nu[j]; }
    }
    if (CELL == 2u && dn > 0.0) {
        for (var j = 0u; j < K; j++) { khat[j] = khat[j] + ov[3u + K] * delta[j] / dn; }
    }
    for (var j = 0u; j < K; j++) { kc[j] = ig * khat[j]; }
    kc[IC] = kc[IC] + fg;
    qn = max(quad(&kc), 0.0);
    psi(qn);
    for (var j = 0u; j < K; j++) {
        kh[j] = og * psi_v * kc[j];
        res[j] = ov[RES0] * kh[j];
    }
    for (var r = 1u; r < 2u * M + 2u; r++) {
        let j = r - 1u;
        if (mask[j] > 0.0) { res[j] = res[j] + ov[RES0 + r] / nu[j]; }
    }
    for (var j = 0u; j < K; j++) {
        if (CELL == 2u) { ku[j] = ee * (delta[j] + dn * res[j]); } else { ku[j] = ee * lref * res[j]; }
    }
}

fn load_state(b: u32) {
    s_gamma = state[b * 4u];
    s_hasp = state[b * 4u + 1u] != 0.0;
    s_nu0 = state[b * 4u + 2u];
}

// Forward step t: record the entering state beside G (written there by the Gram dispatch), evaluate the cell,
// write κ_u, κ_c', κ_h' for the forward `combine` and advance the state.
@compute @workgroup_size(HWG)
fn cell_fwd(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let b = gid.x;
    if (b >= p.batch) { return; }
    gb = b * p.rec_stride + p.t * RW;
    load_state(b);
    rec[gb + KK] = s_gamma;
    rec[gb + KK + 1u] = select(Real(0.0), Real(1.0), s_hasp);
    rec[gb + KK + 2u] = s_nu0;
    cell();
    let co = b * p.coef_stride + p.t * 3u * K;
    for (var j = 0u; j < K; j++) {
        coef[co + j] = ku[j];
        coef[co + K + j] = kc[j];
        coef[co + 2u * K + j] = kh[j];
    }
    state[b * 4u] = gamma;
    state[b * 4u + 1u] = select(Real(0.0), Real(1.0), hasp);
    state[b * 4u + 2u] = nu0;
}

// reverse-mode accumulators
var<private> lg: array<Real, KK>;
var<private> lnu: array<Real, K>;
var<private> ldelta: array<Real, K>;
var<private> lkc: array<Real, K>;
var<private> lkh: array<Real, K>;
var<private> lres: array<Real, K>;
var<private> lr: array<Real, K>;
var<private> lq: array<Real, K>;
var<private> lo: array<Real, NO>;
var<private> lz: array<Real, NF>;
var<private> lalpha: array<Real, M>;
var<private> lrho: array<Real, M>;

fn addg(i: u32, j: u32, v: Real) { lg[i * K + j] = lg[i * K + j] + v; }

// Reverse of step t (hlstm.rs `cell_adjoint`): recompute the cell from the record, take λκ from pk, add ∂φ into
// dphi[b] and write the reverse `combine` coefficients: output i ∈ [s_1..s_M, c, h] (basis index s(i), IC, IH)
// from inputs [λu, λc', λh', V_0..V_{K−1}]: (κ_u[i], κ_c[i], κ_h[i], λG_ij + λG_ji).
@compute @workgroup_size(HWG)
fn cell_rev(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let b = gid.x;
    if (b >= p.batch) { return; }
    gb = b * p.rec_stride + p.t * RW;
    s_gamma = rec[gb + KK];
    s_hasp = rec[gb + KK + 1u] != 0.0;
    s_nu0 = rec[gb + KK + 2u];
    cell();
    let pb = b * 3u * K;
    let db = b * PL;
    for (var j = 0u; j < KK; j++) { lg[j] = 0.0; }
    for (var j = 0u; j < K; j++) {
        lnu[j] = 0.0;
        ldelta[j] = 0.0;
        lkc[j] = pk[pb + K + j];
        lkh[j] = pk[pb + 2u * K + j];
    }
    for (var o = 0u; o < NO; o++) { lo[o] = 0.0; }
    var l_dn: Real = 0.0;
    var l_lref: Real = 0.0;
    var lgamma: Real = 0.0;
    var le: Real = 0.0;
    // u
    if (CELL == 2u) {
        var dr: Real = 0.0;
        for (var j = 0u; j < K; j++) {
            let lu = pk[pb + j];
            le = le + lu * (delta[j] + dn * res[j]);
            ldelta[j] = ldelta[j] + ee * lu;
            dr = dr + lu * res[j];
            lres[j] = ee * dn * lu;
        }
        l_dn = l_dn + ee * dr;
    } else {
        var dr: Real = 0.0;
        for (var j = 0u; j < K; j++) {
            let lu = pk[pb + j];
            dr = dr + lu * res[j];
            lres[j] = ee * lref * lu;
        }
        le = lref * dr;
        l_lref = l_lref + ee * dr;
    }
    let ltau = le * ee;
    // r = β_0 h' + Σ β_w V_w/ν_w
    var s0: Real = 0.0;
    for (var j = 0u; j < K; j++) {
        s0 = s0 + lres[j] * kh[j];
        lkh[j] = lkh[j] + ov[RES0] * lres[j];
    }
    lo[RES0] = s0;
    for (var r = 1u; r < 2u * M + 2u; r++) {
        let j = r - 1u;
        if (mask[j] > 0.0) {
            lo[RES0 + r] = lres[j] / nu[j];
            lnu[j] = lnu[j] - lres[j] * ov[RES0 + r] / (nu[j] * nu[j]);
        }
    }
    // h' = o_g ψ(q) c'
    var sh: Real = 0.0;
    for (var j = 0u; j < K; j++) { sh = sh + lkh[j] * kc[j]; }
    let l_og = psi_v * sh;
    let lpsi = og * sh;
    for (var j = 0u; j < K; j++) { lkc[j] = lkc[j] + og * psi_v * lkh[j]; }
    let lqn = lpsi * psi_d;
    for (var i = 0u; i < K; i++) {
        lkc[i] = lkc[i] + 2.0 * lqn * gdot(i, &kc);
        for (var j = 0u; j < K; j++) { addg(i, j, lqn * kc[i] * kc[j]); }
    }
    // c' = f e_c + i ĉ
    let lfg = lkc[IC];
    var lig: Real = 0.0;
    for (var j = 0u; j < K; j++) { lig = lig + lkc[j] * khat[j]; }
    for (var j = 0u; j < K; j++) {
        let lkhat = ig * lkc[j];
        if (mask[j] > 0.0) {
            lo[3u + j] = lkhat / nu[j];
            lnu[j] = lnu[j] - lkhat * ov[3u + j] / (nu[j] * nu[j]);
        }
    }
    if (CELL == 2u && dn > 0.0) {
        var kd: Real = 0.0;
        for (var j = 0u; j < K; j++) { kd = kd + ig * lkc[j] * delta[j]; }
        lo[3u + K] = kd / dn;
        for (var j = 0u; j < K; j++) { ldelta[j] = ldelta[j] + ov[3u + K] * ig * lkc[j] / dn; }
        l_dn = l_dn - ov[3u + K] * kd / (dn * dn);
    }
    lo[0] = lfg * fg * (1.0 - fg);
    lo[1] = lig * ig * (1.0 - ig);
    lo[2] = l_og * og * (1.0 - og);
    let tt = tau / Real(TAU_BOUND);
    lo[TAU] = ltau * (1.0 - tt * tt);
    // network
    for (var j = 0u; j < NF; j++) { lz[j] = 0.0; }
    for (var r = 0u; r < NH; r++) {
        var la: Real = 0.0;
        for (var o = 0u; o < NO; o++) { la = la + lo[o] * phi[OW2 + o * NH + r]; }
        let lp = la * (1.0 - av[r] * av[r]);
        dphi[db + OB1 + r] = dphi[db + OB1 + r] + lp;
        for (var j = 0u; j < NF; j++) {
            dphi[db + OW1 + r * NF + j] = dphi[db + OW1 + r * NF + j] + lp * z[j];
            lz[j] = lz[j] + lp * phi[OW1 + r * NF + j];
        }
    }
    for (var o = 0u; o < NO; o++) {
        dphi[db + OB2 + o] = dphi[db + OB2 + o] + lo[o];
        for (var j = 0u; j < NH; j++) {
            dphi[db + OW2 + o * NH + j] = dphi[db + OW2 + o * NH + j] + lo[o] * av[j];
        }
    }
    // features
    var f = 0u;
    for (var i = 0u; i < K; i++) {
        for (var j = i + 1u; j < K; j++) {
            if (mask[i] * mask[j] > 0.0) {
                let v = z[f];
                addg(i, j, lz[f] / (nu[i] * nu[j]));
                lnu[i] = lnu[i] - lz[f] * v / nu[i];
                lnu[j] = lnu[j] - lz[f] * v / nu[j];
            }
            f++;
        }
    }
    let nug = nu[IG];
    if (s_nu0 > 0.0 && nug > 0.0) { lnu[IG] = lnu[IG] + lz[f] * logd(z[f]) / nug; }
    f++;
    for (var i = 0u; i < M; i++) {
        if (mask[si(i)] > 0.0 && lref > 0.0) {
            let c = lz[f] * logd(z[f]);
            lnu[si(i)] = lnu[si(i)] + c / nu[si(i)];
            l_lref = l_lref - c / lref;
        }
        f++;
        if (mask[yi(i)] > 0.0 && nug > 0.0) {
            let c = lz[f] * logd(z[f]);
            lnu[yi(i)] = lnu[yi(i)] + c / nu[yi(i)];
            lnu[IG] = lnu[IG] - c / nug;
        }
        f++;
    }
    let tc = z[f];
    lnu[IC] = lnu[IC] + lz[f] * (1.0 - tc * tc);
    lnu[IH] = lnu[IH] + lz[f + 1u];
    f += 2u + M + 1u;
    if (CELL == 2u) {
        for (var j = 0u; j < K; j++) {
            var lw: Real = 0.0;
            if (mask[j] > 0.0 && dn > 0.0) {
                let v = z[f + j];
                lw = lz[f + j] / (dn * nu[j]);
                l_dn = l_dn - lz[f + j] * v / dn;
                lnu[j] = lnu[j] - lz[f + j] * v / nu[j];
            }
            if (lw != 0.0) {
                for (var i = 0u; i < K; i++) {
                    addg(j, i, lw * delta[i]);
                    ldelta[i] = ldelta[i] + G(j, i) * lw;
                }
            }
        }
        f += K;
        if (dn > 0.0 && lref > 0.0) {
            let c = lz[f] * logd(z[f]);
            l_dn = l_dn + c / dn;
            l_lref = l_lref - c / lref;
        }
    }
    // ℓ
    if (hasp) {
        lgamma = lgamma + l_lref * nug;
        lnu[IG] = lnu[IG] + l_lref * gamma;
    } else if (nug < 1.0) {
        lnu[IG] = lnu[IG] + l_lref;
    }
    if (CELL == 2u) {
        if (dn > 0.0) {
            let ldq = l_dn / (2.0 * dn);
            for (var i = 0u; i < K; i++) {
                ldelta[i] = ldelta[i] + 2.0 * ldq * gdelta[i];
                for (var j = 0u; j < K; j++) { addg(i, j, ldq * delta[i] * delta[j]); }
            }
        }
        var lsig: Real = 0.0;
        for (var j = 0u; j < K; j++) { lsig = lsig + ldelta[j] * rr[j]; }
        if (!hasp && nug > 1.0) { lnu[IG] = lnu[IG] - lsig / (nug * nug); }
        if (!reset) {
            for (var j = 0u; j < K; j++) { lr[j] = sigma * ldelta[j]; }
            for (var i = 0u; i < M; i++) { lalpha[i] = 0.0; lrho[i] = 0.0; }
            for (var i = 0u; i < M; i++) {
                if (!acc[i]) { continue; }
                lalpha[i] = lalpha[i] + lr[si(i)];
                let lb = -lr[si(i)];
                lrho[i] = lrho[i] + lb * gdot_h(yi(i), &r_hist, i);
                for (var c = 0u; c < K; c++) {
                    addg(yi(i), c, lb * rho[i] * r_hist[i * K + c]);
                    lr[c] = lr[c] + lb * rho[i] * G(yi(i), c);
                }
            }
            for (var j = 0u; j < K; j++) {
                lgamma = lgamma + lr[j] * qc[j];
                lq[j] = gamma * lr[j];
            }
            for (var ii = 0u; ii < M; ii++) {
                let i = M - 1u - ii;
                if (!acc[i]) { continue; }
                lalpha[i] = lalpha[i] - lq[yi(i)];
                lrho[i] = lrho[i] + lalpha[i] * gdot_h(si(i), &q_hist, i);
                for (var c = 0u; c < K; c++) {
                    addg(si(i), c, lalpha[i] * rho[i] * q_hist[i * K + c]);
                    lq[c] = lq[c] + lalpha[i] * rho[i] * G(si(i), c);
                }
            }
            for (var i = 0u; i < M; i++) {
                if (acc[i]) { addg(si(i), yi(i), -lrho[i] * rho[i] * rho[i]); }
            }
        }
    }
    if (gfrom >= 0) {
        let h = u32(gfrom);
        let yy = G(yi(h), yi(h));
        addg(si(h), yi(h), lgamma / yy);
        addg(yi(h), yi(h), -lgamma * gamma / yy);
    }
    for (var j = 0u; j < K; j++) {
        if (nu[j] > 0.0) { addg(j, j, lnu[j] / (2.0 * nu[j])); }
    }
    // reverse combine coefficients
    let rb = b * NR;
    for (var o = 0u; o < M + 2u; o++) {
        var i = si(o);
        if (o == M) { i = IC; }
        if (o == M + 1u) { i = IH; }
        let row = rb + o * (K + 3u);
        rcoef[row] = ku[i];
        rcoef[row + 1u] = kc[i];
        rcoef[row + 2u] = kh[i];
        for (var j = 0u; j < K; j++) { rcoef[row + 3u + j] = lg[i * K + j] + lg[j * K + i]; }
    }
}

// Loss weights of the unroll: lrec[b][1][t] = (w_t/B)·ℓ'(f_t) for t = 1..T, with ℓ'(f) = 1 (sum) or 1/f above the
// floor·f_start and 0 below it (log).
@compute @workgroup_size(HWG)
fn loss_weights(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let b = gid.x;
    if (b >= p.batch) { return; }
    let lo_ = cst[2] * abs(state[b * 4u + 3u]);
    let base = b * p.lrec_stride;
    lrec[base + p.tsteps + 1u] = 0.0;
    for (var t = 1u; t <= p.tsteps; t++) {
        let f = lrec[base + t];
        var d: Real = 1.0;
        if (cst[1] == 1.0) { d = select(Real(0.0), 1.0 / f, f > lo_); }
        lrec[base + p.tsteps + 1u + t] = cst[3] * cst[3u + t] * d;
    }
}
