// The coordinatewise LSTM optimizer (L2L, seed 002) on the device: forward step, reverse sweep, and the
// parameter-gradient reduction. Equations: crates/l2o-meta/src/lstm.rs (module docs), which is also the f64
// CPU reference these kernels are tested against.
//
// Coordinates k = b·n + i, K = B·n. φ lives in a uniform buffer (broadcast reads; 64 KiB); layout
// [W1 (4H×(D+H)), b1 (4H), W2 (4H×2H), b2 (4H), w_out (H), b_out], gate blocks i, f, o, ĝ.
// Trajectory buffers (slot-major so a thread per coordinate reads contiguously):
//   states [T+1][4H][K] rows h¹ (0..H), c¹ (H..2H), h² (2H..3H), c² (3H..4H)
//   xs     [T][D][K]   preprocessed inputs;   gs [T][K] gradients g_t
//   dz     [T][8H+1][K] ∂L/∂z of layer 1 (rows 0..4H), layer 2 (4H..8H), ∂L/∂u (8H)
//   partial [P][C]     per-chunk partial sums of ∂L/∂φ (reduced by the engine's `reduce` kernel)

const MAXH: u32 = 32u;

struct Params {
    k_total: u32, n: u32, batch: u32, h: u32,
    d: u32, t: u32, slot_in: u32, slot_out: u32,
    steps: u32, record: u32, chunks: u32, chunk_len: u32,
    preprocess: u32, p_len: u32, q0: u32, q1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> phi: array<vec4<Real>, PHI_VEC4>;
// [scale, p, e^{-p}, e^{p}, w_1/B, …, w_T/B]
@group(0) @binding(2) var<storage, read> cst: array<Real>;
@group(0) @binding(3) var<storage, read_write> theta: array<Real>;
@group(0) @binding(4) var<storage, read> grad: array<Real>;
@group(0) @binding(5) var<storage, read_write> states: array<Real>;
@group(0) @binding(6) var<storage, read_write> xs: array<Real>;
@group(0) @binding(7) var<storage, read_write> gs: array<Real>;
@group(0) @binding(8) var<storage, read_write> dz: array<Real>;
@group(0) @binding(9) var<storage, read_write> partial: array<Real>;
@group(0) @binding(10) var<storage, read> status: array<u32>;

fn ph(i: u32) -> Real { return phi[i / 4u][i % 4u]; }
fn sigm(z: Real) -> Real { return 1.0 / (1.0 + r_exp(-z)); }

// Offsets of the parameter blocks.
fn o_w1() -> u32 { return 0u; }
fn o_b1() -> u32 { return 4u * p.h * (p.d + p.h); }
fn o_w2() -> u32 { return o_b1() + 4u * p.h; }
fn o_b2() -> u32 { return o_w2() + 8u * p.h * p.h; }
fn o_wo() -> u32 { return o_b2() + 4u * p.h; }
fn o_bo() -> u32 { return o_wo() + p.h; }

fn st(slot: u32, row: u32, k: u32) -> u32 { return (slot * 4u * p.h + row) * p.k_total + k; }

// Private per-thread vectors (hidden ≤ MAXH).
var<private> h1p: array<Real, MAXH>;
var<private> c1p: array<Real, MAXH>;
var<private> h2p: array<Real, MAXH>;
var<private> c2p: array<Real, MAXH>;
var<private> h1n: array<Real, MAXH>;
var<private> c1n: array<Real, MAXH>;
var<private> h2n: array<Real, MAXH>;
var<private> c2n: array<Real, MAXH>;
var<private> g1: array<Real, 128>; // gates of layer 1 after activation: i, f, o, ĝ
var<private> g2: array<Real, 128>;
var<private> xin: array<Real, 2>;

fn preprocess(g: Real) {
    if (p.preprocess == 0u) {
        xin[0] = g;
        xin[1] = 0.0;
    } else if (abs(g) >= cst[2]) {
        xin[0] = r_log(abs(g)) / cst[1];
        xin[1] = sign(g);
    } else {
        xin[0] = -1.0;
        xin[1] = cst[3] * g;
    }
}

fn load_prev(slot: u32, k: u32) {
    for (var j = 0u; j < p.h; j = j + 1u) {
        h1p[j] = states[st(slot, j, k)];
        c1p[j] = states[st(slot, p.h + j, k)];
        h2p[j] = states[st(slot, 2u * p.h + j, k)];
        c2p[j] = states[st(slot, 3u * p.h + j, k)];
    }
}

// Both layers from xin and the previous state; fills g1, g2, h1n, c1n, h2n, c2n. Returns u.
fn cell_forward() -> Real {
    let h = p.h;
    let cols1 = p.d + h;
    for (var j = 0u; j < h; j = j + 1u) {
        for (var q = 0u; q < 4u; q = q + 1u) {
            let r = q * h + j;
            var z = ph(o_b1() + r);
            let row = o_w1() + r * cols1;
            for (var a = 0u; a < p.d; a = a + 1u) { z = z + ph(row + a) * xin[a]; }
            for (var a = 0u; a < h; a = a + 1u) { z = z + ph(row + p.d + a) * h1p[a]; }
            if (q < 3u) { g1[r] = sigm(z); } else { g1[r] = r_tanh(z); }
        }
        c1n[j] = g1[h + j] * c1p[j] + g1[j] * g1[3u * h + j];
        h1n[j] = g1[2u * h + j] * r_tanh(c1n[j]);
    }
    let cols2 = 2u * h;
    for (var j = 0u; j < h; j = j + 1u) {
        for (var q = 0u; q < 4u; q = q + 1u) {
            let r = q * h + j;
            var z = ph(o_b2() + r);
            let row = o_w2() + r * cols2;
            for (var a = 0u; a < h; a = a + 1u) { z = z + ph(row + a) * h1n[a] + ph(row + h + a) * h2p[a]; }
            if (q < 3u) { g2[r] = sigm(z); } else { g2[r] = r_tanh(z); }
        }
        c2n[j] = g2[h + j] * c2p[j] + g2[j] * g2[3u * h + j];
        h2n[j] = g2[2u * h + j] * r_tanh(c2n[j]);
    }
    var u = ph(o_bo());
    for (var j = 0u; j < h; j = j + 1u) { u = u + ph(o_wo() + j) * h2n[j]; }
    return u;
}

// One optimizer step for every coordinate: state slot_in → slot_out, θ ← θ + s·u; with record = 1 also stores
// x_t and g_t at step p.t for the reverse sweep. Frozen problems (status ≠ 0) are left untouched.
@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = gid.x + gid.y * nwg.x * 64u;
    if (k >= p.k_total) { return; }
    if (status[k / p.n] != 0u) { return; }
    let g = grad[k];
    preprocess(g);
    load_prev(p.slot_in, k);
    let u = cell_forward();
    theta[k] = theta[k] + cst[0] * u;
    for (var j = 0u; j < p.h; j = j + 1u) {
        states[st(p.slot_out, j, k)] = h1n[j];
        states[st(p.slot_out, p.h + j, k)] = c1n[j];
        states[st(p.slot_out, 2u * p.h + j, k)] = h2n[j];
        states[st(p.slot_out, 3u * p.h + j, k)] = c2n[j];
    }
    if (p.record == 1u) {
        for (var a = 0u; a < p.d; a = a + 1u) { xs[(p.t * p.d + a) * p.k_total + k] = xin[a]; }
        gs[p.t * p.k_total + k] = g;
    }
}

fn dz_at(t: u32, row: u32, k: u32) -> u32 { return (t * (8u * p.h + 1u) + row) * p.k_total + k; }

// The reverse sweep of one coordinate over the whole unroll (module docs of lstm.rs): recomputes the gates of
// step t from the stored state and input, and writes ∂L/∂z of both layers and ∂L/∂u to dz[t]. `grad` holds
// g_T (the gradient after the last step). λ's are carried in private memory from t = T−1 down to 0.
var<private> lh1: array<Real, MAXH>;
var<private> lc1: array<Real, MAXH>;
var<private> lh2: array<Real, MAXH>;
var<private> lc2: array<Real, MAXH>;
var<private> dl: array<Real, 128>;

// Reverse of one layer given its gates, c_new and c_prev (passed via the layer index): writes δ into dl and
// dz rows [row0, row0+4H), updates λc to the adjoint of c_prev. λh is read, then zeroed by the caller's
// transposed products.
fn layer_delta(layer: u32, t: u32, k: u32) {
    let h = p.h;
    for (var j = 0u; j < h; j = j + 1u) {
        var i: Real; var f: Real; var o: Real; var gg: Real; var cn: Real; var cp: Real; var lhv: Real; var lcv: Real;
        if (layer == 1u) {
            i = g1[j]; f = g1[h + j]; o = g1[2u * h + j]; gg = g1[3u * h + j]; cn = c1n[j]; cp = c1p[j]; lhv = lh1[j]; lcv = lc1[j];
        } else {
            i = g2[j]; f = g2[h + j]; o = g2[2u * h + j]; gg = g2[3u * h + j]; cn = c2n[j]; cp = c2p[j]; lhv = lh2[j]; lcv = lc2[j];
        }
        let tau = r_tanh(cn);
        let lo = lhv * tau;
        let lct = lcv + lhv * o * (1.0 - tau * tau);
        dl[j] = lct * gg * i * (1.0 - i);
        dl[h + j] = lct * cp * f * (1.0 - f);
        dl[2u * h + j] = lo * o * (1.0 - o);
        dl[3u * h + j] = lct * i * (1.0 - gg * gg);
        if (layer == 1u) { lc1[j] = lct * f; } else { lc2[j] = lct * f; }
    }
    let row0 = (layer - 1u) * 4u * h;
    for (var r = 0u; r < 4u * h; r = r + 1u) { dz[dz_at(t, row0 + r, k)] = dl[r]; }
}

@compute @workgroup_size(64)
fn reverse(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = gid.x + gid.y * nwg.x * 64u;
    if (k >= p.k_total) { return; }
    let h = p.h;
    let steps = p.steps;
    var lth = cst[3u + steps] * grad[k];
    for (var j = 0u; j < h; j = j + 1u) { lh1[j] = 0.0; lc1[j] = 0.0; lh2[j] = 0.0; lc2[j] = 0.0; }
    for (var tt = 0u; tt < steps; tt = tt + 1u) {
        let t = steps - 1u - tt;
        load_prev(t, k);
        for (var a = 0u; a < p.d; a = a + 1u) { xin[a] = xs[(t * p.d + a) * p.k_total + k]; }
        _ = cell_forward();
        let du = cst[0] * lth;
        dz[dz_at(t, 8u * h, k)] = du;
        for (var j = 0u; j < h; j = j + 1u) { lh2[j] = lh2[j] + du * ph(o_wo() + j); }
        // layer 2: δ², then λh¹ += W2[:, 0..H]ᵀ δ², λh² = W2[:, H..2H]ᵀ δ²
        layer_delta(2u, t, k);
        for (var a = 0u; a < h; a = a + 1u) {
            var s1: Real = 0.0;
            var s2: Real = 0.0;
            for (var r = 0u; r < 4u * h; r = r + 1u) {
                let row = o_w2() + r * 2u * h;
                s1 = s1 + ph(row + a) * dl[r];
                s2 = s2 + ph(row + h + a) * dl[r];
            }
            lh1[a] = lh1[a] + s1;
            lh2[a] = s2;
        }
        // layer 1: δ¹, then λh¹ = W1[:, D..D+H]ᵀ δ¹ (the input x depends on g only: no adjoint)
        layer_delta(1u, t, k);
        let cols1 = p.d + h;
        for (var a = 0u; a < h; a = a + 1u) {
            var s: Real = 0.0;
            for (var r = 0u; r < 4u * h; r = r + 1u) { s = s + ph(o_w1() + r * cols1 + p.d + a) * dl[r]; }
            lh1[a] = s;
        }
        if (t >= 1u) { lth = lth + cst[3u + t] * gs[t * p.k_total + k]; }
    }
}

// ∂L/∂φ = Σ_{t,k} δ ⊗ [input; h_prev; 1], as three outer-product blocks (layer 1, layer 2, output), tiled:
// workgroup (c, block) accumulates the entries e = t·K + k of chunk c, SB at a time through workgroup memory,
// and writes its partial sums to partial[param][c]. Deterministic (fixed chunking and order, no atomics).
const SB: u32 = 8u;
var<workgroup> ta: array<Real, 1024>; // δ rows: M × SB (M ≤ 4·MAXH)
var<workgroup> tb: array<Real, 528>;  // columns: N × SB (N ≤ 2·MAXH + 1)

fn block_m(block: u32) -> u32 { if (block == 2u) { return 1u; } return 4u * p.h; }
fn block_n(block: u32) -> u32 {
    if (block == 0u) { return p.d + p.h + 1u; }
    if (block == 1u) { return 2u * p.h + 1u; }
    return p.h + 1u;
}
fn column(block: u32, j: u32, t: u32, k: u32) -> Real {
    let h = p.h;
    if (block == 0u) {
        if (j < p.d) { return xs[(t * p.d + j) * p.k_total + k]; }
        if (j < p.d + h) { return states[st(t, j - p.d, k)]; }
        return 1.0;
    }
    if (block == 1u) {
        if (j < h) { return states[st(t + 1u, j, k)]; }
        if (j < 2u * h) { return states[st(t, 2u * h + j - h, k)]; }
        return 1.0;
    }
    if (j < h) { return states[st(t + 1u, 2u * h + j, k)]; }
    return 1.0;
}
fn param_index(block: u32, r: u32, j: u32) -> u32 {
    let n = block_n(block);
    if (block == 0u) { if (j + 1u < n) { return o_w1() + r * (n - 1u) + j; } return o_b1() + r; }
    if (block == 1u) { if (j + 1u < n) { return o_w2() + r * (n - 1u) + j; } return o_b2() + r; }
    if (j + 1u < n) { return o_wo() + j; }
    return o_bo();
}

@compute @workgroup_size(256)
fn outer_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let c = wid.x;
    let block = wid.y;
    let m = block_m(block);
    let nn = block_n(block);
    let outs = m * nn;
    let total = p.steps * p.k_total;
    let e0 = c * p.chunk_len;
    let e1 = min(e0 + p.chunk_len, total);
    var acc: array<Real, 33>;
    for (var q = 0u; q < 33u; q = q + 1u) { acc[q] = 0.0; }
    let row0 = block * 4u * p.h;
    for (var e = e0; e < e1; e = e + SB) {
        let cnt = min(SB, e1 - e);
        workgroupBarrier();
        for (var idx = lid; idx < (m + nn) * SB; idx = idx + 256u) {
            let s = idx % SB;
            let which = idx / SB;
            var v: Real = 0.0;
            if (s < cnt) {
                let ee = e + s;
                let t = ee / p.k_total;
                let k = ee % p.k_total;
                if (which < m) { v = dz[dz_at(t, row0 + which, k)]; } else { v = column(block, which - m, t, k); }
            }
            if (which < m) { ta[which * SB + s] = v; } else { tb[(which - m) * SB + s] = v; }
        }
        workgroupBarrier();
        for (var q = 0u; q < 33u; q = q + 1u) {
            let o = lid + q * 256u;
            if (o >= outs) { break; }
            let r = o / nn;
            let j = o % nn;
            var s: Real = 0.0;
            for (var b = 0u; b < SB; b = b + 1u) { s = s + ta[r * SB + b] * tb[j * SB + b]; }
            acc[q] = acc[q] + s;
        }
    }
    for (var q = 0u; q < 33u; q = q + 1u) {
        let o = lid + q * 256u;
        if (o >= outs) { break; }
        partial[param_index(block, o / nn, o % nn) * p.chunks + c] = acc[q];
    }
}
