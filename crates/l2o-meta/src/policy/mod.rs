//! L-BFGS-π: a learned step-size policy for L-BFGS (seed 003 §4–5). This module holds the policy network, the
//! f64 CPU reference of the L-BFGS-π unroll, its hand-derived adjoint and the frozen-gradient surrogate that
//! proves the adjoint right. The device path implements exactly these equations.
//!
//! ## Forward (one problem; step k = 0 … K−1 of an outer step, the L-BFGS memory starts empty)
//! ```text
//! d_k = two_loop(g_k; pairs (s_j, y_j, ρ_j) of the last m steps, γ)      (Algorithm 1; ρ_j = 0 skips a pair)
//!       reset d_k = −g_k when g_kᵀd_k ≥ 0
//! V   = [d_k, g_k, s_{k−1}, y_{k−1}]          (s_{−1} = y_{−1} = 0)
//! X_ij = σ_ij ⟨V_i, V_j⟩,   σ_ij = −1 above the diagonal (i < j), +1 elsewhere
//! u0  = ln(max(X, ε)) ∈ R^16 (row-major),    ε = 1e-8
//! u1  = W1 u0 + b1,   u2 = W2 u0 + b2 ∈ R^{nh}
//! p   = u1ᵀu2 / ‖u2‖²,   τ_k = clip(p, τm, τM),   t_k = exp(τ_k)          (τm = −3, τM = 0)
//! s_k = t_k d_k,   x_{k+1} = x_k + s_k,   g_{k+1} = ∇f(x_{k+1}),   y_k = g_{k+1} − g_k
//! pair k is used (ρ_k = 1/s_kᵀy_k, γ ← s_kᵀy_k / y_kᵀy_k) iff s_kᵀy_k > ε_c‖s_k‖‖y_k‖, else ρ_k = 0
//! ```
//! The policy network itself (and the exact derivative of the clip) is [`l2o_optim::step_policy`].
//!
//! ## Meta-loss and truncation (seed 003 §5)
//! L(θ) = (1/B) Σ_b Σ_{k=1..K} w_k f_b(x_k). The inner gradients g_k are external inputs (no second
//! derivatives), so y_k is constant too; s_k, d_k, t_k, ρ_k and γ depend on the policy parameters. The
//! discrete decisions (pair acceptance, direction reset, which bound is active) are piecewise constant and
//! contribute nothing. The memory of the previous outer step is not carried (each outer step is a fresh L-BFGS
//! run from x0 ← x_K), so the truncation is exact at the outer-step boundary.
//!
//! ## Adjoint (per problem; λ are ∂L/∂·; λs_j accumulates over the later steps that read s_j)
//! ```text
//! λx ← 0;  λs_j ← 0 for all j
//! for k = K−1 … 0:
//!   λx += (w_{k+1}/B) g_{k+1}                        (λx is now the adjoint of x_{k+1})
//!   λS  = λx + λs_k                                 (x_{k+1} = x_k + s_k; later uses of s_k)
//!   λt  = ⟨λS, d_k⟩;  λd = t_k λS;  λτ = t_k λt;  λp = λτ if τm < p < τM else 0
//!   λu1 = λp u2/‖u2‖²;  λu2 = λp (u1 − 2p u2)/‖u2‖²
//!   ∂W1 += λu1 u0ᵀ; ∂b1 += λu1; ∂W2 += λu2 u0ᵀ; ∂b2 += λu2;  λu0 = W1ᵀλu1 + W2ᵀλu2
//!   λG_ij = σ_ij λu0_ij / X_ij   where X_ij > ε, else 0       (G = VᵀV, u0 = ln X)
//!   λd   += Σ_j (λG_0j + λG_j0) V_j;   λs_{k−1} += Σ_j (λG_2j + λG_j2) V_j
//!   if d_k was not reset: back through the two-loop (below), adding into λs_j of the pairs in the ring
//! ```
//! Two-loop adjoint (pairs i newest → oldest in the first loop; q_0 = −g, r_0 = γ q_c):
//! ```text
//! λr = λd
//! for i = newest … oldest   (second loop reversed; r_i is the r before pair i's update):
//!   c = ⟨λr, s_i⟩;  λs_i += (α_i − β_i) λr;  λα_i = c;  λβ = −c
//!   λρ_i = λβ ⟨y_i, r_i⟩;  λr += λβ ρ_i y_i
//! λγ = ⟨λr, q_c⟩;  λq = γ λr
//! for i = oldest … newest   (first loop reversed; q_i is the q before pair i's update):
//!   λα_i −= ⟨λq, y_i⟩;  λs_i += λα_i ρ_i q_i;  λρ_i += λα_i ⟨s_i, q_i⟩;  λq += λα_i ρ_i s_i
//! λs_i −= λρ_i ρ_i² y_i                                    (ρ_i = 1/s_iᵀy_i)
//! λs_h += λγ y_h / ‖y_h‖²                                   (γ from the newest accepted pair h)
//! ```
//! Everything is a Hilbert-space operation on n-vectors (inner products and scaled sums), so the device reverse
//! sweep reuses the engine's `dot`/`lincomb` kernels.

pub mod device;
pub mod fused;
pub mod train;

pub use l2o_optim::step_policy::*;

use crate::l2l::LossGrad;

fn dotp(a: &[f64], b: &[f64]) -> f64 {
    l2o_engine::oracle::dot(a, b)
}

fn axpy(y: &mut [f64], a: f64, x: &[f64]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x);
}

/// One step's record of one problem.
#[derive(Clone, Debug)]
pub struct StepRecord {
    pub d: Vec<f64>,
    /// d was reset to −g (not a descent direction): nothing flows back through the two-loop.
    pub reset: bool,
    /// Pairs in the two-loop, newest first: (step index j of the pair, α_j, β_j, q before the first-loop
    /// update of j, r before the second-loop update of j).
    pub pairs: Vec<(usize, f64, f64, Vec<f64>, Vec<f64>)>,
    /// q after the first loop (r_0 = γ q_c).
    pub qc: Vec<f64>,
    pub gamma: f64,
    /// Step index of the pair γ came from (None: γ = 1).
    pub gamma_from: Option<usize>,
    pub gram: [f64; FEATURES],
    pub pol: PolicyEval,
}

/// A recorded L-BFGS-π unroll of one problem (f64 CPU reference).
#[derive(Clone, Debug)]
pub struct PolicyUnroll {
    /// x_k, g_k, f(x_k) for k = 0..=K.
    pub x: Vec<Vec<f64>>,
    pub g: Vec<Vec<f64>>,
    pub f: Vec<f64>,
    /// s_k, y_k, ρ_k (0 = pair skipped) for k = 0..K.
    pub s: Vec<Vec<f64>>,
    pub y: Vec<Vec<f64>>,
    pub rho: Vec<f64>,
    pub steps: Vec<StepRecord>,
    /// Σ_{k=1..K} w_k f(x_k).
    pub meta_loss: f64,
}

/// d = −H g by the two-loop recursion over `pairs` (step indices, newest first), recording what the adjoint
/// needs. Same arithmetic as [`l2o_optim::lbfgs::reference::two_loop`].
fn two_loop_recorded(
    g: &[f64],
    s: &[Vec<f64>],
    y: &[Vec<f64>],
    rho: &[f64],
    order: &[usize],
    gamma: f64,
) -> (
    Vec<f64>,
    Vec<(usize, f64, f64, Vec<f64>, Vec<f64>)>,
    Vec<f64>,
) {
    let mut q: Vec<f64> = g.iter().map(|v| -v).collect();
    let mut rec: Vec<(usize, f64, f64, Vec<f64>, Vec<f64>)> = vec![];
    for &j in order {
        let a = rho[j] * dotp(&s[j], &q);
        rec.push((j, a, 0.0, q.clone(), vec![]));
        axpy(&mut q, -a, &y[j]);
    }
    let qc = q.clone();
    let mut r: Vec<f64> = q.iter().map(|v| gamma * v).collect();
    for e in rec.iter_mut().rev() {
        let j = e.0;
        let b = rho[j] * dotp(&y[j], &r);
        e.2 = b;
        e.4 = r.clone();
        axpy(&mut r, e.1 - b, &s[j]);
    }
    (r, rec, qc)
}

/// Forward unroll of K = `weights.len()` L-BFGS-π steps of problem `b` from x0 (memory empty). With `frozen`,
/// the recorded gradients g_0..g_K are fed to the algorithm instead of ∇f at the new iterates (f is still
/// evaluated there): the frozen-gradient surrogate.
pub fn unroll(
    cfg: &PolicyConfig,
    phi: &[f64],
    lg: &LossGrad,
    b: usize,
    x0: &[f64],
    weights: &[f64],
    frozen: Option<&[Vec<f64>]>,
) -> PolicyUnroll {
    let m = cfg.m;
    let (f0, g0) = lg(b, x0);
    let g0 = frozen.map_or(g0, |gs| gs[0].clone());
    let mut u = PolicyUnroll {
        x: vec![x0.to_vec()],
        g: vec![g0],
        f: vec![f0],
        s: vec![],
        y: vec![],
        rho: vec![],
        steps: vec![],
        meta_loss: 0.0,
    };
    let n = x0.len();
    let mut gamma: (f64, Option<usize>) = (1.0, None);
    for (k, &w) in weights.iter().enumerate() {
        let g = u.g[k].clone();
        let order: Vec<usize> = (k.saturating_sub(m)..k).rev().collect();
        let (mut d, pairs, qc) = two_loop_recorded(&g, &u.s, &u.y, &u.rho, &order, gamma.0);
        let gd = dotp(&g, &d);
        let reset = !(gd < 0.0 && gd.is_finite());
        if reset {
            d = g.iter().map(|v| -v).collect();
        }
        let zero = vec![0.0; n];
        let (sp, yp) = if k == 0 {
            (&zero, &zero)
        } else {
            (&u.s[k - 1], &u.y[k - 1])
        };
        let v: [&[f64]; 4] = [&d, &g, sp, yp];
        let mut gram = [0.0; FEATURES];
        for i in 0..4 {
            for j in 0..4 {
                gram[4 * i + j] = dotp(v[i], v[j]);
            }
        }
        let pol = policy(cfg, phi, &gram);
        let s: Vec<f64> = d.iter().map(|v| pol.t * v).collect();
        let x: Vec<f64> = u.x[k].iter().zip(&s).map(|(a, b)| a + b).collect();
        let (f, gt) = lg(b, &x);
        let gn = frozen.map_or(gt, |gs| gs[k + 1].clone());
        let y: Vec<f64> = gn.iter().zip(&g).map(|(a, b)| a - b).collect();
        let (sy, ss, yy) = (dotp(&s, &y), dotp(&s, &s), dotp(&y, &y));
        let eps_c = cfg.curvature_eps.unwrap_or(1e-10);
        let ok = sy.is_finite() && yy > 0.0 && sy > eps_c * (ss * yy).sqrt();
        let (gam, gamma_from) = gamma;
        if ok {
            gamma = (sy / yy, Some(k));
        }
        u.rho.push(if ok { 1.0 / sy } else { 0.0 });
        u.steps.push(StepRecord {
            d,
            reset,
            pairs,
            qc,
            gamma: gam,
            gamma_from,
            gram,
            pol,
        });
        u.s.push(s);
        u.y.push(y);
        u.x.push(x);
        u.g.push(gn);
        u.f.push(f);
        u.meta_loss += w * f;
    }
    u
}

/// The frozen-gradient surrogate L̃(φ) of the recorded unroll `rec`: at φ = the recording's φ its gradient is
/// exactly the truncated meta-gradient of [`adjoint`].
pub fn surrogate(
    cfg: &PolicyConfig,
    phi: &[f64],
    lg: &LossGrad,
    b: usize,
    rec: &PolicyUnroll,
    weights: &[f64],
) -> f64 {
    unroll(cfg, phi, lg, b, &rec.x[0], weights, Some(&rec.g)).meta_loss
}

/// The hand-derived adjoint ∂L/∂φ of the recorded unroll (module docs), scaled by `scale` (1/B for a batch
/// mean); added into `dphi`.
pub fn adjoint(
    cfg: &PolicyConfig,
    phi: &[f64],
    rec: &PolicyUnroll,
    weights: &[f64],
    scale: f64,
    dphi: &mut [f64],
) {
    let kk = rec.steps.len();
    let n = rec.x[0].len();
    let mut lx = vec![0.0; n];
    let mut ls = vec![vec![0.0; n]; kk];
    for k in (0..kk).rev() {
        axpy(&mut lx, scale * weights[k], &rec.g[k + 1]);
        let st = &rec.steps[k];
        let mut l_s: Vec<f64> = lx.iter().zip(&ls[k]).map(|(a, b)| a + b).collect();
        let lt = dotp(&l_s, &st.d);
        l_s.iter_mut().for_each(|v| *v *= st.pol.t);
        let mut ld = l_s;
        let lgram = policy_adjoint(cfg, phi, &st.gram, &st.pol, st.pol.t * lt, dphi);
        let zero = vec![0.0; n];
        let (sp, yp) = if k == 0 {
            (&zero, &zero)
        } else {
            (&rec.s[k - 1], &rec.y[k - 1])
        };
        let v: [&[f64]; 4] = [&st.d, &rec.g[k], sp, yp];
        for j in 0..4 {
            axpy(&mut ld, lgram[j] + lgram[4 * j], v[j]);
            if k > 0 {
                let c = lgram[8 + j] + lgram[4 * j + 2];
                axpy(&mut ls[k - 1], c, v[j]);
            }
        }
        if st.reset {
            continue;
        }
        // two-loop adjoint
        let mut lr = ld;
        let np = st.pairs.len();
        let mut lalpha = vec![0.0; np];
        let mut lrho = vec![0.0; np];
        for (e, (j, a, bt, _q, r)) in st.pairs.iter().enumerate() {
            let (j, rho) = (*j, rec.rho[*j]);
            if rho == 0.0 {
                continue;
            }
            let c = dotp(&lr, &rec.s[j]);
            axpy(&mut ls[j], a - bt, &lr);
            lalpha[e] = c;
            let lb = -c;
            lrho[e] = lb * dotp(&rec.y[j], r);
            axpy(&mut lr, lb * rho, &rec.y[j]);
        }
        let lgamma = dotp(&lr, &st.qc);
        let mut lq: Vec<f64> = lr.iter().map(|v| st.gamma * v).collect();
        for (e, (j, _a, _b, q, _r)) in st.pairs.iter().enumerate().rev() {
            let (j, rho) = (*j, rec.rho[*j]);
            if rho == 0.0 {
                continue;
            }
            lalpha[e] -= dotp(&lq, &rec.y[j]);
            axpy(&mut ls[j], lalpha[e] * rho, q);
            lrho[e] += lalpha[e] * dotp(&rec.s[j], q);
            axpy(&mut lq, lalpha[e] * rho, &rec.s[j]);
        }
        for (e, (j, ..)) in st.pairs.iter().enumerate() {
            let rho = rec.rho[*j];
            if rho != 0.0 {
                axpy(&mut ls[*j], -lrho[e] * rho * rho, &rec.y[*j]);
            }
        }
        if let Some(h) = st.gamma_from {
            let yy = dotp(&rec.y[h], &rec.y[h]);
            axpy(&mut ls[h], lgamma / yy, &rec.y[h]);
        }
    }
}
