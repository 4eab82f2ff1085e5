// Hilbert-space vector kernels (engine kernel family `hilbert`): the inner products of listed pairs of vectors
// and linear combinations of listed vectors, where every vector is addressed through a table of operand codes.
// They are the whole vector work of the Hilbert LSTM (forward and reverse sweep): a Gram matrix is the dot
// products of the pairs of a basis, a reverse sweep needs the cross products ⟨λ_o, V_j⟩, and every new vector
// (and every adjoint vector) is a linear combination Σ_j κ_j V_j with per-problem coefficients.
//
// Operand code: bit 31 selects the store (0: X, 1: Y), bit 30 (outputs of `combine` only) means "accumulate
// into the current value", bits 0..29 are the element offset of problem 0's vector; problem b's vector starts at
// offset + b·stride of its store (X: x_stride, Y: y_stride).
//
// dots: pair q of this dispatch is tab[tab0 + 4q ..] = (operand a, operand b, column, mirror column) and writes
//     scal[out_off + b·out_stride + column] = ⟨a_b, b_b⟩   (and the same at the mirror column unless L2O_NONE).
//   `dots_small` (n up to the variant's small limit): one thread per (pair, problem), four interleaved partial
//   sums added as (s0 + s1) + (s2 + s3): no workgroup reduction.
//   `dots_partial` + `dots_finish`: workgroup (chunk, pair, problem) reduces CHUNK = 4096 coordinates (tree.wgsl:
//   the adapter's variant of the workgroup reduction); with one chunk it writes the result, otherwise partials
//   that `dots_finish` reduces in a fixed order. Deterministic (no atomics) in every mode.
// combine (the same bindings and operand codes) is generated per number of inputs and outputs, straight-line:
//   `l2o_engine::kernels::hilbert::combine_source`.

// (bindings, parameters, base, load, store: hilbert_common.wgsl)

fn write_dot(q: u32, b: u32, v: Real) {
    let o = p.out_off + b * p.out_stride;
    scal[o + tab[p.tab0 + 4u * q + 2u]] = v;
    let mirror = tab[p.tab0 + 4u * q + 3u];
    if (mirror != L2O_NONE) { scal[o + mirror] = v; }
}

@compute @workgroup_size(64)
fn dots_small(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let q = gid.x;
    let b = gid.y;
    if (q >= p.count || b >= p.batch) { return; }
    let ca = tab[p.tab0 + 4u * q];
    let cb = tab[p.tab0 + 4u * q + 1u];
    let ia = base(ca, b);
    let ib = base(cb, b);
    // four partial sums (coordinates ≡ 0, 1, 2, 3 mod 4), one loop per pair of stores (chosen outside it)
    let n = p.n;
    let n4 = n - n % 4u;
    let xa = (ca & STORE_Y) == 0u;
    let xb = (cb & STORE_Y) == 0u;
    var s = vec4<Real>(0.0);
    if (xa && xb) {
        for (var i = 0u; i < n4; i = i + 4u) {
            s = s + vec4<Real>(xs[ia + i], xs[ia + i + 1u], xs[ia + i + 2u], xs[ia + i + 3u])
                  * vec4<Real>(xs[ib + i], xs[ib + i + 1u], xs[ib + i + 2u], xs[ib + i + 3u]);
        }
    } else if (xa) {
        for (var i = 0u; i < n4; i = i + 4u) {
            s = s + vec4<Real>(xs[ia + i], xs[ia + i + 1u], xs[ia + i + 2u], xs[ia + i + 3u])
                  * vec4<Real>(ys[ib + i], ys[ib + i + 1u], ys[ib + i + 2u], ys[ib + i + 3u]);
        }
    } else if (xb) {
        for (var i = 0u; i < n4; i = i + 4u) {
            s = s + vec4<Real>(ys[ia + i], ys[ia + i + 1u], ys[ia + i + 2u], ys[ia + i + 3u])
                  * vec4<Real>(xs[ib + i], xs[ib + i + 1u], xs[ib + i + 2u], xs[ib + i + 3u]);
        }
    } else {
        for (var i = 0u; i < n4; i = i + 4u) {
            s = s + vec4<Real>(ys[ia + i], ys[ia + i + 1u], ys[ia + i + 2u], ys[ia + i + 3u])
                  * vec4<Real>(ys[ib + i], ys[ib + i + 1u], ys[ib + i + 2u], ys[ib + i + 3u]);
        }
    }
    if (n4 < n) { s.x = s.x + load(ca, ia + n4) * load(cb, ib + n4); }
    if (n4 + 1u < n) { s.y = s.y + load(ca, ia + n4 + 1u) * load(cb, ib + n4 + 1u); }
    if (n4 + 2u < n) { s.z = s.z + load(ca, ia + n4 + 2u) * load(cb, ib + n4 + 2u); }
    write_dot(q, b, (s.x + s.y) + (s.z + s.w));
}

@compute @workgroup_size(WG)
fn dots_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    p = pb;
    let lid = lid3.x;
    let chunk = wid.x;
    let q = wid.y;
    let b = wid.z;
    let ca = tab[p.tab0 + 4u * q];
    let cb = tab[p.tab0 + 4u * q + 1u];
    let ia = base(ca, b);
    let ib = base(cb, b);
    var s0: Real = 0.0;
    var s1: Real = 0.0;
    var s2: Real = 0.0;
    var s3: Real = 0.0;
    for (var t = 0u; t < ITEMS; t = t + 4u) {
        let i = item(chunk, lid, t);
        let i1 = item(chunk, lid, t + 1u);
        let i2 = item(chunk, lid, t + 2u);
        let i3 = item(chunk, lid, t + 3u);
        if (i < p.n) { s0 = s0 + load(ca, ia + i) * load(cb, ib + i); }
        if (i1 < p.n) { s1 = s1 + load(ca, ia + i1) * load(cb, ib + i1); }
        if (i2 < p.n) { s2 = s2 + load(ca, ia + i2) * load(cb, ib + i2); }
        if (i3 < p.n) { s3 = s3 + load(ca, ia + i3) * load(cb, ib + i3); }
    }
    sh[lid] = (s0 + s1) + (s2 + s3);
    tree(lid);
    if (lid == 0u) {
        if (p.chunks == 1u) {
            write_dot(q, b, sh[0]);
        } else {
            partial[(b * p.count + q) * p.chunks + chunk] = sh[0];
        }
    }
}

@compute @workgroup_size(WG)
fn dots_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    p = pb;
    let lid = lid3.x;
    let q = wid.x;
    let b = wid.z;
    let off = (b * p.count + q) * p.chunks;
    var acc: Real = 0.0;
    for (var c = lid; c < p.chunks; c = c + WG) { acc = acc + partial[off + c]; }
    sh[lid] = acc;
    tree(lid);
    if (lid == 0u) { write_dot(q, b, sh[0]); }
}
