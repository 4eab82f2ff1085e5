//! The Hilbert LSTM (seed 000): a learned optimizer whose every operation on vectors of R^n is a Hilbert-space
//! operation — sums, scalar × vector, inner products — and whose scalar work is a small network of Gram-matrix
//! features. This module is the f64 CPU reference: the cell, its hand-derived adjoint, the unroll, the reverse
//! sweep and the frozen-gradient surrogate. `docs/hlstm.md` states the design; the device path
//! ([`crate::hlstm::device`], `shaders/hlstm.wgsl`) implements exactly these equations.
//!
//! ## The cell (one problem, step t; docs/hlstm.md §2)
//! ```text
//! V   = [g, s_1..s_m, y_1..y_m, c, h]  (k = 2m+3; s_i = θ_{t−i+1} − θ_{t−i}, y_i = g_{t−i+1} − g_{t−i}, newest first)
//! G   = VᵀV;  ν_j = √G_jj;  a_i = [G_{s_i y_i} > ε_c ν_{s_i} ν_{y_i}]  (pair i accepted; missing pairs are 0)
//! γ   = G_{s_h y_h} / G_{y_h y_h} for the newest accepted pair h, else the carried γ;  hasp = carried ∨ any a_i
//! ℓ   = γ ν_g if hasp else min(1, ν_g)                  (L-BFGS's step-length scale, units of θ)
//! d   = Σ_j δ_j V_j: the L-BFGS two-loop direction run on G in coefficient space (cell 2 only, below)
//! z   = [cosines G_ij/(ν_i ν_j), i<j;  λ(ν_g/ν_0), λ(ν_{s_i}/ℓ), λ(ν_{y_i}/ν_g), tanh ν_c, ν_h;  a_i, hasp;
//!        cell 2: cosines ⟨d, V_j⟩/(‖d‖ν_j), λ(‖d‖/ℓ), [d not reset]]      λ(x) = tanh(ln x / 10)
//!        (a feature of a masked vector — rejected pair, zero c or h — is 0)
//! a   = tanh(W1 z + b1);  o = W2 a + b2
//! f, i, o_g = σ(o_0), σ(o_1), σ(o_2);  α = o[3 .. 3+k_c];  β = o[3+k_c .. 3+k_c+2m+2];  τ = 3 tanh(o_last / 3)
//! ĉ   = Σ_j α_j V_j/ν_j (masked)  (+ α_k d/‖d‖ in cell 2)
//! c'  = f c + i ĉ;   h' = o_g · c' tanh‖c'‖/‖c'‖       (‖c'‖² = κᵀGκ: c' is in the span of V)
//! r   = β_0 h' + Σ_{w ∈ g, s_i, y_i} β_w V_w/ν_w (masked)
//! u   = e^τ (d + ‖d‖ r)   (cell 2)        u = e^τ ℓ r   (cell 1)
//! θ_{t+1} = θ_t + u,  s ← u,  c ← c', h ← h'
//! ```
//! Every output vector is Σ_j κ_j V_j with κ computed from G alone, so a step is one Gram dispatch, one
//! per-problem scalar kernel and one linear-combination dispatch.
//!
//! ## L-BFGS in coefficient space (cell 2; Nocedal & Wright Alg. 7.4 run on G)
//! ```text
//! q = −e_g;  for i = 1..m (newest first) with a_i:  α_i = ρ_i (Gq)_{s_i},  q ← q − α_i e_{y_i}     (ρ_i = 1/G_{s_i y_i})
//! r = γ q;   for i = m..1 with a_i:                β_i = ρ_i (Gr)_{y_i},  r ← r + (α_i − β_i) e_{s_i}
//! δ = −e_g if (Gr)_g ≥ 0 (not a descent direction), else r;   δ ← min(1, 1/ν_g) δ while no pair was ever accepted
//! ```
//! This is exactly `l2o_optim::lbfgs::reference` with the constant step rule: with β = 0 and τ = 0 (the
//! initialisation [`HlstmConfig::init`] gives cell 2) u = d and the HLSTM *is* L-BFGS with step 1 — to rounding.
//! Cell 1 initialises to u = −γ g, the Barzilai–Borwein step.
//!
//! ## Meta-loss and truncation (docs/hlstm.md §4)
//! L(φ) = (1/B) Σ_b Σ_{t=1..T} w_t ℓ(f_b(θ_t)), ℓ(f) = f ("sum") or ln max(f, ε_f f_start) ("log", f_start = f at
//! the start of the run). Gradients g_t are inputs (no second derivatives), so y_i are constants; s_i (= earlier
//! u), c, h and every scalar derived from them depend on φ. Constant as well: the discrete decisions (pair
//! acceptance, direction reset, masks), the carried γ and hasp (scalar state), and everything carried into the
//! unroll (θ, c, h, the memory pairs).
//!
//! ## Adjoint (per step, reverse order; λ are ∂L/∂·)
//! ```text
//! λθ += (w_{t+1}/B) ℓ'(f_{t+1}) g_{t+1};   λu_t += λθ                (θ_{t+1} = θ_t + u_t)
//! λκ_{o,j} = ⟨λout_o, V_j⟩ for o ∈ {c', h', u}                     (out_o = Σ_j κ_{o,j} V_j)
//! λG = cell_adjoint(λκ)                                              (scalar reverse mode, [`cell_adjoint`])
//! λV_i = Σ_o κ_{o,i} λout_o + Σ_j (λG_ij + λG_ji) V_j                (G_ij = ⟨V_i, V_j⟩)
//! λu_{t−i} += λV_{s_i};  λc_t = λV_c;  λh_t = λV_h;  (λg, λy: inputs, dropped)
//! ```
//! so the reverse sweep is again inner products, one scalar kernel and linear combinations.

pub mod device;
pub mod train;

use anyhow::{Result, ensure};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use crate::l2l::LossGrad;

/// τ = TAU_BOUND · tanh(o / TAU_BOUND): the step multiplier e^τ stays in (e^−3, e^3).
pub const TAU_BOUND: f64 = 3.0;
/// Log features λ(x) = tanh(ln x / LOG_SCALE).
pub const LOG_SCALE: f64 = 10.0;
/// ψ(q) = tanh(√q)/√q by its Taylor series below this q (docs/hlstm.md §2).
pub const PSI_SERIES: f64 = 1e-3;

/// Architecture of a Hilbert LSTM.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct HlstmConfig {
    /// Cell structure: 1 = gates and coefficients from Gram features only (initialised to the
    /// Barzilai–Borwein step); 2 = the same plus the L-BFGS two-loop direction and a residual around it
    /// (initialised to L-BFGS with step 1).
    pub cell: u32,
    /// Memory pairs (s_i, y_i), like L-BFGS's m.
    pub m: usize,
    /// Units of the scalar network's hidden layer.
    pub hidden: usize,
    /// Pair acceptance sᵀy > ε_c‖s‖‖y‖; None: the L-BFGS default of the precision (1e-5 f32, 1e-10 f64).
    pub curvature_eps: Option<f64>,
}

impl Default for HlstmConfig {
    fn default() -> Self {
        Self {
            cell: 2,
            m: 5,
            hidden: 32,
            curvature_eps: None,
        }
    }
}

/// Index map of the basis, the features, the outputs and φ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub m: usize,
    /// Basis vectors k = 2m + 3.
    pub k: usize,
    /// Features.
    pub nf: usize,
    pub hidden: usize,
    /// Candidate coefficients (k, or k + 1 with d in cell 2).
    pub kc: usize,
    /// Network outputs: 3 gates, kc candidate coefficients, 2m + 2 residual coefficients, τ.
    pub no: usize,
    /// Offsets in φ.
    pub w1: usize,
    pub b1: usize,
    pub w2: usize,
    pub b2: usize,
    pub len: usize,
}

impl Layout {
    pub fn g(&self) -> usize {
        0
    }
    pub fn s(&self, i: usize) -> usize {
        1 + i
    }
    pub fn y(&self, i: usize) -> usize {
        1 + self.m + i
    }
    pub fn c(&self) -> usize {
        2 * self.m + 1
    }
    pub fn h(&self) -> usize {
        2 * self.m + 2
    }
    /// Output index of the first residual coefficient (β_0 multiplies h').
    pub fn res0(&self) -> usize {
        3 + self.kc
    }
    pub fn tau(&self) -> usize {
        self.no - 1
    }
    /// Residual slot r → basis index (r = 0 is h', handled apart): 1 → g, 2.. → s_i, then y_i.
    pub fn res_basis(&self, r: usize) -> usize {
        r - 1
    }
}

impl HlstmConfig {
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.cell == 1 || self.cell == 2,
            "HLSTM cell must be 1 or 2, got {}",
            self.cell
        );
        ensure!(
            (1..=12).contains(&self.m),
            "HLSTM memory m = {} must be in 1..=12",
            self.m
        );
        ensure!(
            (1..=64).contains(&self.hidden),
            "HLSTM hidden units = {} must be in 1..=64",
            self.hidden
        );
        if let Some(e) = self.curvature_eps {
            ensure!(
                e >= 0.0 && e.is_finite(),
                "curvature ε must be ≥ 0, got {e}"
            );
        }
        Ok(())
    }

    pub fn layout(&self) -> Layout {
        let m = self.m;
        let k = 2 * m + 3;
        let mut nf = k * (k - 1) / 2 + (2 * m + 3) + (m + 1);
        let mut kc = k;
        if self.cell == 2 {
            nf += k + 2;
            kc += 1;
        }
        let no = 3 + kc + 2 * m + 2 + 1;
        let h = self.hidden;
        let w1 = 0;
        let b1 = w1 + h * nf;
        let w2 = b1 + h;
        let b2 = w2 + no * h;
        Layout {
            m,
            k,
            nf,
            hidden: h,
            kc,
            no,
            w1,
            b1,
            w2,
            b2,
            len: b2 + no,
        }
    }

    pub fn eps_c(&self, p: l2o_engine::Precision) -> f64 {
        self.curvature_eps.unwrap_or(match p {
            l2o_engine::Precision::F32 => 1e-5,
            l2o_engine::Precision::F64 => 1e-10,
        })
    }

    /// Initial φ from `seed`: W1 ~ N(0, 1/nf), W2 rows of the gates and candidate coefficients ~ N(0, 0.1²/H),
    /// forget-gate bias 1; the residual coefficients and τ are exactly 0 (their W2 rows and biases), except
    /// cell 1's bias β_g = −1. So cell 2 starts as L-BFGS with step 1 (u = d) and cell 1 as u = −ℓ ĝ = −γ g.
    pub fn init(&self, seed: u64) -> Vec<f64> {
        let l = self.layout();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut normal = || rng.sample::<f64, _>(rand_distr::StandardNormal);
        let mut phi = vec![0.0; l.len];
        let s1 = 1.0 / (l.nf as f64).sqrt();
        for v in &mut phi[l.w1..l.b1] {
            *v = s1 * normal();
        }
        let s2 = 0.1 / (l.hidden as f64).sqrt();
        for o in 0..l.res0() {
            for j in 0..l.hidden {
                phi[l.w2 + o * l.hidden + j] = s2 * normal();
            }
        }
        phi[l.b2] = 1.0;
        if self.cell == 1 {
            phi[l.b2 + l.res0() + 1] = -1.0;
        }
        phi
    }
}

/// Scalar state carried from step to step (constants of the meta-gradient).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CellState {
    /// γ of the newest accepted pair seen so far (1 before any).
    pub gamma: f64,
    /// Whether any pair was ever accepted.
    pub hasp: bool,
    /// ‖g‖ at the first step of the run (0 before it).
    pub nu0: f64,
}

impl Default for CellState {
    fn default() -> Self {
        Self {
            gamma: 1.0,
            hasp: false,
            nu0: 0.0,
        }
    }
}

/// Everything one cell evaluation computes (the reverse sweep recomputes it from G and the state).
#[derive(Clone, Debug, Default)]
pub struct CellEval {
    pub nu: Vec<f64>,
    /// Vector masks (1: usable) and pair acceptance.
    pub mask: Vec<f64>,
    pub acc: Vec<bool>,
    pub rho: Vec<f64>,
    pub gamma: f64,
    /// Pair index γ came from (None: carried).
    pub gamma_from: Option<usize>,
    pub hasp: bool,
    pub lref: f64,
    // cell 2: the two-loop in coefficient space
    pub q_hist: Vec<Vec<f64>>,
    pub alpha: Vec<f64>,
    pub r_hist: Vec<Vec<f64>>,
    pub qc: Vec<f64>,
    pub r: Vec<f64>,
    pub reset: bool,
    pub sigma: f64,
    pub delta: Vec<f64>,
    pub gdelta: Vec<f64>,
    pub dn: f64,
    // network
    pub z: Vec<f64>,
    pub a: Vec<f64>,
    pub o: Vec<f64>,
    pub fg: f64,
    pub ig: f64,
    pub og: f64,
    pub tau: f64,
    pub e: f64,
    // output coefficients
    pub khat: Vec<f64>,
    pub kc: Vec<f64>,
    pub qn: f64,
    pub psi: f64,
    pub kh: Vec<f64>,
    pub res: Vec<f64>,
    pub ku: Vec<f64>,
    pub next: CellState,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// λ(x) = tanh(ln x / LOG_SCALE) and its derivative d/d ln x.
fn logf(x: f64) -> (f64, f64) {
    let v = (x.ln() / LOG_SCALE).tanh();
    (v, (1.0 - v * v) / LOG_SCALE)
}

/// ψ(q) = tanh(√q)/√q and ψ'(q) (Taylor series below [`PSI_SERIES`]).
pub fn psi(q: f64) -> (f64, f64) {
    if q < PSI_SERIES {
        let v =
            1.0 + q * (-1.0 / 3.0 + q * (2.0 / 15.0 + q * (-17.0 / 315.0 + q * (62.0 / 2835.0))));
        let d = -1.0 / 3.0 + q * (4.0 / 15.0 + q * (-51.0 / 315.0 + q * (248.0 / 2835.0)));
        return (v, d);
    }
    let x = q.sqrt();
    let t = x.tanh();
    (t / x, (x * (1.0 - t * t) - t) / (2.0 * x * x * x))
}

fn gdot(gm: &[f64], k: usize, row: usize, v: &[f64]) -> f64 {
    (0..k).map(|l| gm[row * k + l] * v[l]).sum()
}

fn quad(gm: &[f64], k: usize, v: &[f64]) -> f64 {
    (0..k).map(|i| v[i] * gdot(gm, k, i, v)).sum()
}

/// The cell on the Gram matrix `gm` (k×k row-major) with state `st` (module docs).
pub fn cell_forward(
    cfg: &HlstmConfig,
    phi: &[f64],
    gm: &[f64],
    st: &CellState,
    eps_c: f64,
) -> CellEval {
    let l = cfg.layout();
    let (m, k) = (l.m, l.k);
    let (gi, ci, hi) = (l.g(), l.c(), l.h());
    let mut e = CellEval {
        nu: (0..k).map(|j| gm[j * k + j].max(0.0).sqrt()).collect(),
        ..Default::default()
    };
    e.acc = (0..m)
        .map(|i| {
            let (si, yi) = (l.s(i), l.y(i));
            let sy = gm[si * k + yi];
            sy.is_finite() && gm[yi * k + yi] > 0.0 && sy > eps_c * e.nu[si] * e.nu[yi]
        })
        .collect();
    e.rho = (0..m)
        .map(|i| {
            if e.acc[i] {
                1.0 / gm[l.s(i) * k + l.y(i)]
            } else {
                0.0
            }
        })
        .collect();
    e.mask = vec![0.0; k];
    for j in [gi, ci, hi] {
        e.mask[j] = (e.nu[j] > 0.0) as u8 as f64;
    }
    for i in 0..m {
        let a = e.acc[i] as u8 as f64;
        e.mask[l.s(i)] = a * (e.nu[l.s(i)] > 0.0) as u8 as f64;
        e.mask[l.y(i)] = a * (e.nu[l.y(i)] > 0.0) as u8 as f64;
    }
    e.gamma_from = (0..m).find(|&i| e.acc[i]);
    e.gamma = match e.gamma_from {
        Some(h) => gm[l.s(h) * k + l.y(h)] / gm[l.y(h) * k + l.y(h)],
        None => st.gamma,
    };
    e.hasp = st.hasp || e.gamma_from.is_some();
    let nug = e.nu[gi];
    e.lref = if e.hasp { e.gamma * nug } else { nug.min(1.0) };
    let nu0 = if st.nu0 > 0.0 { st.nu0 } else { nug };
    e.next = CellState {
        gamma: e.gamma,
        hasp: e.hasp,
        nu0,
    };
    if cfg.cell == 2 {
        let mut q = vec![0.0; k];
        q[gi] = -1.0;
        e.q_hist = vec![vec![]; m];
        e.r_hist = vec![vec![]; m];
        e.alpha = vec![0.0; m];
        for i in 0..m {
            if e.acc[i] {
                e.q_hist[i] = q.clone();
                e.alpha[i] = e.rho[i] * gdot(gm, k, l.s(i), &q);
                q[l.y(i)] -= e.alpha[i];
            }
        }
        e.qc = q.clone();
        let mut r: Vec<f64> = q.iter().map(|v| e.gamma * v).collect();
        for i in (0..m).rev() {
            if e.acc[i] {
                e.r_hist[i] = r.clone();
                let beta = e.rho[i] * gdot(gm, k, l.y(i), &r);
                r[l.s(i)] += e.alpha[i] - beta;
            }
        }
        let gd = gdot(gm, k, gi, &r);
        e.reset = !(gd < 0.0 && gd.is_finite());
        if e.reset {
            r = vec![0.0; k];
            r[gi] = -1.0;
        }
        e.sigma = if e.hasp || nug == 0.0 {
            1.0
        } else {
            (1.0 / nug).min(1.0)
        };
        e.delta = r.iter().map(|v| e.sigma * v).collect();
        e.r = r;
        e.gdelta = (0..k).map(|j| gdot(gm, k, j, &e.delta)).collect();
        e.dn = quad(gm, k, &e.delta).max(0.0).sqrt();
    }
    // features
    let mut z = Vec::with_capacity(l.nf);
    for i in 0..k {
        for j in i + 1..k {
            let mm = e.mask[i] * e.mask[j];
            z.push(if mm > 0.0 {
                gm[i * k + j] / (e.nu[i] * e.nu[j])
            } else {
                0.0
            });
        }
    }
    let lf = |x: f64, on: bool| {
        if on && x > 0.0 && x.is_finite() {
            logf(x).0
        } else {
            0.0
        }
    };
    z.push(lf(nug / nu0, nug > 0.0 && nu0 > 0.0));
    for i in 0..m {
        let on = e.mask[l.s(i)] > 0.0 && e.lref > 0.0;
        z.push(lf(e.nu[l.s(i)] / e.lref, on));
        z.push(lf(e.nu[l.y(i)] / nug, e.mask[l.y(i)] > 0.0 && nug > 0.0));
    }
    z.push(e.nu[ci].tanh());
    z.push(e.nu[hi]);
    for i in 0..m {
        z.push(e.acc[i] as u8 as f64);
    }
    z.push(e.hasp as u8 as f64);
    if cfg.cell == 2 {
        for j in 0..k {
            let on = e.mask[j] > 0.0 && e.dn > 0.0;
            z.push(if on {
                e.gdelta[j] / (e.dn * e.nu[j])
            } else {
                0.0
            });
        }
        z.push(lf(e.dn / e.lref, e.dn > 0.0 && e.lref > 0.0));
        z.push(!e.reset as u8 as f64);
    }
    debug_assert_eq!(z.len(), l.nf);
    // network
    let h = l.hidden;
    e.a = (0..h)
        .map(|r| {
            let w = &phi[l.w1 + r * l.nf..l.w1 + (r + 1) * l.nf];
            (phi[l.b1 + r] + w.iter().zip(&z).map(|(a, b)| a * b).sum::<f64>()).tanh()
        })
        .collect();
    e.z = z;
    e.o = (0..l.no)
        .map(|o| {
            let w = &phi[l.w2 + o * h..l.w2 + (o + 1) * h];
            phi[l.b2 + o] + w.iter().zip(&e.a).map(|(a, b)| a * b).sum::<f64>()
        })
        .collect();
    e.fg = sigmoid(e.o[0]);
    e.ig = sigmoid(e.o[1]);
    e.og = sigmoid(e.o[2]);
    e.tau = TAU_BOUND * (e.o[l.tau()] / TAU_BOUND).tanh();
    e.e = e.tau.exp();
    // vectors, as coefficients over V
    e.khat = (0..k)
        .map(|j| {
            if e.mask[j] > 0.0 {
                e.o[3 + j] / e.nu[j]
            } else {
                0.0
            }
        })
        .collect();
    if cfg.cell == 2 && e.dn > 0.0 {
        for j in 0..k {
            e.khat[j] += e.o[3 + k] * e.delta[j] / e.dn;
        }
    }
    e.kc = e.khat.iter().map(|v| e.ig * v).collect();
    e.kc[ci] += e.fg;
    e.qn = quad(gm, k, &e.kc).max(0.0);
    e.psi = psi(e.qn).0;
    e.kh = e.kc.iter().map(|v| e.og * e.psi * v).collect();
    e.res = e.kh.iter().map(|v| e.o[l.res0()] * v).collect();
    for r in 1..2 * m + 2 {
        let j = l.res_basis(r);
        if e.mask[j] > 0.0 {
            e.res[j] += e.o[l.res0() + r] / e.nu[j];
        }
    }
    e.ku = if cfg.cell == 2 {
        (0..k)
            .map(|j| e.e * (e.delta[j] + e.dn * e.res[j]))
            .collect()
    } else {
        e.res.iter().map(|v| e.e * e.lref * v).collect()
    };
    e
}

/// Reverse mode of [`cell_forward`]: given λκ_c', λκ_h', λκ_u (∂L/∂ of the output coefficients), add ∂L/∂φ into
/// `dphi` and return λG (k×k, entry (i, j) = ∂L/∂G_ij with the entries taken as independent inputs).
#[allow(clippy::too_many_arguments)]
pub fn cell_adjoint(
    cfg: &HlstmConfig,
    phi: &[f64],
    gm: &[f64],
    st: &CellState,
    e: &CellEval,
    lkc_in: &[f64],
    lkh_in: &[f64],
    lku: &[f64],
    dphi: &mut [f64],
) -> Vec<f64> {
    let l = cfg.layout();
    let (m, k, h) = (l.m, l.k, l.hidden);
    let (gi, ci, hi) = (l.g(), l.c(), l.h());
    let mut lg = vec![0.0; k * k];
    let mut lnu = vec![0.0; k];
    let mut ldelta = vec![0.0; k];
    let (mut l_dn, mut l_lref, mut lgamma) = (0.0, 0.0, 0.0);
    let mut lo = vec![0.0; l.no];
    let mut lkc = lkc_in.to_vec();
    let mut lkh = lkh_in.to_vec();
    // u
    let lres: Vec<f64>;
    let le;
    if cfg.cell == 2 {
        le = (0..k)
            .map(|j| lku[j] * (e.delta[j] + e.dn * e.res[j]))
            .sum::<f64>();
        for j in 0..k {
            ldelta[j] += e.e * lku[j];
        }
        l_dn += e.e * (0..k).map(|j| lku[j] * e.res[j]).sum::<f64>();
        lres = lku.iter().map(|v| e.e * e.dn * v).collect();
    } else {
        let dr = (0..k).map(|j| lku[j] * e.res[j]).sum::<f64>();
        le = e.lref * dr;
        l_lref += e.e * dr;
        lres = lku.iter().map(|v| e.e * e.lref * v).collect();
    }
    let ltau = le * e.e;
    // r = β_0 h' + Σ β_w V_w/ν_w
    lo[l.res0()] = (0..k).map(|j| lres[j] * e.kh[j]).sum::<f64>();
    for j in 0..k {
        lkh[j] += e.o[l.res0()] * lres[j];
    }
    for r in 1..2 * m + 2 {
        let j = l.res_basis(r);
        if e.mask[j] > 0.0 {
            lo[l.res0() + r] = lres[j] / e.nu[j];
            lnu[j] -= lres[j] * e.o[l.res0() + r] / (e.nu[j] * e.nu[j]);
        }
    }
    // h' = o_g ψ(q) c'
    let s = (0..k).map(|j| lkh[j] * e.kc[j]).sum::<f64>();
    let log_ = e.psi * s;
    let lpsi = e.og * s;
    for j in 0..k {
        lkc[j] += e.og * e.psi * lkh[j];
    }
    let lq = lpsi * psi(e.qn).1;
    for i in 0..k {
        lkc[i] += 2.0 * lq * gdot(gm, k, i, &e.kc);
        for j in 0..k {
            lg[i * k + j] += lq * e.kc[i] * e.kc[j];
        }
    }
    // c' = f e_c + i ĉ
    let lfg = lkc[ci];
    let lig = (0..k).map(|j| lkc[j] * e.khat[j]).sum::<f64>();
    let lkhat: Vec<f64> = lkc.iter().map(|v| e.ig * v).collect();
    for j in 0..k {
        if e.mask[j] > 0.0 {
            lo[3 + j] = lkhat[j] / e.nu[j];
            lnu[j] -= lkhat[j] * e.o[3 + j] / (e.nu[j] * e.nu[j]);
        }
    }
    if cfg.cell == 2 && e.dn > 0.0 {
        let kd = (0..k).map(|j| lkhat[j] * e.delta[j]).sum::<f64>();
        lo[3 + k] = kd / e.dn;
        for j in 0..k {
            ldelta[j] += e.o[3 + k] * lkhat[j] / e.dn;
        }
        l_dn -= e.o[3 + k] * kd / (e.dn * e.dn);
    }
    lo[0] = lfg * e.fg * (1.0 - e.fg);
    lo[1] = lig * e.ig * (1.0 - e.ig);
    lo[2] = log_ * e.og * (1.0 - e.og);
    let tt = e.tau / TAU_BOUND;
    lo[l.tau()] = ltau * (1.0 - tt * tt);
    // network
    let mut la = vec![0.0; h];
    for o in 0..l.no {
        if lo[o] == 0.0 {
            continue;
        }
        dphi[l.b2 + o] += lo[o];
        for j in 0..h {
            dphi[l.w2 + o * h + j] += lo[o] * e.a[j];
            la[j] += lo[o] * phi[l.w2 + o * h + j];
        }
    }
    let mut lz = vec![0.0; l.nf];
    for r in 0..h {
        let lp = la[r] * (1.0 - e.a[r] * e.a[r]);
        if lp == 0.0 {
            continue;
        }
        dphi[l.b1 + r] += lp;
        for f in 0..l.nf {
            dphi[l.w1 + r * l.nf + f] += lp * e.z[f];
            lz[f] += lp * phi[l.w1 + r * l.nf + f];
        }
    }
    // features
    let mut f = 0;
    for i in 0..k {
        for j in i + 1..k {
            if e.mask[i] * e.mask[j] > 0.0 {
                let v = e.z[f];
                lg[i * k + j] += lz[f] / (e.nu[i] * e.nu[j]);
                lnu[i] -= lz[f] * v / e.nu[i];
                lnu[j] -= lz[f] * v / e.nu[j];
            }
            f += 1;
        }
    }
    let nug = e.nu[gi];
    // λ(ν_g/ν_0): ν_g is ‖g‖, an input; at the first step ν_0 = ν_g and the feature is identically 0
    if st.nu0 > 0.0 && nug > 0.0 {
        lnu[gi] += lz[f] * logf(nug / st.nu0).1 / nug;
    }
    f += 1;
    for i in 0..m {
        let (si, yi) = (l.s(i), l.y(i));
        if e.mask[si] > 0.0 && e.lref > 0.0 {
            let c = lz[f] * logf(e.nu[si] / e.lref).1;
            lnu[si] += c / e.nu[si];
            l_lref -= c / e.lref;
        }
        f += 1;
        if e.mask[yi] > 0.0 && nug > 0.0 {
            let c = lz[f] * logf(e.nu[yi] / nug).1;
            lnu[yi] += c / e.nu[yi];
            lnu[gi] -= c / nug;
        }
        f += 1;
    }
    let t = e.nu[ci].tanh();
    lnu[ci] += lz[f] * (1.0 - t * t);
    lnu[hi] += lz[f + 1];
    f += 2 + m + 1;
    if cfg.cell == 2 {
        let mut lw = vec![0.0; k];
        for j in 0..k {
            if e.mask[j] > 0.0 && e.dn > 0.0 {
                let v = e.z[f + j];
                lw[j] = lz[f + j] / (e.dn * e.nu[j]);
                l_dn -= lz[f + j] * v / e.dn;
                lnu[j] -= lz[f + j] * v / e.nu[j];
            }
        }
        for j in 0..k {
            for i in 0..k {
                lg[j * k + i] += lw[j] * e.delta[i];
                ldelta[i] += gm[j * k + i] * lw[j];
            }
        }
        f += k;
        if e.dn > 0.0 && e.lref > 0.0 {
            let c = lz[f] * logf(e.dn / e.lref).1;
            l_dn += c / e.dn;
            l_lref -= c / e.lref;
        }
    }
    // ℓ
    if e.hasp {
        lgamma += l_lref * nug;
        lnu[gi] += l_lref * e.gamma;
    } else if nug < 1.0 {
        lnu[gi] += l_lref;
    }
    if cfg.cell == 2 {
        // ‖d‖ = √(δᵀGδ)
        if e.dn > 0.0 {
            let ldq = l_dn / (2.0 * e.dn);
            for i in 0..k {
                ldelta[i] += 2.0 * ldq * e.gdelta[i];
                for j in 0..k {
                    lg[i * k + j] += ldq * e.delta[i] * e.delta[j];
                }
            }
        }
        // δ = σ r
        let lsig = (0..k).map(|j| ldelta[j] * e.r[j]).sum::<f64>();
        if !e.hasp && nug > 1.0 {
            lnu[gi] -= lsig / (nug * nug);
        }
        if !e.reset {
            let mut lr: Vec<f64> = ldelta.iter().map(|v| e.sigma * v).collect();
            let mut lalpha = vec![0.0; m];
            let mut lrho = vec![0.0; m];
            for i in 0..m {
                if !e.acc[i] {
                    continue;
                }
                let (si, yi) = (l.s(i), l.y(i));
                lalpha[i] += lr[si];
                let lb = -lr[si];
                let rb = &e.r_hist[i];
                lrho[i] += lb * gdot(gm, k, yi, rb);
                for c in 0..k {
                    lg[yi * k + c] += lb * e.rho[i] * rb[c];
                    lr[c] += lb * e.rho[i] * gm[yi * k + c];
                }
            }
            lgamma += (0..k).map(|j| lr[j] * e.qc[j]).sum::<f64>();
            let mut lq: Vec<f64> = lr.iter().map(|v| e.gamma * v).collect();
            for i in (0..m).rev() {
                if !e.acc[i] {
                    continue;
                }
                let (si, yi) = (l.s(i), l.y(i));
                lalpha[i] -= lq[yi];
                let qb = &e.q_hist[i];
                lrho[i] += lalpha[i] * gdot(gm, k, si, qb);
                for c in 0..k {
                    lg[si * k + c] += lalpha[i] * e.rho[i] * qb[c];
                    lq[c] += lalpha[i] * e.rho[i] * gm[si * k + c];
                }
            }
            for i in 0..m {
                if e.acc[i] {
                    lg[l.s(i) * k + l.y(i)] -= lrho[i] * e.rho[i] * e.rho[i];
                }
            }
        }
    }
    if let Some(hh) = e.gamma_from {
        let (si, yi) = (l.s(hh), l.y(hh));
        let yy = gm[yi * k + yi];
        lg[si * k + yi] += lgamma / yy;
        lg[yi * k + yi] -= lgamma * e.gamma / yy;
    }
    for j in 0..k {
        if e.nu[j] > 0.0 {
            lg[j * k + j] += lnu[j] / (2.0 * e.nu[j]);
        }
    }
    lg
}

/// The meta-loss ℓ applied to each f(θ_t).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum MetaLoss {
    /// Σ w_t f(θ_t) (seeds 002/003).
    Sum,
    /// Σ w_t ln max(f(θ_t), floor·f_start): every decade of progress counts the same (docs/hlstm.md §4).
    Log { floor: f64 },
}

impl MetaLoss {
    /// ℓ(f) and ℓ'(f) for a run that started at f_start.
    pub fn eval(&self, f: f64, f_start: f64) -> (f64, f64) {
        match *self {
            MetaLoss::Sum => (f, 1.0),
            MetaLoss::Log { floor } => {
                let lo = floor * f_start.abs();
                if f > lo {
                    (f.ln(), 1.0 / f)
                } else {
                    (lo.max(1e-300).ln(), 0.0)
                }
            }
        }
    }
}

/// How an HLSTM is meta-trained (stored in its checkpoints).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct HlstmTraining {
    pub loss: MetaLoss,
    /// Scale each meta-gradient down to this Euclidean norm when it is longer (None: no clipping).
    pub clip: Option<f64>,
    /// Follow the meta-gradient through the memory (s_i, c, h of later steps: the full truncated BPTT). false:
    /// stop it there — each step's u_t is differentiated for the (recorded) memory it saw, and reaches the
    /// meta-loss only through θ (docs/hlstm.md §4).
    #[serde(default = "yes")]
    pub memory_grad: bool,
}

fn yes() -> bool {
    true
}

impl Default for HlstmTraining {
    fn default() -> Self {
        Self {
            loss: MetaLoss::Log { floor: 1e-8 },
            clip: None,
            memory_grad: true,
        }
    }
}

/// What a re-run of an unroll replays from a recording instead of computing it (the surrogates).
#[derive(Clone, Copy)]
pub enum Replay<'a> {
    /// Nothing: the meta-training forward pass.
    Live,
    /// The gradients g_0..g_T (hence y): the frozen-gradient surrogate of the full truncated BPTT.
    Gradients(&'a HlstmUnroll),
    /// The gradients and the memory (s_i, y_i, c, h of every step's basis): the surrogate of the meta-gradient
    /// with `memory_grad = false`. Only θ and the steps u_t(φ) are live.
    Memory(&'a HlstmUnroll),
}

/// What an unroll starts from: the memory pairs (newest first), c, h, the scalar state and f at the start of the
/// run. All constants of the meta-gradient (truncation).
#[derive(Clone, Debug)]
pub struct Carry {
    pub s: Vec<Vec<f64>>,
    pub y: Vec<Vec<f64>>,
    pub c: Vec<f64>,
    pub h: Vec<f64>,
    pub state: CellState,
    pub f_start: f64,
}

impl Carry {
    /// The start of a run: empty memory, c = h = 0.
    pub fn fresh(cfg: &HlstmConfig, n: usize, f_start: f64) -> Self {
        Self {
            s: vec![vec![0.0; n]; cfg.m],
            y: vec![vec![0.0; n]; cfg.m],
            c: vec![0.0; n],
            h: vec![0.0; n],
            state: CellState::default(),
            f_start,
        }
    }
}

/// A recorded unroll of one problem.
#[derive(Clone, Debug)]
pub struct HlstmUnroll {
    pub carry: Carry,
    /// θ_t, g_t, f(θ_t) for t = 0..=T.
    pub x: Vec<Vec<f64>>,
    pub g: Vec<Vec<f64>>,
    pub f: Vec<f64>,
    /// u_t, c_{t+1}, h_{t+1} for t = 0..T (c, h: index t is the state entering step t, t = 0..=T).
    pub u: Vec<Vec<f64>>,
    /// y_t = g_{t+1} − g_t for t = 0..T.
    pub yv: Vec<Vec<f64>>,
    pub c: Vec<Vec<f64>>,
    pub h: Vec<Vec<f64>>,
    pub grams: Vec<Vec<f64>>,
    /// The scalar state entering step t.
    pub states: Vec<CellState>,
    pub evals: Vec<CellEval>,
    /// Σ_t w_t ℓ(f(θ_t)) of this problem.
    pub meta_loss: f64,
}

impl HlstmUnroll {
    /// The basis V of step t: [g, s_1..s_m, y_1..y_m, c, h].
    pub fn basis(&self, t: usize) -> Vec<&[f64]> {
        let m = self.carry.s.len();
        let mut v: Vec<&[f64]> = vec![&self.g[t]];
        for i in 0..m {
            v.push(if t > i {
                &self.u[t - 1 - i]
            } else {
                &self.carry.s[i - t]
            });
        }
        for i in 0..m {
            v.push(if t > i {
                // y_{t−1−i} = g_{t−i} − g_{t−1−i}: stored as the difference below
                &self.yv[t - 1 - i]
            } else {
                &self.carry.y[i - t]
            });
        }
        v.push(&self.c[t]);
        v.push(&self.h[t]);
        v
    }

    /// The carry of the next unroll (after this one's T steps).
    pub fn next_carry(&self) -> Carry {
        let t = self.u.len();
        let basis = self.basis(t);
        let m = self.carry.s.len();
        Carry {
            s: basis[1..1 + m].iter().map(|v| v.to_vec()).collect(),
            y: basis[1 + m..1 + 2 * m].iter().map(|v| v.to_vec()).collect(),
            c: self.c[t].clone(),
            h: self.h[t].clone(),
            state: self.evals.last().map_or(self.carry.state, |e| e.next),
            f_start: self.carry.f_start,
        }
    }
}

/// Forward unroll of T = `weights.len()` steps of problem `b` from θ0 and `carry`. With a [`Replay`], the
/// recorded gradients (and memory) are fed to the optimizer instead of those of the new iterates (f is still
/// evaluated there): the surrogates whose exact gradients the adjoint computes.
#[allow(clippy::too_many_arguments)]
pub fn unroll(
    cfg: &HlstmConfig,
    phi: &[f64],
    lg: &LossGrad,
    b: usize,
    x0: &[f64],
    carry: &Carry,
    weights: &[f64],
    loss: MetaLoss,
    eps_c: f64,
    replay: Replay,
) -> HlstmUnroll {
    let n = x0.len();
    let (f0, g0) = lg(b, x0);
    let (frozen, memory) = match replay {
        Replay::Live => (None, None),
        Replay::Gradients(r) => (Some(&r.g[..]), None),
        Replay::Memory(r) => (Some(&r.g[..]), Some(r)),
    };
    let g0 = frozen.map_or(g0, |gs| gs[0].clone());
    let mut u = HlstmUnroll {
        carry: carry.clone(),
        x: vec![x0.to_vec()],
        g: vec![g0],
        f: vec![f0],
        u: vec![],
        yv: vec![],
        c: vec![carry.c.clone()],
        h: vec![carry.h.clone()],
        grams: vec![],
        states: vec![],
        evals: vec![],
        meta_loss: 0.0,
    };
    let mut st = carry.state;
    for (t, &w) in weights.iter().enumerate() {
        let basis = match memory {
            Some(r) => r.basis(t),
            None => u.basis(t),
        };
        let st_t = memory.map_or(st, |r| r.states[t]);
        let gm = l2o_engine::oracle::gram(&basis);
        let ev = cell_forward(cfg, phi, &gm, &st_t, eps_c);
        let comb = |kap: &[f64]| {
            let mut out = vec![0.0; n];
            for (j, v) in basis.iter().enumerate() {
                if kap[j] != 0.0 {
                    out.iter_mut()
                        .zip(v.iter())
                        .for_each(|(o, x)| *o += kap[j] * x);
                }
            }
            out
        };
        let (ut, ct, ht) = (comb(&ev.ku), comb(&ev.kc), comb(&ev.kh));
        let x: Vec<f64> = u.x[t].iter().zip(&ut).map(|(a, b)| a + b).collect();
        let (f, gt) = lg(b, &x);
        let gn = frozen.map_or(gt, |gs| gs[t + 1].clone());
        let yt: Vec<f64> = gn.iter().zip(&u.g[t]).map(|(a, b)| a - b).collect();
        u.meta_loss += w * loss.eval(f, carry.f_start).0;
        u.states.push(st_t);
        st = ev.next;
        u.grams.push(gm);
        u.evals.push(ev);
        u.u.push(ut);
        u.yv.push(yt);
        u.c.push(ct);
        u.h.push(ht);
        u.x.push(x);
        u.g.push(gn);
        u.f.push(f);
    }
    u
}

/// The frozen-gradient surrogate L̃(φ) of a recorded unroll (with `memory_grad = false`: gradients and memory
/// frozen): at the recording's φ its gradient is exactly the truncated meta-gradient of [`adjoint`].
#[allow(clippy::too_many_arguments)]
pub fn surrogate(
    cfg: &HlstmConfig,
    phi: &[f64],
    lg: &LossGrad,
    b: usize,
    rec: &HlstmUnroll,
    weights: &[f64],
    loss: MetaLoss,
    eps_c: f64,
    memory_grad: bool,
) -> f64 {
    let replay = if memory_grad {
        Replay::Gradients(rec)
    } else {
        Replay::Memory(rec)
    };
    unroll(
        cfg, phi, lg, b, &rec.x[0], &rec.carry, weights, loss, eps_c, replay,
    )
    .meta_loss
}

fn dotp(a: &[f64], b: &[f64]) -> f64 {
    l2o_engine::oracle::dot(a, b)
}

fn axpy(y: &mut [f64], a: f64, x: &[f64]) {
    if a != 0.0 {
        y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x);
    }
}

/// The hand-derived adjoint ∂L/∂φ of a recorded unroll (module docs), scaled by `scale` (1/B for a batch
/// mean), added into `dphi`. With `memory_grad = false` nothing flows back into the memory (λs, λc, λh = 0).
#[allow(clippy::too_many_arguments)]
pub fn adjoint(
    cfg: &HlstmConfig,
    phi: &[f64],
    rec: &HlstmUnroll,
    weights: &[f64],
    loss: MetaLoss,
    scale: f64,
    dphi: &mut [f64],
    memory_grad: bool,
) {
    let l = cfg.layout();
    let (m, k) = (l.m, l.k);
    let tt = rec.u.len();
    let n = rec.x[0].len();
    let mut lx = vec![0.0; n];
    let mut lu = vec![vec![0.0; n]; tt];
    let mut lc = vec![0.0; n];
    let mut lh = vec![0.0; n];
    for t in (0..tt).rev() {
        let lw = loss.eval(rec.f[t + 1], rec.carry.f_start).1;
        axpy(&mut lx, scale * weights[t] * lw, &rec.g[t + 1]);
        let lut: Vec<f64> = lx.iter().zip(&lu[t]).map(|(a, b)| a + b).collect();
        let basis = rec.basis(t);
        let pk = |lam: &[f64]| basis.iter().map(|v| dotp(lam, v)).collect::<Vec<f64>>();
        let (lkc, lkh, lku) = (pk(&lc), pk(&lh), pk(&lut));
        let ev = &rec.evals[t];
        let lgm = cell_adjoint(
            cfg,
            phi,
            &rec.grams[t],
            &rec.states[t],
            ev,
            &lkc,
            &lkh,
            &lku,
            dphi,
        );
        if !memory_grad {
            continue;
        }
        let lv = |i: usize| {
            let mut out = vec![0.0; n];
            axpy(&mut out, ev.kc[i], &lc);
            axpy(&mut out, ev.kh[i], &lh);
            axpy(&mut out, ev.ku[i], &lut);
            for j in 0..k {
                axpy(&mut out, lgm[i * k + j] + lgm[j * k + i], basis[j]);
            }
            out
        };
        for i in 0..m {
            if t > i {
                let v = lv(l.s(i));
                axpy(&mut lu[t - 1 - i], 1.0, &v);
            }
        }
        let (nc, nh) = (lv(l.c()), lv(l.h()));
        lc = nc;
        lh = nh;
    }
}
