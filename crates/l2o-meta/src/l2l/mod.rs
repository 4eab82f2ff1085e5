//! The coordinatewise LSTM optimizer of Andrychowicz et al. 2016 (seed 002 §2, Fig. 3; seed 001): its
//! parameters φ, the f64 CPU reference of the forward step and of the hand-derived adjoint, and the
//! frozen-gradient surrogate that proves the adjoint right. The device kernels (`shaders/lstm.wgsl`,
//! [`crate::l2l::device`]) implement exactly these equations.
//!
//! ## Forward (one coordinate; all coordinates of all problems share φ and have their own state)
//! ```text
//! x_t = pre(g_t)                      D = 2: (log|g|/p, sign g) if |g| ≥ e^{-p}, else (−1, e^p·g)   (p = 10)
//!                                     D = 1: x = g (no preprocessing)
//! layer ℓ = 1, 2 with input a¹ = x_t, a² = h¹_{t+1}:
//!   z = W_ℓ [a; h^ℓ_t] + b_ℓ          W_ℓ ∈ R^{4H×(D_ℓ+H)}, gate blocks in the order i, f, o, ĝ
//!   i = σ(z_i), f = σ(z_f), o = σ(z_o), ĝ = tanh(z_ĝ)
//!   c^ℓ_{t+1} = f⊙c^ℓ_t + i⊙ĝ,   h^ℓ_{t+1} = o⊙tanh(c^ℓ_{t+1})
//! u_t = w_outᵀ h²_{t+1} + b_out;     θ_{t+1} = θ_t + s·u_t                                 (s = output scale)
//! ```
//! ## Meta-loss of an unroll of T steps (B problems)
//! L(φ) = (1/B) Σ_b Σ_{t=1..T} w_t f_b(θ_{b,t}); second derivatives are dropped: g_t = ∇f(θ_t) enters the
//! LSTM as a constant input (seed 002 §2; `../shared/notes/adjoint-method.md`).
//!
//! ## Adjoint (reverse sweep, per coordinate; λ's are ∂L/∂·)
//! ```text
//! λθ ← (w_T/B)·g_T;  λh¹ = λc¹ = λh² = λc² ← 0       (state after the unroll is a constant: truncation)
//! for t = T−1 … 0:
//!   du_t = s·λθ;  ∂w_out += du_t·h²_{t+1};  ∂b_out += du_t;  λh² += du_t·w_out
//!   layer 2 then layer 1, each with its carried λh, λc (adjoints of h_{t+1}, c_{t+1}):
//!     τ = tanh(c_{t+1});  λo = λh⊙τ;  λc += λh⊙o⊙(1−τ²)
//!     λi = λc⊙ĝ;  λf = λc⊙c_t;  λĝ = λc⊙i;  λc ← λc⊙f                       (now the adjoint of c_t)
//!     δ = (λi⊙i(1−i), λf⊙f(1−f), λo⊙o(1−o), λĝ⊙(1−ĝ²))                     (∂L/∂z, 4H)
//!     ∂W_ℓ += δ [a; h_t]ᵀ;  ∂b_ℓ += δ;  [λa; λh] ← W_ℓᵀ δ                   (λh is now the adjoint of h_t)
//!     layer 2's λa is added to layer 1's λh¹ (a² = h¹_{t+1}); layer 1's λa is dropped (x depends on g only)
//!   λθ += (w_t/B)·g_t   for t ≥ 1
//! ```
//! Memory of the device trajectory: (T+1)·4H states + T·D inputs + (T+1) gradients + T·(8H+1) adjoint rows per
//! coordinate, i.e. O(T·B·n·H) numbers (≈ 250·T·B·n for H = 20).

pub mod device;
pub mod kernels;
pub mod optimizer;
pub mod train;

use anyhow::{Result, bail};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

/// Largest hidden size the device kernels support (their private arrays are sized by it).
pub const MAX_HIDDEN: usize = 32;

/// Architecture of the coordinatewise LSTM optimizer.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LstmConfig {
    /// Hidden units per layer H (seed: 20).
    pub hidden: usize,
    /// Gradient preprocessing with p (seed appendix A: p = 10); None feeds the raw gradient (D = 1).
    pub preprocess: Option<f64>,
    /// Output scale s: θ ← θ + s·u (1 for quadratics, 0.1 for MNIST in the seed).
    pub scale: f64,
}

impl Default for LstmConfig {
    fn default() -> Self {
        Self {
            hidden: 20,
            preprocess: Some(10.0),
            scale: 1.0,
        }
    }
}

/// Offsets of the parameter blocks in the flat vector φ.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layout {
    pub h: usize,
    pub d: usize,
    pub w1: usize,
    pub b1: usize,
    pub w2: usize,
    pub b2: usize,
    pub wo: usize,
    pub bo: usize,
    pub len: usize,
}

impl LstmConfig {
    pub fn input_dim(&self) -> usize {
        if self.preprocess.is_some() { 2 } else { 1 }
    }

    pub fn validate(&self) -> Result<()> {
        if self.hidden == 0 || self.hidden > MAX_HIDDEN {
            bail!("hidden size {} must be in 1..={MAX_HIDDEN}", self.hidden);
        }
        if let Some(p) = self.preprocess {
            if !(p > 0.0 && p.is_finite()) {
                bail!("preprocessing p = {p} must be positive");
            }
        }
        if !(self.scale.is_finite() && self.scale != 0.0) {
            bail!("output scale {} must be a non-zero number", self.scale);
        }
        Ok(())
    }

    /// φ = [W1 (4H×(D+H)), b1 (4H), W2 (4H×2H), b2 (4H), w_out (H), b_out].
    pub fn layout(&self) -> Layout {
        let (h, d) = (self.hidden, self.input_dim());
        let w1 = 0;
        let b1 = w1 + 4 * h * (d + h);
        let w2 = b1 + 4 * h;
        let b2 = w2 + 4 * h * 2 * h;
        let wo = b2 + 4 * h;
        let bo = wo + h;
        Layout {
            h,
            d,
            w1,
            b1,
            w2,
            b2,
            wo,
            bo,
            len: bo + 1,
        }
    }

    /// Initial φ: weights U(−1/√H, 1/√H), forget-gate biases +1, other biases 0, output weights ×0.1.
    pub fn init(&self, seed: u64) -> Vec<f64> {
        let l = self.layout();
        let mut rng = StdRng::seed_from_u64(seed);
        let a = 1.0 / (l.h as f64).sqrt();
        let mut phi: Vec<f64> = (0..l.len).map(|_| rng.random_range(-a..a)).collect();
        for j in 0..4 * l.h {
            let forget = (l.h..2 * l.h).contains(&j);
            phi[l.b1 + j] = if forget { 1.0 } else { 0.0 };
            phi[l.b2 + j] = if forget { 1.0 } else { 0.0 };
        }
        for j in 0..l.h {
            phi[l.wo + j] *= 0.1;
        }
        phi[l.bo] = 0.0;
        phi
    }

    /// The preprocessed input x(g) (D values).
    pub fn preprocess(&self, g: f64) -> [f64; 2] {
        match self.preprocess {
            None => [g, 0.0],
            Some(p) => {
                if g.abs() >= (-p).exp() {
                    [g.abs().ln() / p, g.signum()]
                } else {
                    [-1.0, p.exp() * g]
                }
            }
        }
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Recurrent state of one coordinate: h¹, c¹, h², c² (H each), stored as one vector [h1, c1, h2, c2].
pub type CoordState = Vec<f64>;

/// What the reverse sweep of one layer needs from the forward step.
struct LayerFwd {
    gates: Vec<f64>, // i, f, o, ĝ after activation (4H)
    c_new: Vec<f64>,
    h_new: Vec<f64>,
}

fn layer_forward(
    phi: &[f64],
    w: usize,
    b: usize,
    h: usize,
    input: &[f64],
    h_prev: &[f64],
    c_prev: &[f64],
) -> LayerFwd {
    let cols = input.len() + h;
    let mut gates = vec![0.0; 4 * h];
    for (r, gate) in gates.iter_mut().enumerate() {
        let row = &phi[w + r * cols..w + (r + 1) * cols];
        let mut z = phi[b + r];
        for (j, a) in input.iter().enumerate() {
            z += row[j] * a;
        }
        for (j, a) in h_prev.iter().enumerate() {
            z += row[input.len() + j] * a;
        }
        *gate = if r < 3 * h { sigmoid(z) } else { z.tanh() };
    }
    let mut c_new = vec![0.0; h];
    let mut h_new = vec![0.0; h];
    for j in 0..h {
        let (i, f, o, gg) = (gates[j], gates[h + j], gates[2 * h + j], gates[3 * h + j]);
        c_new[j] = f * c_prev[j] + i * gg;
        h_new[j] = o * c_new[j].tanh();
    }
    LayerFwd {
        gates,
        c_new,
        h_new,
    }
}

/// Both layers of one step from the input x and the state [h¹, c¹, h², c²] (shared by the forward step and
/// the reverse sweep, which recomputes the gates).
fn cells(cfg: &LstmConfig, phi: &[f64], x: &[f64], state: &[f64]) -> (LayerFwd, LayerFwd) {
    let l = cfg.layout();
    let h = l.h;
    let l1 = layer_forward(
        phi,
        l.w1,
        l.b1,
        h,
        &x[..l.d],
        &state[0..h],
        &state[h..2 * h],
    );
    let l2 = layer_forward(
        phi,
        l.w2,
        l.b2,
        h,
        &l1.h_new,
        &state[2 * h..3 * h],
        &state[3 * h..4 * h],
    );
    (l1, l2)
}

/// One forward step of one coordinate: the update u and the new state.
pub fn step(cfg: &LstmConfig, phi: &[f64], g: f64, state: &[f64]) -> (f64, CoordState) {
    let l = cfg.layout();
    let h = l.h;
    let (l1, l2) = cells(cfg, phi, &cfg.preprocess(g), state);
    let mut u = phi[l.bo];
    for j in 0..h {
        u += phi[l.wo + j] * l2.h_new[j];
    }
    let mut s = Vec::with_capacity(4 * h);
    s.extend(&l1.h_new);
    s.extend(&l1.c_new);
    s.extend(&l2.h_new);
    s.extend(&l2.c_new);
    (u, s)
}

/// Reverse of one layer: given the carried adjoints λh, λc of (h_{t+1}, c_{t+1}), accumulate ∂W, ∂b into
/// `dphi`, return the adjoint of the layer input and leave λh, λc as the adjoints of (h_t, c_t).
#[allow(clippy::too_many_arguments)]
fn layer_reverse(
    phi: &[f64],
    dphi: &mut [f64],
    w: usize,
    b: usize,
    h: usize,
    input: &[f64],
    h_prev: &[f64],
    c_prev: &[f64],
    fwd: &LayerFwd,
    lh: &mut [f64],
    lc: &mut [f64],
) -> Vec<f64> {
    let cols = input.len() + h;
    let mut delta = vec![0.0; 4 * h];
    for j in 0..h {
        let (i, f, o, gg) = (
            fwd.gates[j],
            fwd.gates[h + j],
            fwd.gates[2 * h + j],
            fwd.gates[3 * h + j],
        );
        let tau = fwd.c_new[j].tanh();
        let lo = lh[j] * tau;
        let lct = lc[j] + lh[j] * o * (1.0 - tau * tau);
        delta[j] = lct * gg * i * (1.0 - i);
        delta[h + j] = lct * c_prev[j] * f * (1.0 - f);
        delta[2 * h + j] = lo * o * (1.0 - o);
        delta[3 * h + j] = lct * i * (1.0 - gg * gg);
        lc[j] = lct * f;
    }
    let mut l_in = vec![0.0; input.len()];
    lh.iter_mut().for_each(|v| *v = 0.0);
    for (r, &dr) in delta.iter().enumerate() {
        let row = w + r * cols;
        for (j, a) in input.iter().enumerate() {
            dphi[row + j] += dr * a;
            l_in[j] += phi[row + j] * dr;
        }
        for (j, a) in h_prev.iter().enumerate() {
            dphi[row + input.len() + j] += dr * a;
            lh[j] += phi[row + input.len() + j] * dr;
        }
        dphi[b + r] += dr;
    }
    l_in
}

/// A recorded forward unroll of B problems × n coordinates over T steps (f64 CPU reference).
#[derive(Clone, Debug)]
pub struct Unroll {
    pub n: usize,
    pub batch: usize,
    pub steps: usize,
    /// g_t for t = 0..=T, each B·n.
    pub grads: Vec<Vec<f64>>,
    /// θ_t for t = 0..=T.
    pub thetas: Vec<Vec<f64>>,
    /// Per-coordinate states for t = 0..=T, each B·n states of 4H.
    pub states: Vec<Vec<CoordState>>,
    /// f_b(θ_t) for t = 0..=T, each B.
    pub losses: Vec<Vec<f64>>,
    /// L = (1/B) Σ_b Σ_{t=1..T} w_t f_b(θ_t).
    pub meta_loss: f64,
}

/// Evaluate every problem: (losses, gradients) at θ (B·n).
pub type LossGrad<'a> = dyn Fn(usize, &[f64]) -> (f64, Vec<f64>) + 'a;

fn eval_all(lg: &LossGrad, n: usize, batch: usize, theta: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut f = Vec::with_capacity(batch);
    let mut g = Vec::with_capacity(batch * n);
    for b in 0..batch {
        let (fb, gb) = lg(b, &theta[b * n..(b + 1) * n]);
        f.push(fb);
        g.extend(gb);
    }
    (f, g)
}

/// Weights w_t for t = 1..=T (index t−1); all ones by default.
pub fn unit_weights(steps: usize) -> Vec<f64> {
    vec![1.0; steps]
}

/// Forward unroll of T steps from θ_0 and the per-coordinate states, with the true gradients (the meta-training
/// forward pass). `lg(b, θ_b)` is problem b's loss and gradient.
#[allow(clippy::too_many_arguments)]
pub fn unroll(
    cfg: &LstmConfig,
    phi: &[f64],
    lg: &LossGrad,
    n: usize,
    batch: usize,
    theta0: &[f64],
    state0: &[CoordState],
    weights: &[f64],
) -> Unroll {
    run_unroll(cfg, phi, lg, n, batch, theta0, state0, weights, None)
}

/// The frozen-gradient surrogate L̃(φ): the same recurrence, but the optimizer is fed the gradients recorded in
/// `rec` instead of ∇f at the new iterates; f itself is still evaluated at the new iterates. At φ = the φ of
/// `rec`, ∇L̃ is exactly the truncated meta-gradient computed by [`adjoint`].
pub fn surrogate(
    cfg: &LstmConfig,
    phi: &[f64],
    lg: &LossGrad,
    rec: &Unroll,
    state0: &[CoordState],
    weights: &[f64],
) -> f64 {
    run_unroll(
        cfg,
        phi,
        lg,
        rec.n,
        rec.batch,
        &rec.thetas[0],
        state0,
        weights,
        Some(&rec.grads),
    )
    .meta_loss
}

#[allow(clippy::too_many_arguments)]
fn run_unroll(
    cfg: &LstmConfig,
    phi: &[f64],
    lg: &LossGrad,
    n: usize,
    batch: usize,
    theta0: &[f64],
    state0: &[CoordState],
    weights: &[f64],
    frozen: Option<&[Vec<f64>]>,
) -> Unroll {
    let steps = weights.len();
    let mut theta = theta0.to_vec();
    let mut states = state0.to_vec();
    let (f0, g0) = eval_all(lg, n, batch, &theta);
    let mut rec = Unroll {
        n,
        batch,
        steps,
        grads: vec![g0],
        thetas: vec![theta.clone()],
        states: vec![states.clone()],
        losses: vec![f0],
        meta_loss: 0.0,
    };
    for t in 0..steps {
        let g = match frozen {
            Some(gs) => &gs[t],
            None => &rec.grads[t],
        };
        let mut next = Vec::with_capacity(states.len());
        for k in 0..batch * n {
            let (u, s) = step(cfg, phi, g[k], &states[k]);
            theta[k] += cfg.scale * u;
            next.push(s);
        }
        states = next;
        let (f, g) = eval_all(lg, n, batch, &theta);
        rec.meta_loss += weights[t] * f.iter().sum::<f64>() / batch as f64;
        rec.grads.push(g);
        rec.thetas.push(theta.clone());
        rec.states.push(states.clone());
        rec.losses.push(f);
    }
    rec
}

/// The hand-derived adjoint: ∂L/∂φ of the unroll `rec` (recorded at `phi`), by the reverse sweep in the
/// module docs. Truncated: g_t are constants, the final state's adjoint is zero.
pub fn adjoint(cfg: &LstmConfig, phi: &[f64], rec: &Unroll, weights: &[f64]) -> Vec<f64> {
    let l = cfg.layout();
    let h = l.h;
    let steps = rec.steps;
    let bn = rec.batch as f64;
    let mut dphi = vec![0.0; l.len];
    for k in 0..rec.batch * rec.n {
        let mut lth = weights[steps - 1] / bn * rec.grads[steps][k];
        let (mut lh1, mut lc1, mut lh2, mut lc2) =
            (vec![0.0; h], vec![0.0; h], vec![0.0; h], vec![0.0; h]);
        for t in (0..steps).rev() {
            let s = &rec.states[t][k];
            let x = cfg.preprocess(rec.grads[t][k]);
            let (f1, f2) = cells(cfg, phi, &x, s);
            let du = cfg.scale * lth;
            for j in 0..h {
                dphi[l.wo + j] += du * f2.h_new[j];
                lh2[j] += du * phi[l.wo + j];
            }
            dphi[l.bo] += du;
            let l_h1 = layer_reverse(
                phi,
                &mut dphi,
                l.w2,
                l.b2,
                h,
                &f1.h_new,
                &s[2 * h..3 * h],
                &s[3 * h..4 * h],
                &f2,
                &mut lh2,
                &mut lc2,
            );
            for j in 0..h {
                lh1[j] += l_h1[j];
            }
            layer_reverse(
                phi,
                &mut dphi,
                l.w1,
                l.b1,
                h,
                &x[..l.d],
                &s[0..h],
                &s[h..2 * h],
                &f1,
                &mut lh1,
                &mut lc1,
            );
            if t >= 1 {
                lth += weights[t - 1] / bn * rec.grads[t][k];
            }
        }
    }
    dphi
}

/// Zero initial states for B·n coordinates.
pub fn zero_states(cfg: &LstmConfig, coords: usize) -> Vec<CoordState> {
    vec![vec![0.0; 4 * cfg.hidden]; coords]
}
