// The basis ring (engine kernel family `basis`): per problem a ring of K basis vectors v_0 … v_{K−1} of n
// coordinates, laid out vecs[b·v_stride + j·n + i], and its Gram matrix G_jl = ⟨v_j, v_l⟩ kept beside it,
// gram[g_off + b·g_stride + j·K + l]. This is the schedule of a Hilbert-space program (vector-free L-BFGS, Chen,
// Wang & Zhou 2014; the Hilbert LSTM): per step one pass computes the Gram rows of the R newest vectors, a scalar
// program per problem runs on G, and one pass writes a combination Σ_j c_j v_j.
//
// rows_small / rows_lanes + rows_finish: the Gram rows of the R slots s_0 … s_{R−1} (p.slot0..3):
//     G[s_a][l] = ⟨v_{s_a}, v_l⟩ for every l < K, and the mirror G[l][s_a] where l is not itself a new slot
//   (that row writes it), so each entry is written once. One pass over the vectors, each read once, R·K sums per
//   thread: for small n one thread per problem sums in coordinate order and writes G (rows_small); above,
//   rows_lanes (shaders/basis_rows.wgsl) writes one partial per lane, partial[(b·chunks + c)·R·K + q], and rows_finish adds
//   them in order. No barriers, no atomics: deterministic.
// combine: out[out_off + b·out_stride + i] ← [out…] + Σ_j coef[coef_off + b·coef_stride + j] · v_j[i]
//   (the sum over j in order; flag ACCUM keeps the current value). With flag OUT_RING the output is the ring's
//   own slot out_off instead (vecs[b·v_stride + out_off·n + i]): each thread reads all K vectors at its
//   coordinate before writing it, so a combination may overwrite one of its inputs.
// Every store binding is read_write so that one buffer may serve several roles (coefficients beside G, say).
// With flag USE_STATUS, problems whose status is not 0 are left untouched by every entry point.
// K (vectors) and R (new rows, 1 … 4) are compile-time constants (defines).

// (Params, pb, p, slot, frozen: shaders/basis_common.wgsl, prepended.)
@group(0) @binding(1) var<storage, read_write> vecs: array<Real>;
@group(0) @binding(2) var<storage, read_write> gram: array<Real>;
@group(0) @binding(3) var<storage, read_write> partial: array<Real>;
@group(0) @binding(4) var<storage, read_write> coef: array<Real>;
@group(0) @binding(5) var<storage, read_write> out: array<Real>;
@group(0) @binding(6) var<storage, read> status: array<u32>;

const ACCUM: u32 = 1u;
const OUT_RING: u32 = 4u;

// Write output q = a·K + l of problem b: the row entry, and its mirror unless l is a new slot.
fn write_gram(b: u32, q: u32, v: Real) {
    let a = q / K;
    let l = q % K;
    let s = slot(a);
    let g = p.g_off + b * p.g_stride;
    gram[g + s * K + l] = v;
    var l_new = false;
    for (var a2 = 0u; a2 < R; a2 = a2 + 1u) {
        if (slot(a2) == l) { l_new = true; }
    }
    if (!l_new) { gram[g + l * K + s] = v; }
}

// rows_small (n ≤ 256, the launcher's CH): one thread per problem keeps the R·K sums in coordinate
// order and writes G.
@compute @workgroup_size(64)
fn rows_small(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let b = gid.x;
    if (b >= p.batch || frozen(b)) { return; }
    var sl: array<u32, R>;
    for (var a = 0u; a < R; a = a + 1u) { sl[a] = slot(a); }
    var acc: array<Real, RK>;
    for (var q = 0u; q < RK; q = q + 1u) { acc[q] = 0.0; }
    let v0 = b * p.v_stride;
    let n = p.n;
    for (var i = 0u; i < n; i = i + 1u) {
        var nv: array<Real, R>;
        for (var a = 0u; a < R; a = a + 1u) { nv[a] = vecs[v0 + sl[a] * n + i]; }
        for (var l = 0u; l < K; l = l + 1u) {
            let x = vecs[v0 + l * n + i];
            for (var a = 0u; a < R; a = a + 1u) { acc[a * K + l] = acc[a * K + l] + nv[a] * x; }
        }
    }
    for (var q = 0u; q < RK; q = q + 1u) { write_gram(b, q, acc[q]); }
}

// rows_lanes (n > 256) is family `basis_rows` (shaders/basis_rows.wgsl): the same sums per lane, written as
// partials; rows_finish adds them in order.

@compute @workgroup_size(64)
fn rows_finish(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let q = gid.x;
    let b = gid.y;
    if (q >= RK || b >= p.batch || frozen(b)) { return; }
    var s: Real = 0.0;
    for (var c = 0u; c < p.chunks; c = c + 1u) { s = s + partial[(b * p.chunks + c) * RK + q]; }
    write_gram(b, q, s);
}

// combine: thread t of problem b handles the coordinates t, t + T, t + 2T, … (T threads in all, so the lanes of
// one load read neighbouring coordinates) through `comb(b, t, T)`, which the launcher generates per K with the K
// coefficients read once per thread (the default defines hold a loop form with the same sums in the same order).
@compute @workgroup_size(256)
fn combine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = pb;
    let b = gid.y;
    if (b >= p.batch || frozen(b)) { return; }
    comb(b, gid.x, nwg.x * 256u);
}

// Write coordinate i of problem b's output: s, or the current value + s (ACCUM); into the ring's slot out_off
// (OUT_RING) or the output buffer.
fn put(b: u32, i: u32, s: Real) {
    if ((p.flags & OUT_RING) != 0u) {
        let o = b * p.v_stride + p.out_off * p.n + i;
        var v = s;
        if ((p.flags & ACCUM) != 0u) { v = vecs[o] + s; }
        vecs[o] = v;
    } else {
        let o = p.out_off + b * p.out_stride + i;
        var v = s;
        if ((p.flags & ACCUM) != 0u) { v = out[o] + s; }
        out[o] = v;
    }
}
