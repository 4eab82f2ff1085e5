// Batched multilayer perceptrons on MNIST (tasks kernel family `mlp`): B independent networks, each with its
// own flat parameter vector θ_b and its own minibatch of M images. Equations and layouts: crates/l2o-tasks/
// src/mlp.rs (module docs), which is also the f64 oracle these kernels are tested against.
//
// θ_b = [W_1 (o_1×i_1, row-major), b_1 (o_1), W_2, b_2, …]; activations A_l [B][M][w_l] for l = 1..L (A_L holds
// the logits) and deltas D_l = ∂f/∂(pre-activation of layer l), same layout; A_0 = image pixels / 255 read
// through the minibatch indices idx [B][M].

struct Params {
    batch: u32, m: u32, n: u32, n_images: u32,
    pixels: u32, mode: u32, act: u32, first: u32,
    rows: u32, cols: u32, inner: u32, w_off: u32,
    b_off: u32, in_off: u32, out_off: u32, in_w: u32,
    out_w: u32, seed: u32, fixed: u32, q0: u32,
}

@group(0) @binding(0) var<storage, read> pb: Params;
// A private copy of the parameters, made at the top of every entry point: reads of a storage buffer inside
// loops are gathers on the software adapter (and a uniform buffer would be recompiled per bind group there).
var<private> p: Params;
@group(0) @binding(1) var<storage, read> theta: array<Real>;
@group(0) @binding(2) var<storage, read_write> grad: array<Real>;
@group(0) @binding(3) var<storage, read> imgs: array<vec4<u32>>;   // 16 pixels per vec4, 4 per word, little-endian
@group(0) @binding(4) var<storage, read> labels: array<u32>;
@group(0) @binding(5) var<storage, read_write> idx: array<u32>; // [B][M]
@group(0) @binding(6) var<storage, read_write> acts: array<Real>;
@group(0) @binding(7) var<storage, read_write> deltas: array<Real>;
@group(0) @binding(8) var<storage, read_write> terms: array<Real>; // [B][M] per-image losses / M
@group(0) @binding(9) var<storage, read_write> ctr: array<u32>;   // [0]: minibatches drawn so far
// partial sums of the generated products (l2o_tasks::mlp_gemm, variant `lanes`): [chunk][network][r][c]
@group(0) @binding(10) var<storage, read_write> part: array<Real>;

// murmur3's 32-bit finaliser: the minibatch of network b at draw s is idx_i = h(seed, b, s, i) mod N (mlp.rs
// mirrors it on the host).
fn fmix(x0: u32) -> u32 {
    var x = x0;
    x = x ^ (x >> 16u);
    x = x * 0x85ebca6bu;
    x = x ^ (x >> 13u);
    x = x * 0xc2b2ae35u;
    x = x ^ (x >> 16u);
    return x;
}
fn draw(seed: u32, b: u32, s: u32, i: u32) -> u32 {
    return fmix(fmix(fmix(fmix(seed) ^ b) ^ s) ^ i);
}

fn pixel(img: u32, k: u32) -> Real {
    let e = img * p.pixels + k;
    let w = imgs[e / 16u][(e / 4u) % 4u];
    return Real((w >> (8u * (e % 4u))) & 0xffu) / 255.0;
}

fn activate(z: Real) -> Real {
    switch p.act {
        case 1u: { return 1.0 / (1.0 + l2o_exp(-z)); }
        case 2u: { return max(z, 0.0); }
        case 3u: { return l2o_tanh(z); }
        default: { return z; }
    }
}
// derivative from the activation's output a
fn dact(a: Real) -> Real {
    switch p.act {
        case 1u: { return a * (1.0 - a); }
        case 2u: { return select(Real(0.0), Real(1.0), a > 0.0); }
        case 3u: { return 1.0 - a * a; }
        default: { return 1.0; }
    }
}

// One thread per (i, b): the image indices of this draw (or the fixed set), then thread 0 of network 0 is
// not special: the counter is advanced by `advance`, a separate dispatch.
@compute @workgroup_size(64)
fn sample(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let i = gid.x;
    let b = gid.y;
    if (i >= p.m || b >= p.batch) { return; }
    if (p.fixed == 0u) {
        idx[b * p.m + i] = draw(p.seed, b, ctr[0], i) % p.n_images;
    }
}

@compute @workgroup_size(1)
fn advance() {
    p = pb;
    ctr[0] = ctr[0] + 1u;
}

// The three products of a layer as one tiled GEMM C[r][c] = Σ_k A(r, k)·B(k, c), 64×16 output tiles with K-tiles
// of 16 through workgroup memory, z = network:
//   mode 0 (forward):   r = image i, c = unit o, k = input j: C = A_{l−1}[i][j]·W[o][j]; A_l = act(C + b[o])
//   mode 1 (∂W):        r = unit o, c = input j, k = image i: ∂W[o][j] = Σ_i D_l[i][o]·A_{l−1}[i][j]
//   mode 2 (∂A_{l−1}):  r = image i, c = input j, k = unit o: D_{l−1}[i][j] = (Σ_o D_l[i][o]·W[o][j])·act'(A_{l−1})
const TS: u32 = 16u;
// rows per thread: a workgroup of 16×16 threads computes a (16·RPT)×16 tile, so each barrier pair is amortised
// over RPT outputs per thread (barriers dominate on CPU drivers).
const RPT: u32 = 4u;
var<workgroup> ta: array<Real, 1024>; // (16·RPT) × 16
var<workgroup> tb: array<Real, 256>;

fn in_act(b: u32, i: u32, j: u32) -> Real {
    if (p.first == 1u) { return pixel(idx[b * p.m + i], j); }
    return acts[p.in_off + (b * p.m + i) * p.in_w + j];
}
fn w_at(b: u32, o: u32, j: u32) -> Real { return theta[b * p.n + p.w_off + o * p.in_w + j]; }
fn d_out(b: u32, i: u32, o: u32) -> Real { return deltas[p.out_off + (b * p.m + i) * p.out_w + o]; }

fn load_a(b: u32, r: u32, k: u32) -> Real {
    if (r >= p.rows || k >= p.inner) { return 0.0; }
    switch p.mode {
        case 0u: { return in_act(b, r, k); }
        case 1u: { return d_out(b, k, r); }
        default: { return d_out(b, r, k); }
    }
}
fn load_b(b: u32, k: u32, c: u32) -> Real {
    if (k >= p.inner || c >= p.cols) { return 0.0; }
    switch p.mode {
        case 0u: { return w_at(b, c, k); }
        case 1u: { return in_act(b, k, c); }
        default: { return w_at(b, k, c); }
    }
}

fn store(b: u32, r: u32, c: u32, s: Real) {
    switch p.mode {
        case 0u: {
            acts[p.out_off + (b * p.m + r) * p.out_w + c] = activate(s + theta[b * p.n + p.b_off + c]);
        }
        case 1u: {
            grad[b * p.n + p.w_off + r * p.in_w + c] = s;
        }
        default: {
            let a = acts[p.in_off + (b * p.m + r) * p.in_w + c];
            deltas[p.in_off + (b * p.m + r) * p.in_w + c] = s * dact(a);
        }
    }
}

@compute @workgroup_size(16, 16)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    p = pb;
    let b = wid.z;
    let r0 = wid.y * TS * RPT;
    let c = wid.x * TS + lid.x;
    var s: array<Real, RPT>;
    for (var q = 0u; q < RPT; q = q + 1u) { s[q] = 0.0; }
    for (var k0 = 0u; k0 < p.inner; k0 = k0 + TS) {
        for (var q = 0u; q < RPT; q = q + 1u) {
            let rr = q * TS + lid.y;
            ta[rr * TS + lid.x] = load_a(b, r0 + rr, k0 + lid.x);
        }
        tb[lid.y * TS + lid.x] = load_b(b, k0 + lid.y, c);
        workgroupBarrier();
        for (var k = 0u; k < TS; k = k + 1u) {
            let bv = tb[k * TS + lid.x];
            for (var q = 0u; q < RPT; q = q + 1u) { s[q] = s[q] + ta[(q * TS + lid.y) * TS + k] * bv; }
        }
        workgroupBarrier();
    }
    for (var q = 0u; q < RPT; q = q + 1u) {
        let r = r0 + q * TS + lid.y;
        if (r < p.rows && c < p.cols) { store(b, r, c, s[q]); }
    }
}

// ∂b_l[o] = Σ_i D_l[i][o]: one thread per (o, b), images summed in order.
@compute @workgroup_size(64)
fn bias_grad(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let o = gid.x;
    let b = gid.y;
    if (o >= p.out_w || b >= p.batch) { return; }
    var s: Real = 0.0;
    for (var i = 0u; i < p.m; i = i + 1u) { s = s + d_out(b, i, o); }
    grad[b * p.n + p.b_off + o] = s;
}

// Softmax cross-entropy on the logits A_L (width p.out_w): per image the loss log Σ_c e^{z_c} − z_y (divided
// by M, so the sum over images is the mean) and D_L = (softmax(z) − onehot(y)) / M.
@compute @workgroup_size(64)
fn softmax_ce(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let i = gid.x;
    let b = gid.y;
    if (i >= p.m || b >= p.batch) { return; }
    let base = p.out_off + (b * p.m + i) * p.out_w;
    var zmax = acts[base];
    for (var c = 1u; c < p.out_w; c = c + 1u) { zmax = max(zmax, acts[base + c]); }
    var se: Real = 0.0;
    for (var c = 0u; c < p.out_w; c = c + 1u) { se = se + l2o_exp(acts[base + c] - zmax); }
    let y = labels[idx[b * p.m + i]];
    let inv_m = 1.0 / Real(p.m);
    terms[b * p.m + i] = (zmax + l2o_log(se) - acts[base + y]) * inv_m;
    for (var c = 0u; c < p.out_w; c = c + 1u) {
        var d = l2o_exp(acts[base + c] - zmax) / se;
        if (c == y) { d = d - 1.0; }
        deltas[base + c] = d * inv_m;
    }
}
