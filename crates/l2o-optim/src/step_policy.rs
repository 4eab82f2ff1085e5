//! The step-size policy π of L-BFGS-π (seed 003 §4, Fig. 1 and eq. 3–5): the 16 Gram entries of
//! [d_k, g_k, s_{k−1}, y_{k−1}] with the superdiagonal signs reversed, a floored log, two parallel linear layers,
//! the scalar projection u1ᵀu2/‖u2‖² and the clip to [τm, τM]; t_k = exp(τ_k). [`policy`] is the f64 CPU
//! forward and [`policy_adjoint`] its reverse; the device runs the same equations in the `policy_step` entry of
//! `shaders/lbfgs.wgsl` (one thread per problem), reading φ after the L-BFGS constants. Meta-training (the
//! adjoint through the two-loop recursion) is in `l2o-meta`'s `policy` module.
//!
//! The clip is the solution of the convex layer min_τ ‖u2 τ − u1‖² s.t. τm ≤ τ ≤ τM (seed eq. 4–5): the
//! unconstrained minimiser of that one-dimensional quadratic is p = u1ᵀu2/‖u2‖², so the constrained one is
//! clip(p). Its derivative, used exactly: ∂τ/∂p = 1 for τm < p < τM and 0 when a bound is active, **including p
//! exactly on a bound** (there the projection has only one-sided derivatives; we take the one of the active
//! constraint, the KKT answer a convex-optimization layer gives for a strictly active bound). A NaN p (‖u2‖ = 0)
//! gives τ = τm: the smallest step, never a NaN step.

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

/// Number of policy inputs: the 16 entries of the 4×4 Gram matrix of [d, g, s, y].
pub const FEATURES: usize = 16;

/// Architecture and constants of the step-size policy.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyConfig {
    /// Width n_h of the two linear layers (seed: 6).
    pub nh: usize,
    /// L-BFGS memory m (seed: 5).
    pub m: usize,
    /// Clip interval [τm, τM] of the log step (seed: −3, 0).
    pub tau_min: f64,
    pub tau_max: f64,
    /// Floor ε of the log features (seed: 1e-8).
    pub eps: f64,
    /// Relative curvature threshold ε_c of the pair test; None: the precision's default, as
    /// [`crate::lbfgs::LbfgsConfig::curvature_eps`] (1e-10 on the f64 CPU reference).
    pub curvature_eps: Option<f64>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            nh: 6,
            m: 5,
            tau_min: -3.0,
            tau_max: 0.0,
            eps: 1e-8,
            curvature_eps: None,
        }
    }
}

/// Offsets of W1 (nh×16, row-major), b1, W2, b2 in the flat parameter vector.
#[derive(Clone, Copy, Debug)]
pub struct PolicyLayout {
    pub nh: usize,
    pub w1: usize,
    pub b1: usize,
    pub w2: usize,
    pub b2: usize,
    pub len: usize,
}

impl PolicyConfig {
    pub fn layout(&self) -> PolicyLayout {
        let nh = self.nh;
        let w = nh * FEATURES;
        PolicyLayout {
            nh,
            w1: 0,
            b1: w,
            w2: w + nh,
            b2: 2 * w + nh,
            len: 2 * (w + nh),
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=16).contains(&self.nh),
            "policy width nh = {} must be in 1..=16",
            self.nh
        );
        anyhow::ensure!(
            (1..=64).contains(&self.m),
            "L-BFGS memory m = {} must be in 1..=64",
            self.m
        );
        anyhow::ensure!(
            self.tau_min < self.tau_max && self.tau_min.is_finite() && self.tau_max.is_finite(),
            "clip interval [{}, {}] must be finite and non-empty",
            self.tau_min,
            self.tau_max
        );
        anyhow::ensure!(self.eps > 0.0, "feature floor ε must be positive");
        Ok(())
    }

    /// Initial parameters: W ~ N(0, 0.01²); b2 = 1, b1 = τ0·1 with τ0 the middle of the clip interval, so the
    /// first policy outputs t ≈ exp(τ0) with every clip inactive (a policy starting on a bound gets no gradient).
    pub fn init(&self, seed: u64) -> Vec<f64> {
        let l = self.layout();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut phi = vec![0.0; l.len];
        let tau0 = 0.5 * (self.tau_min + self.tau_max);
        for (i, v) in phi.iter_mut().enumerate() {
            *v = if (l.b1..l.b1 + l.nh).contains(&i) {
                tau0
            } else if (l.b2..l.b2 + l.nh).contains(&i) {
                1.0
            } else {
                0.01 * (rng.random::<f64>() * 2.0 - 1.0) * 3f64.sqrt()
            };
        }
        phi
    }
}

/// σ_ij: the superdiagonal entries of X have their signs reversed (seed 003 §4).
pub fn sign(i: usize, j: usize) -> f64 {
    if i < j { -1.0 } else { 1.0 }
}

/// u0 = ln(max(σ ⊙ G, ε)) for the 4×4 Gram matrix G (row-major).
pub fn features(gram: &[f64; FEATURES], eps: f64) -> [f64; FEATURES] {
    let mut u0 = [0.0; FEATURES];
    for i in 0..4 {
        for j in 0..4 {
            u0[4 * i + j] = (sign(i, j) * gram[4 * i + j]).max(eps).ln();
        }
    }
    u0
}

/// The policy's intermediate values at one step (what the reverse sweep needs).
#[derive(Clone, Debug)]
pub struct PolicyEval {
    pub u0: [f64; FEATURES],
    pub u1: Vec<f64>,
    pub u2: Vec<f64>,
    /// p = u1ᵀu2 / ‖u2‖² before the clip.
    pub p: f64,
    pub tau: f64,
    pub t: f64,
}

impl PolicyEval {
    /// Whether the clip is inactive (∂τ/∂p = 1).
    pub fn inside(&self, cfg: &PolicyConfig) -> bool {
        self.p > cfg.tau_min && self.p < cfg.tau_max
    }
}

/// π(X; φ): features, two linear layers, projection and clip (seed 003 Fig. 1 and eq. 3).
pub fn policy(cfg: &PolicyConfig, phi: &[f64], gram: &[f64; FEATURES]) -> PolicyEval {
    let l = cfg.layout();
    let u0 = features(gram, cfg.eps);
    let layer = |w: usize, b: usize| -> Vec<f64> {
        (0..l.nh)
            .map(|r| {
                phi[b + r]
                    + (0..FEATURES)
                        .map(|c| phi[w + r * FEATURES + c] * u0[c])
                        .sum::<f64>()
            })
            .collect()
    };
    let (u1, u2) = (layer(l.w1, l.b1), layer(l.w2, l.b2));
    let q: f64 = u2.iter().map(|v| v * v).sum();
    let p = u1.iter().zip(&u2).map(|(a, b)| a * b).sum::<f64>() / q;
    // NaN (‖u2‖ = 0) falls to the lower bound: the smallest step, never a NaN step
    let tau = if p.is_nan() {
        cfg.tau_min
    } else {
        p.clamp(cfg.tau_min, cfg.tau_max)
    };
    PolicyEval {
        u0,
        u1,
        u2,
        p,
        tau,
        t: tau.exp(),
    }
}

/// Reverse of [`policy`] for the adjoint λτ of τ: adds ∂/∂φ into `dphi` and returns λG (the adjoint of the
/// Gram matrix entries, row-major; entries at the ε floor get 0).
pub fn policy_adjoint(
    cfg: &PolicyConfig,
    phi: &[f64],
    gram: &[f64; FEATURES],
    ev: &PolicyEval,
    lambda_tau: f64,
    dphi: &mut [f64],
) -> [f64; FEATURES] {
    let l = cfg.layout();
    let mut lg = [0.0; FEATURES];
    if !ev.inside(cfg) {
        return lg;
    }
    let lp = lambda_tau;
    let q: f64 = ev.u2.iter().map(|v| v * v).sum();
    let mut lu0 = [0.0; FEATURES];
    for r in 0..l.nh {
        let lu1 = lp * ev.u2[r] / q;
        let lu2 = lp * (ev.u1[r] - 2.0 * ev.p * ev.u2[r]) / q;
        dphi[l.b1 + r] += lu1;
        dphi[l.b2 + r] += lu2;
        for c in 0..FEATURES {
            dphi[l.w1 + r * FEATURES + c] += lu1 * ev.u0[c];
            dphi[l.w2 + r * FEATURES + c] += lu2 * ev.u0[c];
            lu0[c] += phi[l.w1 + r * FEATURES + c] * lu1 + phi[l.w2 + r * FEATURES + c] * lu2;
        }
    }
    for i in 0..4 {
        for j in 0..4 {
            let x = sign(i, j) * gram[4 * i + j];
            if x > cfg.eps {
                lg[4 * i + j] = sign(i, j) * lu0[4 * i + j] / x;
            }
        }
    }
    lg
}
