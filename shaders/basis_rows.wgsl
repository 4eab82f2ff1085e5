// The basis ring's Gram rows for n > CH (engine kernel family `basis_rows`; `basis.wgsl` has the layout and the
// other entry points): the sums of `rows_lanes` with every accumulator a named variable and the vectors read as
// vec4 where n is a multiple of 4 (p.pad = 1: every vector offset b·K·n + j·n is then aligned). Split the way the
// blocked Gram of reduce.wgsl splits its pairs: workgroups of 8 threads, workgroup w covering coordinates
// [w·8·SEG, (w+1)·8·SEG), lane l taking the four coordinates 4l … 4l + 3, then 4l + 32 …, so the 8 lanes of one
// load read 32 neighbouring coordinates of a vector; thread c = w·8 + l writes its R·K sums as partial c, and
// `rows_finish` (basis.wgsl) adds the partials in order. The launcher generates `lanes(b, c, lo, hi, mid)` per
// (K, R) (constant indices keep the R·K sums in registers on the software adapter); the default defines hold a
// loop form for validation.

// (Params, pb, p, slot, frozen: shaders/basis_common.wgsl, prepended.)
@group(0) @binding(1) var<storage, read> vecs: array<Real>;
@group(0) @binding(2) var<storage, read> vecs4: array<vec4<Real>>;
@group(0) @binding(3) var<storage, read_write> partial: array<Real>;
@group(0) @binding(4) var<storage, read> status: array<u32>;

const SEG: u32 = 1024u;

// Coordinates i … i + 3 of the vector at element offset o, zero past n.
fn load4(o: u32, i: u32) -> vec4<Real> {
    var r = vec4<Real>(0.0);
    if (i < p.n) { r.x = vecs[o + i]; }
    if (i + 1u < p.n) { r.y = vecs[o + i + 1u]; }
    if (i + 2u < p.n) { r.z = vecs[o + i + 2u]; }
    if (i + 3u < p.n) { r.w = vecs[o + i + 3u]; }
    return r;
}

@compute @workgroup_size(8)
fn rows_lanes(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>,
              @builtin(workgroup_id) wid: vec3<u32>) {
    p = pb;
    let c = gid.x;
    let b = gid.y;
    if (c >= p.chunks || b >= p.batch || frozen(b)) { return; }
    let w0 = wid.x * 8u * SEG;
    let lo = w0 + 4u * lid3.x;
    let hi = min(w0 + 8u * SEG, p.n);
    // [lo, mid): whole vec4s read as vec4 when aligned; [mid, hi): the scalar path (mid ≡ lo mod 32)
    var mid = lo;
    let e = min(hi, p.n - min(p.n, 3u));
    if (p.pad == 1u && e > lo) { mid = lo + 32u * ((e - lo + 31u) / 32u); }
    lanes(b, c, lo, hi, mid);
}
