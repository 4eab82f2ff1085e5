// Elementwise optimizer updates (engine kernel family `maps`), one thread per coordinate, problems along y.
// Problems with status != 0 are frozen. hyper = [lr, β1 (momentum μ), β2 (RMS decay ρ), ε]; p.kind selects:
//   0 sgd:        θ ← θ − lr·g
//   1 heavy_ball: m ← μm + g;                 θ ← θ − lr·m                       (Polyak)
//   2 nesterov:   m ← μm + g;                 θ ← θ − lr·(g + μm)                (Sutskever et al. 2013 form)
//   3 rmsprop:    v ← ρv + (1−ρ)g²;           θ ← θ − lr·g/(√v + ε)              (Tieleman & Hinton 2012)
//   4 adam:       m ← β1m + (1−β1)g; v ← β2v + (1−β2)g²;
//                 θ ← θ − lr·(m/(1−β1^t)) / (√(v/(1−β2^t)) + ε)             (Kingma & Ba 2015)
//   5 adagrad:    v ← v + g²;                 θ ← θ − lr·g/(√v + ε)              (Duchi et al. 2011)
// adam_powers (one thread per problem) advances β1^t, β2^t kept in scal[b][p1_col], scal[b][p2_col].

struct Params {
    n: u32, batch: u32, stride: u32, scal_stride: u32,
    p1_col: u32, p2_col: u32, kind: u32, q1: u32,
}

@group(0) @binding(0) var<storage, read> pb: Params;
// A private copy of the parameters, made at the top of every entry point: reads of a storage buffer inside
// loops are gathers on the software adapter (and a uniform buffer would be recompiled per bind group there).
var<private> p: Params;
@group(0) @binding(1) var<storage, read> hyper: array<Real>;
@group(0) @binding(2) var<storage, read_write> theta: array<Real>;
@group(0) @binding(3) var<storage, read> grad: array<Real>;
@group(0) @binding(4) var<storage, read_write> mbuf: array<Real>;
@group(0) @binding(5) var<storage, read_write> vbuf: array<Real>;
@group(0) @binding(6) var<storage, read_write> scal: array<Real>;
@group(0) @binding(7) var<storage, read> status: array<u32>;

fn running(b: u32) -> bool {
    return b < p.batch && status[b] == 0u;
}

@compute @workgroup_size(256)
fn update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    p = pb;
    let b = gid.y;
    if (!running(b)) { return; }
    let lr = hyper[0];
    let b1 = hyper[1];
    let b2 = hyper[2];
    let eps = hyper[3];
    var c1: Real = 1.0;
    var c2: Real = 1.0;
    if (p.kind == 4u) {
        c1 = 1.0 - scal[b * p.scal_stride + p.p1_col];
        c2 = 1.0 - scal[b * p.scal_stride + p.p2_col];
    }
    for (var i = gid.x; i < p.n; i = i + nwg.x * 256u) {
        let k = b * p.stride + i;
        let g = grad[k];
        var step: Real;
        switch p.kind {
            case 0u: { step = g; }
            case 1u, 2u: {
                let m = b1 * mbuf[k] + g;
                mbuf[k] = m;
                step = m;
                if (p.kind == 2u) { step = g + b1 * m; }
            }
            case 3u: {
                let v = b2 * vbuf[k] + (1.0 - b2) * g * g;
                vbuf[k] = v;
                step = g / (sqrt(v) + eps);
            }
            case 4u: {
                let m = b1 * mbuf[k] + (1.0 - b1) * g;
                let v = b2 * vbuf[k] + (1.0 - b2) * g * g;
                mbuf[k] = m;
                vbuf[k] = v;
                step = (m / c1) / (sqrt(v / c2) + eps);
            }
            default: {
                let v = vbuf[k] + g * g;
                vbuf[k] = v;
                step = g / (sqrt(v) + eps);
            }
        }
        theta[k] = theta[k] - lr * step;
    }
}

@compute @workgroup_size(64)
fn adam_powers(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let b = gid.x;
    if (!running(b)) { return; }
    let s = b * p.scal_stride;
    scal[s + p.p1_col] = scal[s + p.p1_col] * hyper[1];
    scal[s + p.p2_col] = scal[s + p.p2_col] * hyper[2];
}
