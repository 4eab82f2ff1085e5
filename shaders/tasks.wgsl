// Optimizees (kernel family `tasks`, launched from crates/l2o-tasks). Every entry point writes per-row terms of
// the loss into a scratch buffer (reduced afterwards by the engine's deterministic `reduce` kernels) and the
// gradient ∇f_b(θ_b) into `grad`.
//
// Layout: element i of problem b of θ is theta[t_off + b·t_stride + i], of the gradient grad[g_off + b·g_stride + i].
// Task data are dense per problem: W (n×n) at da[b·n² ..], y at db[b·n ..]; X (m×n, row-major) at da[b·m·n ..],
// labels at db[b·m ..]. Grid: x = workgroups of 64 threads over rows/columns (grid-stride loop past 65535
// workgroups), y = problem b.
//
//   quad_residual   r_b = W_b θ_b − y_b                  → s1[b·n + i]          (thread per (row i, b))
//   quad_grad       ∇f_b = 2 W_bᵀ r_b                    → grad                 (thread per (column j, b))
//   quad_small      all of it for n ≤ 32, f_b → s2[b·s_stride + m]          (thread per problem b)
//   rosen           pair i < m = n/2: d = x_{2i+1} − x_{2i}², e = 1 − x_{2i}
//                   term 100 d² + e² → s1[b·m + i]; ∂_{2i} = −400 x_{2i} d − 2e, ∂_{2i+1} = 200 d
//   logit_z         z_s = x_s·θ, term (softplus(z_s) − y_s z_s)/m → s1[b·s_stride + s], c_s = (σ(z_s) − y_s)/m → s2[b·m + s]
//   logit_grad      ∇f_j = Σ_s c_s X_sj + λθ_j → grad, (λ/2)θ_j² → s1[b·s_stride + m + j]
//   host_gather     θ_b → s1[b·n + i] (contiguous B × n, for the host to read: a task evaluated on the host)
//   host_scatter    da[b·n + i] → grad, db[b] → s2[b·s_stride + m] (the host's ∇f and f into the caller's views)
//
// θ is bound read_write (it is only read) so that θ and the gradient may be two slots of one buffer.

struct Params {
    n: u32, batch: u32, t_off: u32, t_stride: u32,
    g_off: u32, g_stride: u32, m: u32, s_stride: u32,
}

@group(0) @binding(0) var<storage, read> pb: Params;
// A private copy of the parameters, made at the top of every entry point: reads of a storage buffer inside
// loops are gathers on the software adapter (and a uniform buffer would be recompiled per bind group there).
var<private> p: Params;
@group(0) @binding(1) var<storage, read_write> theta: array<Real>;
@group(0) @binding(2) var<storage, read_write> grad: array<Real>;
@group(0) @binding(3) var<storage, read> da: array<Real>;
@group(0) @binding(4) var<storage, read> db: array<Real>;
@group(0) @binding(5) var<storage, read> cst: array<Real>;
@group(0) @binding(6) var<storage, read_write> s1: array<Real>;
@group(0) @binding(7) var<storage, read_write> s2: array<Real>;

const WG: u32 = 64u;

fn th(b: u32, i: u32) -> Real { return theta[p.t_off + b * p.t_stride + i]; }
fn gi(b: u32, i: u32) -> u32 { return p.g_off + b * p.g_stride + i; }

@compute @workgroup_size(64)
fn quad_residual(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = pb;
    let b = gid.y;
    if (b >= p.batch) { return; }
    let n = p.n;
    for (var i = gid.x; i < n; i = i + nwg.x * WG) {
        let row = b * n * n + i * n;
        var acc: Real = 0.0;
        for (var j = 0u; j < n; j = j + 1u) {
            acc = acc + da[row + j] * th(b, j);
        }
        s1[b * n + i] = acc - db[b * n + i];
    }
}

// Small n (the launcher uses it for n ≤ 32): one thread per problem computes r = Wθ − y, ∇f = 2Wᵀr and
// f = Σ r_i² (sequentially, i ascending) in one dispatch, f written to s2[b·s_stride + m] (the task's scalar
// output column). Each residual is kept in s1 between the two passes.
@compute @workgroup_size(64)
fn quad_small(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let b = gid.x;
    if (b >= p.batch) { return; }
    let n = p.n;
    var f: Real = 0.0;
    for (var i = 0u; i < n; i = i + 1u) {
        let row = b * n * n + i * n;
        var acc: Real = 0.0;
        for (var j = 0u; j < n; j = j + 1u) {
            acc = acc + da[row + j] * th(b, j);
        }
        let r = acc - db[b * n + i];
        s1[b * n + i] = r;
        f = f + r * r;
    }
    for (var j = 0u; j < n; j = j + 1u) {
        let base = b * n * n + j;
        var acc: Real = 0.0;
        for (var i = 0u; i < n; i = i + 1u) {
            acc = acc + da[base + i * n] * s1[b * n + i];
        }
        grad[gi(b, j)] = 2.0 * acc;
    }
    s2[b * p.s_stride + p.m] = f;
}

@compute @workgroup_size(64)
fn quad_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = pb;
    let b = gid.y;
    if (b >= p.batch) { return; }
    let n = p.n;
    for (var j = gid.x; j < n; j = j + nwg.x * WG) {
        let base = b * n * n + j;
        var acc: Real = 0.0;
        for (var i = 0u; i < n; i = i + 1u) {
            acc = acc + da[base + i * n] * s1[b * n + i];
        }
        grad[gi(b, j)] = 2.0 * acc;
    }
}

@compute @workgroup_size(64)
fn rosen(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = pb;
    let b = gid.y;
    if (b >= p.batch) { return; }
    for (var i = gid.x; i < p.m; i = i + nwg.x * WG) {
        let x0 = th(b, 2u * i);
        let x1 = th(b, 2u * i + 1u);
        let d = x1 - x0 * x0;
        let e = 1.0 - x0;
        s1[b * p.m + i] = 100.0 * d * d + e * e;
        grad[gi(b, 2u * i)] = -400.0 * x0 * d - 2.0 * e;
        grad[gi(b, 2u * i + 1u)] = 200.0 * d;
    }
}

@compute @workgroup_size(64)
fn logit_z(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = pb;
    let b = gid.y;
    if (b >= p.batch) { return; }
    let n = p.n;
    let m = p.m;
    let inv = 1.0 / Real(m);
    for (var s = gid.x; s < m; s = s + nwg.x * WG) {
        let row = (b * m + s) * n;
        var z: Real = 0.0;
        for (var j = 0u; j < n; j = j + 1u) {
            z = z + da[row + j] * th(b, j);
        }
        let y = db[b * m + s];
        // softplus(z) = max(z, 0) + log(1 + e^{−|z|}); σ(z) from the same e = e^{−|z|} (no overflow).
        let e = l2o_exp(-abs(z));
        let sp = max(z, 0.0) + l2o_log(1.0 + e);
        let sig = select(e / (1.0 + e), 1.0 / (1.0 + e), z >= 0.0);
        s1[b * p.s_stride + s] = (sp - y * z) * inv;
        s2[b * m + s] = (sig - y) * inv;
    }
}

@compute @workgroup_size(64)
fn logit_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = pb;
    let b = gid.y;
    if (b >= p.batch) { return; }
    let n = p.n;
    let m = p.m;
    let lam = cst[0];
    for (var j = gid.x; j < n; j = j + nwg.x * WG) {
        let base = b * m * n + j;
        var acc: Real = 0.0;
        for (var s = 0u; s < m; s = s + 1u) {
            acc = acc + da[base + s * n] * s2[b * m + s];
        }
        let t = th(b, j);
        grad[gi(b, j)] = acc + lam * t;
        s1[b * p.s_stride + m + j] = 0.5 * lam * t * t;
    }
}

@compute @workgroup_size(64)
fn host_gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = pb;
    let b = gid.y;
    if (b >= p.batch) { return; }
    for (var i = gid.x; i < p.n; i = i + nwg.x * WG) {
        s1[b * p.n + i] = th(b, i);
    }
}

@compute @workgroup_size(64)
fn host_scatter(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = pb;
    let b = gid.y;
    if (b >= p.batch) { return; }
    for (var i = gid.x; i < p.n; i = i + nwg.x * WG) {
        grad[gi(b, i)] = da[b * p.n + i];
    }
    if (gid.x == 0u) {
        s2[b * p.s_stride + p.m] = db[b];
    }
}
