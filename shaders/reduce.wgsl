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
// The dot result is multiplied by scal[b][scale_col] when scale_col != L2O_NONE (ρ_i·⟨s_i, q⟩ in the two-loop).
//
// Blocked Gram (`gram_block_main`, the `seq` variant for n > small_n): the k vectors are taken in blocks of
// four; one thread per (segment of SEG coordinates, block pair I ≤ J, b) reads the ≤ 8 vectors of its two
// blocks once per coordinate and accumulates their ≤ 16 products — each vector is read ⌈k/4⌉ times instead of
// k times (once for k ≤ 4), no workgroup memory, no barrier — and writes one partial per pair and segment;
// `finish_main` sums the segments in order.

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


// Entry q of the row-major upper triangle of a k×k matrix (k ≤ 64): row i = the last row whose first entry
// index s_i = Σ_{r<i} (k − r) is ≤ q. A loop of fixed trip count without `break` (Mesa's GL compiler
// mis-handles the data-dependent loop this replaces when q differs between invocations).
fn tri_ij(q: u32, k: u32) -> vec2<u32> {
    var i = 0u;
    var start = 0u;
    var s = 0u;
    for (var r = 0u; r < 64u; r = r + 1u) {
        if (r < k && q >= s) { i = r; start = s; }
        s = s + (k - min(r, k));
    }
    return vec2<u32>(i, i + q - start);
}

// Pair `pair` (i ≤ j) of the Gram matrix of the p.k vectors.
fn pair_ij(pair: u32) -> vec2<u32> {
    return tri_ij(pair, p.k);
}

// Offsets of the two operands of output `pair` of problem b (for a Gram pair: vectors i and j of `a`).
fn operands(pair: u32, b: u32) -> vec2<u32> {
    if (p.mode == 2u) {
        let ij = pair_ij(pair);
        let o = p.a_off + b * p.a_stride;
        return vec2<u32>(o + ij.x * p.vec_step, o + ij.y * p.vec_step);
    }
    return vec2<u32>(p.a_off + b * p.a_stride, p.b_off + b * p.b_stride);
}

fn write_out(pair: u32, b: u32, v: Real) {
    let base = b * p.out_stride + p.out_col;
    if (p.mode == 2u) {
        let ij = pair_ij(pair);
        scal[base + ij.x * p.k + ij.y] = v;
        scal[base + ij.y * p.k + ij.x] = v;
    } else {
        var s: Real = 1.0;
        if (p.scale_col != L2O_NONE) { s = scal[b * p.out_stride + p.scale_col]; }
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
    let off = operands(pair, b);
    let ao = off.x;
    let bo = off.y;
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
    let off = operands(pair, b);
    let ao = off.x;
    let bo = off.y;
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

// Coordinates per thread of `gram_block_main` (a multiple of 4; a workgroup of 8 covers 8·SEG).
const SEG: u32 = 2000u;

// Offset of vector `vec` (clamped to the last) of problem b.
fn goff(b: u32, vec: u32) -> u32 {
    return p.a_off + b * p.a_stride + min(vec, p.k - 1u) * p.vec_step;
}

// Four consecutive coordinates o + i .. o + i + 3, zero past n (the scalar path: unaligned operands, the tail).
fn gload(o: u32, i: u32) -> vec4<Real> {
    var r = vec4<Real>(0.0);
    if (i < p.n) { r.x = va[o + i]; }
    if (i + 1u < p.n) { r.y = va[o + i + 1u]; }
    if (i + 2u < p.n) { r.z = va[o + i + 2u]; }
    if (i + 3u < p.n) { r.w = va[o + i + 3u]; }
    return r;
}

// Index of pair (i, j), i ≤ j, in the row-major upper triangle (the inverse of pair_ij).
fn pair_of(i: u32, j: u32) -> u32 {
    return i * p.k - (i * (i - min(i, 1u))) / 2u + (j - i);
}

fn gput(b: u32, seg: u32, i: u32, j: u32, v: Real) {
    if (i < p.k && j < p.k && i <= j) {
        partial[(b * p.pairs + pair_of(i, j)) * p.chunks + seg] = v;
    }
}

@compute @workgroup_size(8)
fn gram_block_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>,
                   @builtin(workgroup_id) wid: vec3<u32>) {
    p = pb;
    // workgroup w covers [w·8·SEG, (w+1)·8·SEG); its 8 threads interleave four coordinates at a time (thread l
    // takes 4l, 4l + 32, …), so the 8 lanes of one load read 128 contiguous bytes of each vector
    let seg = gid.x;
    let lane = lid3.x;
    if (seg >= p.chunks) { return; }
    let b = gid.z;
    // block pair gid.y = (I, J), I ≤ J, row-major over the ⌈k/4⌉ blocks
    let blocks = tri_ij(gid.y, (p.k + 3u) / 4u);
    let bi = blocks.x;
    let bj = blocks.y;
    let i0 = 4u * bi;
    let j0 = 4u * bj;
    let ox0 = goff(b, i0); let ox1 = goff(b, i0 + 1u); let ox2 = goff(b, i0 + 2u); let ox3 = goff(b, i0 + 3u);
    let oy0 = goff(b, j0); let oy1 = goff(b, j0 + 1u); let oy2 = goff(b, j0 + 2u); let oy3 = goff(b, j0 + 3u);
    let w0 = wid.x * 8u * SEG;
    let lo = w0 + 4u * lane;
    let hi = min(w0 + 8u * SEG, p.n);
    // [lo, mid): whole vec4s read as vec4 when aligned; [mid, hi): the scalar path (mid ≡ lo mod 32)
    var mid = lo;
    let e = min(hi, p.n - min(p.n, 3u)); // full vec4s start below e
    if (p.aligned == 1u && e > lo) { mid = lo + 32u * ((e - lo + 31u) / 32u); }
    var a00: Real = 0.0; var a01: Real = 0.0; var a02: Real = 0.0; var a03: Real = 0.0;
    var a10: Real = 0.0; var a11: Real = 0.0; var a12: Real = 0.0; var a13: Real = 0.0;
    var a20: Real = 0.0; var a21: Real = 0.0; var a22: Real = 0.0; var a23: Real = 0.0;
    var a30: Real = 0.0; var a31: Real = 0.0; var a32: Real = 0.0; var a33: Real = 0.0;
    if (bi == bj) {
        // one block: its 10 distinct products
        for (var i = lo; i < mid; i = i + 32u) {
            let x0 = va4[(ox0 + i) / 4u]; let x1 = va4[(ox1 + i) / 4u];
            let x2 = va4[(ox2 + i) / 4u]; let x3 = va4[(ox3 + i) / 4u];
            a00 = a00 + dot(x0, x0); a01 = a01 + dot(x0, x1); a02 = a02 + dot(x0, x2); a03 = a03 + dot(x0, x3);
            a11 = a11 + dot(x1, x1); a12 = a12 + dot(x1, x2); a13 = a13 + dot(x1, x3);
            a22 = a22 + dot(x2, x2); a23 = a23 + dot(x2, x3);
            a33 = a33 + dot(x3, x3);
        }
        for (var i = mid; i < hi; i = i + 32u) {
            let x0 = gload(ox0, i); let x1 = gload(ox1, i); let x2 = gload(ox2, i); let x3 = gload(ox3, i);
            a00 = a00 + dot(x0, x0); a01 = a01 + dot(x0, x1); a02 = a02 + dot(x0, x2); a03 = a03 + dot(x0, x3);
            a11 = a11 + dot(x1, x1); a12 = a12 + dot(x1, x2); a13 = a13 + dot(x1, x3);
            a22 = a22 + dot(x2, x2); a23 = a23 + dot(x2, x3);
            a33 = a33 + dot(x3, x3);
        }
    } else {
        for (var i = lo; i < mid; i = i + 32u) {
            let x0 = va4[(ox0 + i) / 4u]; let x1 = va4[(ox1 + i) / 4u];
            let x2 = va4[(ox2 + i) / 4u]; let x3 = va4[(ox3 + i) / 4u];
            let y0 = va4[(oy0 + i) / 4u]; let y1 = va4[(oy1 + i) / 4u];
            let y2 = va4[(oy2 + i) / 4u]; let y3 = va4[(oy3 + i) / 4u];
            a00 = a00 + dot(x0, y0); a01 = a01 + dot(x0, y1); a02 = a02 + dot(x0, y2); a03 = a03 + dot(x0, y3);
            a10 = a10 + dot(x1, y0); a11 = a11 + dot(x1, y1); a12 = a12 + dot(x1, y2); a13 = a13 + dot(x1, y3);
            a20 = a20 + dot(x2, y0); a21 = a21 + dot(x2, y1); a22 = a22 + dot(x2, y2); a23 = a23 + dot(x2, y3);
            a30 = a30 + dot(x3, y0); a31 = a31 + dot(x3, y1); a32 = a32 + dot(x3, y2); a33 = a33 + dot(x3, y3);
        }
        for (var i = mid; i < hi; i = i + 32u) {
            let x0 = gload(ox0, i); let x1 = gload(ox1, i); let x2 = gload(ox2, i); let x3 = gload(ox3, i);
            let y0 = gload(oy0, i); let y1 = gload(oy1, i); let y2 = gload(oy2, i); let y3 = gload(oy3, i);
            a00 = a00 + dot(x0, y0); a01 = a01 + dot(x0, y1); a02 = a02 + dot(x0, y2); a03 = a03 + dot(x0, y3);
            a10 = a10 + dot(x1, y0); a11 = a11 + dot(x1, y1); a12 = a12 + dot(x1, y2); a13 = a13 + dot(x1, y3);
            a20 = a20 + dot(x2, y0); a21 = a21 + dot(x2, y1); a22 = a22 + dot(x2, y2); a23 = a23 + dot(x2, y3);
            a30 = a30 + dot(x3, y0); a31 = a31 + dot(x3, y1); a32 = a32 + dot(x3, y2); a33 = a33 + dot(x3, y3);
        }
    }
    gput(b, seg, i0, j0, a00); gput(b, seg, i0, j0 + 1u, a01);
    gput(b, seg, i0, j0 + 2u, a02); gput(b, seg, i0, j0 + 3u, a03);
    gput(b, seg, i0 + 1u, j0, a10); gput(b, seg, i0 + 1u, j0 + 1u, a11);
    gput(b, seg, i0 + 1u, j0 + 2u, a12); gput(b, seg, i0 + 1u, j0 + 3u, a13);
    gput(b, seg, i0 + 2u, j0, a20); gput(b, seg, i0 + 2u, j0 + 1u, a21);
    gput(b, seg, i0 + 2u, j0 + 2u, a22); gput(b, seg, i0 + 2u, j0 + 3u, a23);
    gput(b, seg, i0 + 3u, j0, a30); gput(b, seg, i0 + 3u, j0 + 1u, a31);
    gput(b, seg, i0 + 3u, j0 + 2u, a32); gput(b, seg, i0 + 3u, j0 + 3u, a33);
}
