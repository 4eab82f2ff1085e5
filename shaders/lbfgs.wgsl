// L-BFGS per-problem scalar logic (engine kernel family `lbfgs`), one thread per problem. The vector work of
// the two-loop recursion is done by the `reduce` and `lincomb` kernels; these entries keep every per-problem
// scalar (step, line-search state, ρ_i, γ) on the device.
//
// Columns of scal[b][·] after the shared L2O_F, L2O_G2, L2O_ITER, L2O_NFEV (mirrored by `l2o_engine::lbfgs_cols` in Rust):
const T: u32 = 4u;      const GD: u32 = 5u;     const FT: u32 = 6u;     const GDT: u32 = 7u;
const PENDING: u32 = 8u; const PHASE: u32 = 9u; const NLS: u32 = 10u;
const TLO: u32 = 11u;   const FLO: u32 = 12u;   const GLO: u32 = 13u;
const THI: u32 = 14u;   const FHI: u32 = 15u;   const GHI: u32 = 16u;
const F0: u32 = 17u;    const GD0: u32 = 18u;   const DA: u32 = 19u;    const DB: u32 = 20u;
const GAMMA: u32 = 21u; const HASP: u32 = 22u;  const SY: u32 = 23u;    const YY: u32 = 24u;  const SS: u32 = 25u;
const FSTART: u32 = 26u; // f at the start of the run (the scale of the precision-floor test)
const RHO0: u32 = 27u;  // ρ_0..ρ_{m−1}, then α_0..α_{m−1}, then β_0..β_{m−1}, then the policy's Gram, p, τ

// n: the coordinates per problem (read by the fused kernels of `lbfgs_fused.wgsl` only)
struct Params { batch: u32, stride: u32, method: u32, max_ls: u32, slot: u32, m: u32, q0: u32, n: u32 }

@group(0) @binding(0) var<storage, read> pb: Params;
// A private copy of the parameters, made at the top of every entry point: reads of a storage buffer inside
// loops are gathers on the software adapter (and a uniform buffer would be recompiled per bind group there).
var<private> p: Params;
// [c1, c2, t_max, curvature ε_c] and, for L-BFGS-π, [τm, τM, ε, n_h, W1 (n_h×16), b1, W2 (n_h×16), b2]
@group(0) @binding(1) var<storage, read> cst: array<Real>;
@group(0) @binding(2) var<storage, read_write> scal: array<Real>;
@group(0) @binding(3) var<storage, read_write> status: array<u32>;
@group(0) @binding(4) var<storage, read_write> pending: array<atomic<u32>>;

// The precision-floor test of `failed_status`, in units of the working precision's ε (L2O_EPS).
// Measured at the failures of 1000-iteration strong-Wolfe runs (quadratic n = 10, Rosenbrock and logistic n = 10
// and 100; f32 and f64; 128 problems each): −t₀·φ'(0) / (ε·scale) ≤ 1.54 (medians 1e-16…0.16), so 100 leaves 65×
// margin while a gradient that disagrees with f gives ~‖g‖²/(ε·f) (≥ 1e5 in the tests). (Scaling by
// √(|f_k|·|f(θ₀)|) instead, the least-squares noise model, gave up to 1e3 at f64 floors: rejected.)
const FLOOR_ULPS: Real = 100.0;

const METHOD_CONSTANT: u32 = 0u;
const METHOD_ARMIJO: u32 = 1u;
const METHOD_WOLFE: u32 = 2u;

// Line search start. d is the two-loop direction and scal[GD] = gᵀd. If d is not a descent direction
// (gᵀd ≥ 0 or not finite, possible in f32 or with a bad history) the direction is reset to −g: the caller then
// applies d ← DA·d + DB·g. First trial step: 1, or min(1, 1/‖g‖) while the history is empty (Nocedal & Wright).
@compute @workgroup_size(64)
fn ls_begin(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let b = gid.x;
    if (b >= p.batch) { return; }
    ls_begin_at(b);
}

// The line-search start of problem b (the body of `ls_begin`; the fused kernels call it too).
fn ls_begin_at(b: u32) {
    let s = b * p.stride;
    if (status[b] != 0u) { scal[s + PENDING] = 0.0; return; }
    if (scal[s + L2O_ITER] == 0.0) { scal[s + FSTART] = scal[s + L2O_F]; }
    var gd = scal[s + GD];
    if (gd < 0.0 && l2o_is_finite(gd)) {
        scal[s + DA] = 1.0;
        scal[s + DB] = 0.0;
    } else {
        scal[s + DA] = 0.0;
        scal[s + DB] = -1.0;
        gd = -scal[s + L2O_G2];
    }
    let t = first_step(s);
    let f = scal[s + L2O_F];
    scal[s + GD] = gd;
    scal[s + GD0] = gd;
    scal[s + F0] = f;
    scal[s + T] = t;
    scal[s + PENDING] = 1.0;
    scal[s + PHASE] = 0.0;
    scal[s + NLS] = 0.0;
    scal[s + TLO] = 0.0;
    scal[s + FLO] = f;
    scal[s + GLO] = gd;
}

// The first trial step: 1, or min(1, 1/‖g‖) while the history is empty.
fn first_step(s: u32) -> Real {
    if (scal[s + HASP] == 0.0) { return min(1.0, 1.0 / sqrt(scal[s + L2O_G2])); }
    return 1.0;
}

// The status of a problem whose line search found no acceptable step: 4 (converged at the working precision) when
// the decrease its first trial predicts, −t₀·φ'(0), is at most FLOOR_ULPS rounding units of the run's f scale
// max(|f(θ_k)|, |f(θ_0)|) — f cannot resolve the step, so no line search can make progress (L-BFGS has reached
// the precision floor, as scipy's "CONVERGENCE: REL_REDUCTION_OF_F <= FACTR*EPSMCH"); otherwise 3 (line search
// failed: f and ∇f disagree, or the function is pathological there). Mirrored by `lbfgs::reference`.
fn failed_status(s: u32) -> u32 {
    let scale = max(abs(scal[s + F0]), abs(scal[s + FSTART]));
    if (-first_step(s) * scal[s + GD0] <= FLOOR_ULPS * L2O_EPS * scale) { return 4u; }
    return 3u;
}

// Safeguarded cubic interpolation of φ on [lo, hi] from values and slopes (Nocedal & Wright eq. 3.59), falling
// back to bisection when the cubic has no minimiser, is not finite, or lands within 10 % of either end.
fn interp(tl: Real, fl: Real, gl: Real, th: Real, fh: Real, gh: Real) -> Real {
    let mid = 0.5 * (tl + th);
    let d1 = gl + gh - 3.0 * (fl - fh) / (tl - th);
    let rad = d1 * d1 - gl * gh;
    if (!(rad >= 0.0) || !l2o_is_finite(rad)) { return mid; }
    var d2 = sqrt(rad);
    if (th < tl) { d2 = -d2; }
    let tc = th - (th - tl) * (gh + d2 - d1) / (gh - gl + 2.0 * d2);
    let a = min(tl, th);
    let w = max(tl, th) - a;
    if (!(tc >= a + 0.1 * w && tc <= a + 0.9 * w)) { return mid; }
    return tc;
}

fn accept(s: u32) {
    scal[s + L2O_F] = scal[s + FT];
    scal[s + PENDING] = 0.0;
}

fn set_hi(s: u32, t: Real, f: Real, g: Real) {
    scal[s + THI] = t; scal[s + FHI] = f; scal[s + GHI] = g;
}

fn set_lo(s: u32, t: Real, f: Real, g: Real) {
    scal[s + TLO] = t; scal[s + FLO] = f; scal[s + GLO] = g;
}

fn zoom_next(s: u32) {
    scal[s + PHASE] = 2.0;
    scal[s + T] = interp(scal[s + TLO], scal[s + FLO], scal[s + GLO], scal[s + THI], scal[s + FHI], scal[s + GHI]);
}

// One line-search round after φ(t) = scal[FT] and φ'(t) = scal[GDT] were evaluated at the trial point.
// constant: accept t. Armijo backtracking: accept if φ(t) ≤ φ(0) + c1·t·φ'(0), else t ← c2·t.
// strong Wolfe: Nocedal & Wright Algorithms 3.5 (bracketing, expansion ×4 up to t_max) and 3.6 (zoom with the
// safeguarded cubic above), conditions φ(t) ≤ φ(0) + c1·t·φ'(0) and |φ'(t)| ≤ c2·|φ'(0)|. A non-finite trial
// counts as failing sufficient decrease. After max_ls trials without success, Wolfe falls back to the best
// point with sufficient decrease (t_lo, one more evaluation) if there is one; otherwise the problem is frozen
// with status 3 (line search failed). Problems still searching are counted in `pending[0]`.
@compute @workgroup_size(64)
fn ls_update(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let b = gid.x;
    if (b >= p.batch) { return; }
    ls_update_at(b);
}

// One line-search round of problem b (the body of `ls_update`; the fused kernels call it too).
fn ls_update_at(b: u32) {
    let s = b * p.stride;
    if (status[b] != 0u || scal[s + PENDING] == 0.0) { return; }
    let t = scal[s + T];
    let ft = scal[s + FT];
    let gt = scal[s + GDT];
    let f0 = scal[s + F0];
    let gd0 = scal[s + GD0];
    let c1 = cst[0];
    let c2 = cst[1];
    let nls = scal[s + NLS] + 1.0;
    scal[s + NLS] = nls;
    scal[s + L2O_NFEV] = scal[s + L2O_NFEV] + 1.0;
    let finite = l2o_is_finite(ft) && l2o_is_finite(gt);
    // sufficient decrease. Backtracking decides it only where f can resolve the decrease it asks for: once
    // f0 + c1·t·φ'(0) rounds to f0, a trial equal to f0 (a step too small to move θ) would pass and Armijo would
    // accept null steps forever; it fails instead, and `failed_status` tells the floor from a failure. (Strong
    // Wolfe keeps ft ≤ bound: its c1 = 1e-4 makes the bound round to f0 while steps still make progress in f32,
    // and its curvature condition refuses null steps.)
    let bound = f0 + c1 * t * gd0;
    let armijo = finite && ft <= bound && (bound < f0 || p.method != METHOD_ARMIJO);
    let phase = scal[s + PHASE];
    if (p.method == METHOD_CONSTANT || phase == 3.0) {
        accept(s);
        return;
    }
    if (p.method == METHOD_ARMIJO) {
        if (armijo) { accept(s); return; }
        scal[s + T] = cst[1] * t;
    } else {
        let curv = abs(gt) <= -c2 * gd0;
        if (phase < 2.0) {
            if (!armijo || (phase == 1.0 && ft >= scal[s + FLO])) {
                if (finite) { set_hi(s, t, ft, gt); } else { set_hi(s, t, L2O_REAL_MAX, 0.0); }
                zoom_next(s);
            } else if (curv) {
                accept(s); return;
            } else if (gt >= 0.0) {
                set_hi(s, scal[s + TLO], scal[s + FLO], scal[s + GLO]);
                set_lo(s, t, ft, gt);
                zoom_next(s);
            } else {
                set_lo(s, t, ft, gt);
                scal[s + PHASE] = 1.0;
                scal[s + T] = min(4.0 * t, cst[2]);
            }
        } else {
            if (!armijo || ft >= scal[s + FLO]) {
                if (finite) { set_hi(s, t, ft, gt); } else { set_hi(s, t, L2O_REAL_MAX, 0.0); }
            } else {
                if (curv) { accept(s); return; }
                if (gt * (scal[s + THI] - scal[s + TLO]) >= 0.0) {
                    set_hi(s, scal[s + TLO], scal[s + FLO], scal[s + GLO]);
                }
                set_lo(s, t, ft, gt);
            }
            zoom_next(s);
        }
    }
    if (nls >= Real(p.max_ls)) {
        if (p.method == METHOD_WOLFE && scal[s + TLO] > 0.0) {
            scal[s + PHASE] = 3.0;
            scal[s + T] = scal[s + TLO];
        } else {
            status[b] = failed_status(s);
            scal[s + PENDING] = 0.0;
            return;
        }
    }
    atomicAdd(&pending[0], 1u);
}

// After the step: the new pair (s, y) in ring slot p.slot with sᵀy, yᵀy, sᵀs in SY, YY, SS.
// Accepted iff sᵀy > ε·‖s‖·‖y‖ (ε = cst[3]: a relative curvature threshold, Nocedal & Wright p. 537 skip the
// pair when it fails). ρ = 1/sᵀy, and γ = sᵀy/yᵀy from the newest accepted pair (seed 003, Algorithm 1).
// A skipped pair keeps its ring slot with ρ = 0, which removes it from both loops.
@compute @workgroup_size(64)
fn pair_update(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let b = gid.x;
    if (b >= p.batch) { return; }
    pair_update_at(b, p.slot);
}

// The pair test of problem b for the pair in ring slot `slot` (the body of `pair_update`; the fused kernels call
// it too).
fn pair_update_at(b: u32, slot: u32) {
    let s = b * p.stride;
    if (status[b] != 0u) { return; }
    let sy = scal[s + SY];
    let yy = scal[s + YY];
    let ss = scal[s + SS];
    // ρ = 1/sᵀy and γ = sᵀy/yᵀy must be finite too: near convergence sᵀy can be a denormal whose reciprocal
    // overflows (then the pair is rejected like one that fails the curvature test)
    let rho = 1.0 / sy;
    let gamma = sy / yy;
    if (l2o_is_finite(sy) && l2o_is_finite(yy) && l2o_is_finite(ss) && sy > cst[3] * sqrt(ss * yy) && yy > 0.0
        && l2o_is_finite(rho) && l2o_is_finite(gamma) && gamma > 0.0) {
        scal[s + RHO0 + slot] = rho;
        scal[s + GAMMA] = gamma;
        scal[s + HASP] = 1.0;
    } else {
        scal[s + RHO0 + slot] = 0.0;
    }
}

// L-BFGS-π step policy (seed 003 §4), one thread per problem: π on the Gram matrix of [d, g, s_{k−1}, y_{k−1}]
// at column p.q0 (`policy_net`, shaders/policy_net.wgsl), τ = clip(p, τm, τM) (a NaN p gives τm), t = exp(τ) → T.
// Records p and τ in the two columns after the Gram matrix.
@compute @workgroup_size(64)
fn policy_step(@builtin(global_invocation_id) gid: vec3<u32>) {
    p = pb;
    let b = gid.x;
    if (b >= p.batch) { return; }
    let s = b * p.stride;
    if (status[b] != 0u) { return; }
    let g0 = s + p.q0;
    let pp = policy_net(g0).p;
    var tau = cst[4];
    if (pp > cst[4]) { tau = min(pp, cst[5]); }
    scal[g0 + 16u] = pp;
    scal[g0 + 17u] = tau;
    scal[s + T] = l2o_exp(tau);
}
