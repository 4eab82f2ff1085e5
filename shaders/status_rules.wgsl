// The status rule and the trace row of a problem, shared by `status.wgsl` (the lockstep driver's kernels) and
// `lbfgs_fused_free.wgsl` (free-running L-BFGS rounds, where each problem applies them itself): the two must
// decide and record alike. Both files declare `scal`, `status` and `trace` (a [rows][B][5] record: f, ‖g‖²,
// status, iterations, evaluations).

// After an iteration: 2 (diverged) if f or ‖g‖² is not finite, 1 (converged) if ‖g‖ < ε_g or ‖g‖ = 0, else 0.
// A zero gradient is a stationary point whatever ε_g: with ε_g = 0 it would otherwise go on into the line
// search, whose steps divide by gᵀd = 0.
fn status_after(f: Real, g2: Real, eps_g: Real) -> u32 {
    if (!l2o_is_finite(f) || !l2o_is_finite(g2)) { return 2u; }
    if (sqrt(g2) < eps_g || g2 == 0.0) { return 1u; }
    return 0u;
}

// trace[o ..] ← problem b's record, its scalars at scal[s ..].
fn record_row(b: u32, s: u32, o: u32) {
    trace[o] = scal[s + L2O_F];
    trace[o + 1u] = scal[s + L2O_G2];
    trace[o + 2u] = Real(status[b]);
    trace[o + 3u] = scal[s + L2O_ITER];
    trace[o + 4u] = scal[s + L2O_NFEV];
}
