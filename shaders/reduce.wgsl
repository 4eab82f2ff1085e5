// Batched inner products, Gram matrices and sums (engine kernel family `reduce`).
//
// Operands are views into buffers laid out per problem: element i of problem b is at off + b·stride + i.
// Pass 1 (`partial_main`): workgroup (chunk, pair, b) reduces CHUNK = 4096 coordinates of one pair (tree.wgsl:
// the adapter's variant of the workgroup reduction). With one chunk it writes the result directly; otherwise it
// writes a partial and pass 2 (`finish_main`) reduces the partials of each (pair, b) in a fixed order
// (deterministic: no atomics).
//
// Small n (`small_main`: n ≤ 256 on GPUs, 8192 on the software adapter — Reduction::small_n): one thread per
// (pair, b) sums four interleaved partial sums s_q = Σ_{i ≡ q mod 4} and returns (s_0 + s_1) + (s_2 + s_3): no
// workgroup memory, no barriers.
//
// Modes: 0 dot ⟨a,b⟩ (one pair); 1 sum Σ a_i; 2 Gram: the k×k matrix G_ij = ⟨v_i, v_j⟩ of the k vectors
// v_j = a[off + j·vec_step ..], pairs i ≤ j enumerated row by row, written symmetric (row-major) at out_col.
// The dot result is multiplied by scal[b][scale_col] when scale_col != NONE (ρ_i·⟨s_i, q⟩ in the two-loop).

struct Params {
    n: u32, a_off: u32, a_stride: u32, b_off: u32,
    b_stride: u32, chunks: u32, k: u32, out_col: u32,
    out_stride: u32, scale_col: u32, mode: u32, vec_step: u32,
    pairs: u32, batch: u32, aligned: u32, p2: u32,
}

@group(0) @binding(0) var<storage, read> pb: Params;
// A private copy of the parameters, made at the top of every entry point: reads of a storage buffer inside
// loops are gathers on the software adapter (and a uniform buffer would be recompiled per bind group there).
var<private> p: Params;
@group(0) @binding(1) var<storage, read> va: array<Real>;
@group(0) @binding(2) var<storage, read> vb: array<Real>;
@group(0) @binding(3) var<storage, read_write> partial: array<Real>;
@group(0) @binding(4) var<storage, read_write> scal: array<Real>;
// The same buffers as va, vb, read four elements at a time (used when every operand offset and stride is a
// multiple of 4: p.aligned = 1).
@group(0) @binding(5) var<storage, read> va4: array<vec4<Real>>;
@group(0) @binding(6) var<storage, read> vb4: array<vec4<Real>>;


// Pair q of the row-major upper triangle of a k×k matrix (k ≤ 64): row i = the last row whose first pair
// index s_i = Σ_{r<i} (k − r) is ≤ q. A loop of fixed trip count without `break` (Mesa's GL compiler
// mis-handles the data-dependent loop this replaces when q differs between invocations).
fn pair_ij(pair: u32) -> vec2<u32> {
    var i = 0u;
    var start = 0u;
    var s = 0u;
    for (var r = 0u; r < 64u; r = r + 1u) {
        if (r < p.k && pair >= s) { i = r; start = s; }
        s = s + (p.k - min(r, p.k));
    }
    return vec2<u32>(i, i + pair - start);
}

fn write_out(pair: u32, b: u32, v: Real) {
    let base = b * p.out_stride + p.out_col;
    if (p.mode == 2u) {
        let ij = pair_ij(pair);
        scal[base + ij.x * p.k + ij.y] = v;
        scal[base + ij.y * p.k + ij.x] = v;
    } else {
        var s: Real = 1.0;
        if (p.scale_col != NONE) { s = scal[b * p.out_stride + p.scale_col]; }
        scal[base] = s * v;
    }
}

@compute @workgroup_size(WG)
fn partial_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    p = pb;
    let lid = lid3.x;
    let chunk = wid.x;
    let pair = wid.y;
    let b = wid.z;
    var ao = p.a_off + b * p.a_stride;
    var bo = p.b_off + b * p.b_stride;
    if (p.mode == 2u) {
        let ij = pair_ij(pair);
        ao = p.a_off + b * p.a_stride + ij.x * p.vec_step;
        bo = p.a_off + b * p.a_stride + ij.y * p.vec_step;
    }
    var s = vec4<Real>(0.0);
    if (CONTIG && p.aligned == 1u) {
        // contiguous items, four at a time: the same four partial sums (items ≡ 0, 1, 2, 3 mod 4) as below;
        // the mode is tested outside the loops
        let i0 = item(chunk, lid, 0u);
        let iend = min(i0 + ITEMS, p.n);
        let a4 = (ao + i0) / 4u;
        let b4 = (bo + i0) / 4u;
        let full = select(0u, (iend - i0) / 4u, iend > i0);
        if (p.mode == 0u) {
            for (var q = 0u; q < full; q = q + 1u) { s = s + va4[a4 + q] * vb4[b4 + q]; }
        } else if (p.mode == 1u) {
            for (var q = 0u; q < full; q = q + 1u) { s = s + va4[a4 + q]; }
        } else {
            for (var q = 0u; q < full; q = q + 1u) { s = s + va4[a4 + q] * va4[b4 + q]; }
        }
        let i = i0 + 4u * full;
        if (i < iend) { s.x = s.x + term(ao, bo, i); }
        if (i + 1u < iend) { s.y = s.y + term(ao, bo, i + 1u); }
        if (i + 2u < iend) { s.z = s.z + term(ao, bo, i + 2u); }
    } else {
        for (var t = 0u; t < ITEMS; t = t + 4u) {
            let i = item(chunk, lid, t);
            let i1 = item(chunk, lid, t + 1u);
            let i2 = item(chunk, lid, t + 2u);
            let i3 = item(chunk, lid, t + 3u);
            if (i < p.n) { s.x = s.x + term(ao, bo, i); }
            if (i1 < p.n) { s.y = s.y + term(ao, bo, i1); }
            if (i2 < p.n) { s.z = s.z + term(ao, bo, i2); }
            if (i3 < p.n) { s.w = s.w + term(ao, bo, i3); }
        }
    }
    sh[lid] = (s.x + s.y) + (s.z + s.w);
    tree(lid);
    if (lid == 0u) {
        if (p.chunks == 1u) {
            write_out(pair, b, sh[0]);
        } else {
            partial[(b * p.pairs + pair) * p.chunks + chunk] = sh[0];
        }
    }
}

@compute @workgroup_size(WG)
fn finish_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    p = pb;
    let lid = lid3.x;
    let pair = wid.x;
    let b = wid.z;
    let base = (b * p.pairs + pair) * p.chunks;
    var acc: Real = 0.0;
    for (var c = lid; c < p.chunks; c = c + WG) {
        acc = acc + partial[base + c];
    }
    sh[lid] = acc;
    tree(lid);
    if (lid == 0u) {
        write_out(pair, b, sh[0]);
    }
}

fn term(ao: u32, bo: u32, i: u32) -> Real {
    if (p.mode == 1u) { return va[ao + i]; }
    if (p.mode == 2u) { return va[ao + i] * va[bo + i]; }
    return va[ao + i] * vb[bo + i];
}

@compute @workgroup_size(64)
fn small_main(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let id = gid.x;
    if (id >= p.pairs * p.batch) { return; }
    let pair = id % p.pairs;
    let b = id / p.pairs;
    var ao = p.a_off + b * p.a_stride;
    var bo = p.b_off + b * p.b_stride;
    if (p.mode == 2u) {
        let ij = pair_ij(pair);
        ao = p.a_off + b * p.a_stride + ij.x * p.vec_step;
        bo = p.a_off + b * p.a_stride + ij.y * p.vec_step;
    }
    let n = p.n;
    let n4 = n - n % 4u;
    var s = vec4<Real>(0.0);
    if (p.mode == 0u) {
        for (var i = 0u; i < n4; i = i + 4u) {
            s = s + vec4<Real>(va[ao + i], va[ao + i + 1u], va[ao + i + 2u], va[ao + i + 3u])
                  * vec4<Real>(vb[bo + i], vb[bo + i + 1u], vb[bo + i + 2u], vb[bo + i + 3u]);
        }
    } else if (p.mode == 1u) {
        for (var i = 0u; i < n4; i = i + 4u) {
            s = s + vec4<Real>(va[ao + i], va[ao + i + 1u], va[ao + i + 2u], va[ao + i + 3u]);
        }
    } else {
        for (var i = 0u; i < n4; i = i + 4u) {
            s = s + vec4<Real>(va[ao + i], va[ao + i + 1u], va[ao + i + 2u], va[ao + i + 3u])
                  * vec4<Real>(va[bo + i], va[bo + i + 1u], va[bo + i + 2u], va[bo + i + 3u]);
        }
    }
    if (n4 < n) { s.x = s.x + term(ao, bo, n4); }
    if (n4 + 1u < n) { s.y = s.y + term(ao, bo, n4 + 1u); }
    if (n4 + 2u < n) { s.z = s.z + term(ao, bo, n4 + 2u); }
    write_out(pair, b, (s.x + s.y) + (s.z + s.w));
}
