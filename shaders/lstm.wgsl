// The coordinatewise LSTM optimizer (L2L, seed 002) on the device: forward step, reverse sweep, and the
// parameter-gradient reduction. Equations: crates/l2o-meta/src/lstm.rs (module docs), which is also the f64
// CPU reference these kernels are tested against.
//
// Coordinates k = b·n + i, K = B·n. φ lives in a uniform buffer (broadcast reads; 64 KiB); layout
// [W1 (4H×(D+H)), b1 (4H), W2 (4H×2H), b2 (4H), w_out (H), b_out], gate blocks i, f, o, ĝ.
// Trajectory buffers (slot-major so a thread per coordinate reads contiguously):
//   states [T+1][4H][K] rows h¹ (0..H), c¹ (H..2H), h² (2H..3H), c² (3H..4H)
//   xs     [T][D][K]   preprocessed inputs;   gs [T][K] gradients g_t
//   dz     [Tc][8H+1][K] ∂L/∂z of layer 1 (rows 0..4H), layer 2 (4H..8H), ∂L/∂u (8H) for the Tc steps of the
//          current time chunk of the reverse sweep, then [4H+1][K]: λh¹, λc¹, λh², λc², λθ carried between chunks
//   partial [C·64][P]  per-chunk, per-lane partial sums of ∂L/∂φ, summed by `finish` into dphi [P]

// H (hidden units) and D (input width: 2 with preprocessing, 1 without) are compile-time constants supplied by
// the launcher (`const H: u32 = 20u; const D: u32 = 2u;`), so every loop has a constant trip count and the
// per-thread vectors can live in registers.
const H4: u32 = 4u * H;
const COLS1: u32 = D + H;
const COLS2: u32 = 2u * H;
const O_W1: u32 = 0u;
const O_B1: u32 = 4u * H * (D + H);
const O_W2: u32 = O_B1 + 4u * H;
const O_B2: u32 = O_W2 + 8u * H * H;
const O_WO: u32 = O_B2 + 4u * H;
const O_BO: u32 = O_WO + H;

struct Params {
    k_total: u32, n: u32, batch: u32, h: u32,
    d: u32, t: u32, slot_in: u32, slot_out: u32,
    steps: u32, record: u32, chunks: u32, chunk_len: u32,
    // reverse / outer_partial work on the steps [t, t_hi) of a time chunk; dz holds tc steps (+ the carried λ)
    preprocess: u32, p_len: u32, accumulate: u32, tc: u32,
}

@group(0) @binding(0) var<storage, read> pb: Params;
// A private copy of the parameters, made at the top of every entry point: reads of a storage buffer inside
// loops are gathers on the software adapter (and a uniform buffer would be recompiled per bind group there).
var<private> p: Params;
@group(0) @binding(1) var<uniform> phi: array<vec4<Real>, L2O_PHI_VEC4>;
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
@group(0) @binding(11) var<storage, read_write> dphi: array<Real>;

fn ph(i: u32) -> Real { return phi[i / 4u][i % 4u]; }
fn sigm(z: Real) -> Real { return 1.0 / (1.0 + l2o_exp(-z)); }

fn st(slot: u32, row: u32, k: u32) -> u32 { return (slot * H4 + row) * p.k_total + k; }

// Private per-thread vectors.
var<private> h1p: array<Real, H>;
var<private> c1p: array<Real, H>;
var<private> h2p: array<Real, H>;
var<private> c2p: array<Real, H>;
var<private> h1n: array<Real, H>;
var<private> c1n: array<Real, H>;
var<private> h2n: array<Real, H>;
var<private> c2n: array<Real, H>;
var<private> g1: array<Real, H4>; // gates of layer 1 after activation: i, f, o, ĝ
var<private> g2: array<Real, H4>;
var<private> xin: array<Real, 2>;

fn preprocess(g: Real) {
    if (p.preprocess == 0u) {
        xin[0] = g;
        xin[1] = 0.0;
    } else if (abs(g) >= cst[2]) {
        xin[0] = l2o_log(abs(g)) / cst[1];
        xin[1] = sign(g);
    } else {
        xin[0] = -1.0;
        xin[1] = cst[3] * g;
    }
}

fn load_prev(slot: u32, k: u32) {
    for (var j = 0u; j < H; j = j + 1u) {
        h1p[j] = states[st(slot, j, k)];
        c1p[j] = states[st(slot, H + j, k)];
        h2p[j] = states[st(slot, 2u * H + j, k)];
        c2p[j] = states[st(slot, 3u * H + j, k)];
    }
}

// Both layers from xin and the previous state; fills g1, g2, h1n, c1n, h2n, c2n. Returns u.
fn cell_forward() -> Real {
    for (var j = 0u; j < H; j = j + 1u) {
        for (var q = 0u; q < 4u; q = q + 1u) {
            let r = q * H + j;
            var z = ph(O_B1 + r);
            let row = O_W1 + r * COLS1;
            for (var a = 0u; a < D; a = a + 1u) { z = z + ph(row + a) * xin[a]; }
            for (var a = 0u; a < H; a = a + 1u) { z = z + ph(row + D + a) * h1p[a]; }
            if (q < 3u) { g1[r] = sigm(z); } else { g1[r] = l2o_tanh(z); }
        }
        c1n[j] = g1[H + j] * c1p[j] + g1[j] * g1[3u * H + j];
        h1n[j] = g1[2u * H + j] * l2o_tanh(c1n[j]);
    }
    for (var j = 0u; j < H; j = j + 1u) {
        for (var q = 0u; q < 4u; q = q + 1u) {
            let r = q * H + j;
            var z = ph(O_B2 + r);
            let row = O_W2 + r * COLS2;
            for (var a = 0u; a < H; a = a + 1u) { z = z + ph(row + a) * h1n[a] + ph(row + H + a) * h2p[a]; }
            if (q < 3u) { g2[r] = sigm(z); } else { g2[r] = l2o_tanh(z); }
        }
        c2n[j] = g2[H + j] * c2p[j] + g2[j] * g2[3u * H + j];
        h2n[j] = g2[2u * H + j] * l2o_tanh(c2n[j]);
    }
    var u = ph(O_BO);
    for (var j = 0u; j < H; j = j + 1u) { u = u + ph(O_WO + j) * h2n[j]; }
    return u;
}

// One optimizer step for every coordinate: state slot_in → slot_out, θ ← θ + s·u; with record = 1 also stores
// x_t and g_t at step p.t for the reverse sweep. Frozen problems (status ≠ 0) are left untouched.
@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = pb;
    let k = gid.x + gid.y * nwg.x * 64u;
    if (k >= p.k_total) { return; }
    if (status[k / p.n] != 0u) { return; }
    let g = grad[k];
    preprocess(g);
    load_prev(p.slot_in, k);
    let u = cell_forward();
    theta[k] = theta[k] + cst[0] * u;
    for (var j = 0u; j < H; j = j + 1u) {
        states[st(p.slot_out, j, k)] = h1n[j];
        states[st(p.slot_out, H + j, k)] = c1n[j];
        states[st(p.slot_out, 2u * H + j, k)] = h2n[j];
        states[st(p.slot_out, 3u * H + j, k)] = c2n[j];
    }
    if (p.record == 1u) {
        for (var a = 0u; a < D; a = a + 1u) { xs[(p.t * D + a) * p.k_total + k] = xin[a]; }
        gs[p.t * p.k_total + k] = g;
    }
}

fn dz_at(t: u32, row: u32, k: u32) -> u32 { return ((t - p.t) * (8u * H + 1u) + row) * p.k_total + k; }
fn lam_at(row: u32, k: u32) -> u32 { return (p.tc * (8u * H + 1u) + row) * p.k_total + k; }

// The reverse sweep of one coordinate over the whole unroll (module docs of lstm.rs): recomputes the gates of
// step t from the stored state and input, and writes ∂L/∂z of both layers and ∂L/∂u to dz[t]. `grad` holds
// g_T (the gradient after the last step). λ's are carried in private memory from t = T−1 down to 0.
var<private> lh1: array<Real, H>;
var<private> lc1: array<Real, H>;
var<private> lh2: array<Real, H>;
var<private> lc2: array<Real, H>;
var<private> dl: array<Real, H4>;

// Reverse of one layer given its gates, c_new and c_prev (passed via the layer index): writes δ into dl and
// dz rows [row0, row0+4H), updates λc to the adjoint of c_prev. λh is read, then zeroed by the caller's
// transposed products.
fn layer_delta(layer: u32, t: u32, k: u32) {
    let h = H;
    for (var j = 0u; j < h; j = j + 1u) {
        var i: Real; var f: Real; var o: Real; var gg: Real; var cn: Real; var cp: Real; var lhv: Real; var lcv: Real;
        if (layer == 1u) {
            i = g1[j]; f = g1[h + j]; o = g1[2u * h + j]; gg = g1[3u * h + j]; cn = c1n[j]; cp = c1p[j]; lhv = lh1[j]; lcv = lc1[j];
        } else {
            i = g2[j]; f = g2[h + j]; o = g2[2u * h + j]; gg = g2[3u * h + j]; cn = c2n[j]; cp = c2p[j]; lhv = lh2[j]; lcv = lc2[j];
        }
        let tau = l2o_tanh(cn);
        let lo = lhv * tau;
        let lct = lcv + lhv * o * (1.0 - tau * tau);
        dl[j] = lct * gg * i * (1.0 - i);
        dl[h + j] = lct * cp * f * (1.0 - f);
        dl[2u * h + j] = lo * o * (1.0 - o);
        dl[3u * h + j] = lct * i * (1.0 - gg * gg);
        if (layer == 1u) { lc1[j] = lct * f; } else { lc2[j] = lct * f; }
    }
    let row0 = (layer - 1u) * H4;
    for (var r = 0u; r < H4; r = r + 1u) { dz[dz_at(t, row0 + r, k)] = dl[r]; }
}

// The reverse sweep runs in time chunks [p.t, t_hi) from the last chunk down (t_hi = p.slot_in); the λ's are
// stored after each chunk and reloaded by the next, so dz needs room for one chunk only.
@compute @workgroup_size(64)
fn reverse(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = pb;
    let k = gid.x + gid.y * nwg.x * 64u;
    if (k >= p.k_total) { return; }
    let t_hi = p.slot_in;
    var lth: Real;
    if (t_hi == p.steps) {
        lth = cst[3u + p.steps] * grad[k];
        for (var j = 0u; j < H; j = j + 1u) { lh1[j] = 0.0; lc1[j] = 0.0; lh2[j] = 0.0; lc2[j] = 0.0; }
    } else {
        for (var j = 0u; j < H; j = j + 1u) {
            lh1[j] = dz[lam_at(j, k)];
            lc1[j] = dz[lam_at(H + j, k)];
            lh2[j] = dz[lam_at(2u * H + j, k)];
            lc2[j] = dz[lam_at(3u * H + j, k)];
        }
        lth = dz[lam_at(H4, k)];
    }
    for (var tt = p.t; tt < t_hi; tt = tt + 1u) {
        let t = t_hi - 1u - (tt - p.t);
        load_prev(t, k);
        for (var a = 0u; a < D; a = a + 1u) { xin[a] = xs[(t * D + a) * p.k_total + k]; }
        _ = cell_forward();
        let du = cst[0] * lth;
        dz[dz_at(t, 8u * H, k)] = du;
        for (var j = 0u; j < H; j = j + 1u) { lh2[j] = lh2[j] + du * ph(O_WO + j); }
        // layer 2: δ², then λh¹ += W2[:, 0..H]ᵀ δ², λh² = W2[:, H..2H]ᵀ δ²
        layer_delta(2u, t, k);
        for (var a = 0u; a < H; a = a + 1u) {
            var s1: Real = 0.0;
            var s2: Real = 0.0;
            for (var r = 0u; r < H4; r = r + 1u) {
                let row = O_W2 + r * COLS2;
                s1 = s1 + ph(row + a) * dl[r];
                s2 = s2 + ph(row + H + a) * dl[r];
            }
            lh1[a] = lh1[a] + s1;
            lh2[a] = s2;
        }
        // layer 1: δ¹, then λh¹ = W1[:, D..D+H]ᵀ δ¹ (the input x depends on g only: no adjoint)
        layer_delta(1u, t, k);
        for (var a = 0u; a < H; a = a + 1u) {
            var s: Real = 0.0;
            for (var r = 0u; r < H4; r = r + 1u) { s = s + ph(O_W1 + r * COLS1 + D + a) * dl[r]; }
            lh1[a] = s;
        }
        if (t >= 1u) { lth = lth + cst[3u + t] * gs[t * p.k_total + k]; }
    }
    for (var j = 0u; j < H; j = j + 1u) {
        dz[lam_at(j, k)] = lh1[j];
        dz[lam_at(H + j, k)] = lc1[j];
        dz[lam_at(2u * H + j, k)] = lh2[j];
        dz[lam_at(3u * H + j, k)] = lc2[j];
    }
    dz[lam_at(H4, k)] = lth;
}

// ∂L/∂φ = Σ_{t,k} δ ⊗ [input; h_prev; 1], as three outer-product blocks: rows 0..4H of dz with the layer-1
// columns [x_t; h¹_t; 1], rows 4H..8H with the layer-2 columns [h¹_{t+1}; h²_t; 1], row 8H (∂L/∂u) with the
// output columns [h²_{t+1}; 1]. Workgroup (tile, chunk): a tile is RT rows of one block with all its columns;
// the 64 lanes take the entries e = t·K + k of the chunk in an interleaved order (lane l: e0 + l + 64·i, so
// neighbouring lanes read neighbouring coordinates), each keeping RT×N accumulators, and write them to
// partial[chunk·64 + lane][param]. `finish` sums those rows for each parameter in a fixed order. No barriers,
// no atomics: deterministic.
const NMAX: u32 = 2u * H + 1u;
const RT: u32 = 8u;
const TILES01: u32 = (H4 + RT - 1u) / RT; // tiles per LSTM layer

fn column(block: u32, j: u32, t: u32, k: u32) -> Real {
    if (block == 0u) {
        if (j < D) { return xs[(t * D + j) * p.k_total + k]; }
        if (j < D + H) { return states[st(t, j - D, k)]; }
        return 1.0;
    }
    if (block == 1u) {
        if (j < H) { return states[st(t + 1u, j, k)]; }
        if (j < 2u * H) { return states[st(t, 2u * H + j - H, k)]; }
        return 1.0;
    }
    if (j < H) { return states[st(t + 1u, 2u * H + j, k)]; }
    return 1.0;
}
fn param_index(block: u32, n: u32, r: u32, j: u32) -> u32 {
    if (block == 0u) { if (j + 1u < n) { return O_W1 + r * (n - 1u) + j; } return O_B1 + r; }
    if (block == 1u) { if (j + 1u < n) { return O_W2 + r * (n - 1u) + j; } return O_B2 + r; }
    if (j + 1u < n) { return O_WO + j; }
    return O_BO;
}

@compute @workgroup_size(64)
fn outer_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    p = pb;
    let tile = wid.x;
    let c = wid.y;
    let lane = lid3.x;
    var block = 2u;
    var nn = H + 1u;
    var r0 = 0u;
    var rows = 1u;
    if (tile < TILES01) { block = 0u; nn = D + H + 1u; r0 = tile * RT; rows = min(RT, H4 - r0); }
    else if (tile < 2u * TILES01) { block = 1u; nn = 2u * H + 1u; r0 = (tile - TILES01) * RT; rows = min(RT, H4 - r0); }
    let drow0 = block * H4 + r0;
    var acc: array<Real, RT * NMAX>;
    for (var q = 0u; q < RT * NMAX; q = q + 1u) { acc[q] = 0.0; }
    var dv: array<Real, RT>;
    let total = (p.slot_in - p.t) * p.k_total;
    let e1 = min((c + 1u) * p.chunk_len, total);
    for (var e = c * p.chunk_len + lane; e < e1; e = e + 64u) {
        let t = p.t + e / p.k_total;
        let k = e - (t - p.t) * p.k_total;
        for (var q = 0u; q < RT; q = q + 1u) {
            if (q < rows) { dv[q] = dz[dz_at(t, drow0 + q, k)]; } else { dv[q] = 0.0; }
        }
        for (var j = 0u; j < NMAX; j = j + 1u) {
            if (j < nn) {
                let a = column(block, j, t, k);
                for (var q = 0u; q < RT; q = q + 1u) { acc[q * NMAX + j] = acc[q * NMAX + j] + dv[q] * a; }
            }
        }
    }
    let prow = (c * 64u + lane) * p.p_len;
    for (var q = 0u; q < RT; q = q + 1u) {
        if (q < rows) {
            for (var j = 0u; j < NMAX; j = j + 1u) {
                if (j < nn) {
                    let pi = prow + param_index(block, nn, r0 + q, j);
                    if (p.accumulate == 1u) { partial[pi] = partial[pi] + acc[q * NMAX + j]; } else { partial[pi] = acc[q * NMAX + j]; }
                }
            }
        }
    }
}

// ∂L/∂φ_i = Σ_row partial[row][i] over the chunks·64 lane rows: sums of 16 consecutive rows, then the sum of
// those (fixed order).
@compute @workgroup_size(64)
fn finish(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let i = gid.x;
    if (i >= p.p_len) { return; }
    var total: Real = 0.0;
    let nrows = p.chunks * 64u;
    for (var c0 = 0u; c0 < nrows; c0 = c0 + 16u) {
        var s: Real = 0.0;
        for (var c = c0; c < min(c0 + 16u, nrows); c = c + 1u) { s = s + partial[c * p.p_len + i]; }
        total = total + s;
    }
    dphi[i] = total;
}
