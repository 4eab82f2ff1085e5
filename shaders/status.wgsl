// Per-problem status and trace (engine kernel family `status`), one thread per problem.
// Columns shared by every optimizer: scal[b][0] = f, [1] = ‖g‖², [2] = iterations taken, [3] = f evaluations.
// Status codes: 0 running, 1 converged (‖g‖ < ε_g, or ‖g‖ = 0), 2 diverged (f or ‖g‖² not finite), 3 line search failed.
// A problem that is not running is frozen: every update kernel skips it.

struct Params { batch: u32, scal_stride: u32, count_step: u32, trace_row: u32 }

@group(0) @binding(0) var<storage, read> pb: Params;
// A private copy of the parameters, made at the top of every entry point: reads of a storage buffer inside
// loops are gathers on the software adapter (and a uniform buffer would be recompiled per bind group there).
var<private> p: Params;
@group(0) @binding(1) var<storage, read> cst: array<Real>;     // [ε_g]
@group(0) @binding(2) var<storage, read_write> scal: array<Real>;
@group(0) @binding(3) var<storage, read_write> status: array<u32>;
@group(0) @binding(4) var<storage, read_write> trace: array<Real>; // [rows][B][5]: f, ‖g‖², status, iterations, evaluations

@compute @workgroup_size(64)
fn update_status(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let b = gid.x;
    if (b >= p.batch || status[b] != 0u) { return; }
    let s = b * p.scal_stride;
    // count_step: bit 0 counts an iteration, bit 1 a function evaluation.
    if ((p.count_step & 1u) != 0u) { scal[s + L2O_ITER] = scal[s + L2O_ITER] + 1.0; }
    if ((p.count_step & 2u) != 0u) { scal[s + L2O_NFEV] = scal[s + L2O_NFEV] + 1.0; }
    // diverged, converged or still running (status_rules.wgsl)
    status[b] = status_after(scal[s + L2O_F], scal[s + L2O_G2], cst[0]);
}

@compute @workgroup_size(64)
fn record(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let b = gid.x;
    if (b >= p.batch) { return; }
    record_row(b, b * p.scal_stride, (p.trace_row * p.batch + b) * 5u);
}
