// Free-running fused L-BFGS (kernel family `lbfgs_fused_free`: `lbfgs.wgsl`, `policy_net.wgsl`,
// `lbfgs_fused.wgsl` and `status_rules.wgsl`, then this file).
//
// Free-running rounds (`fused_free`, family `lbfgs_fused_free`: the same bindings plus ε_g and the run's trace):
// no problem waits for the others. Every round each running problem takes one line-search step, and one that
// accepts goes straight on to its next iteration (its own ring slot: iterations done mod M), counts it, tests
// convergence as `status.wgsl::update_status` does, and writes its trace row (as `status.wgsl::record`); rows
// after a problem stops are filled on the host. A problem's arithmetic is exactly that of the lockstep rounds
// (`fused_round` + `update_status` + `record`), so its trajectory is the same bit for bit; a run takes about as
// many rounds as its slowest problem's evaluations instead of Σ over iterations of the slowest line search.
// p.slot: the iteration budget (a problem that reaches it is parked for good). Problems still running after
// the round are counted in pending[0].
@group(0) @binding(13) var<storage, read> epsg: array<Real>;
@group(0) @binding(14) var<storage, read_write> trace: array<Real>; // [rows][B][5], as status.wgsl

// Problem b's trace row `row` (status_rules.wgsl).
fn write_row(b: u32, row: u32) {
    record_row(b, b * p.stride, (row * p.batch + b) * 5u);
}

@compute @workgroup_size(FWG)
fn fused_free(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let b = gid.x;
    if (b >= p.batch || status[b] != 0u || parked[b] != 0u) { return; }
    let s = b * p.stride;
    if (scal[s + PENDING] == 0.0) { return; }
    let it = scal[s + L2O_ITER];
    let k = u32(it);
    scal[s + GDT] = gt_dot_d(b);
    ls_update_at(b);
    if (status[b] != 0u) {
        write_row(b, k + 1u);
        return;
    }
    if (scal[s + PENDING] != 0.0) {
        trial_pass(b, scal[s + T]);
        return;
    }
    // accepted: as fused_round with this problem's own slot and pair count, then its update_status and record
    accept_at(b, k % M, min(k + 1u, M));
    scal[s + L2O_ITER] = it + 1.0;
    status[b] = status_after(scal[s + L2O_F], scal[s + L2O_G2], epsg[0]);
    write_row(b, k + 1u);
    if (k + 1u >= p.slot) {
        parked[b] = 1u;
    } else if (status[b] == 0u) {
        atomicAdd(&pending[0], 1u);
    }
}
