//! Vector-free L-BFGS (Chen, Wang & Zhou, "Large-scale L-BFGS using MapReduce", NeurIPS 2014): the two-loop
//! recursion of [`crate::lbfgs`] run on the Gram matrix of the basis b = [s_0…s_{m−1}, y_0…y_{m−1}, g] kept in
//! a [`BasisRing`] (K = 2m + 1 slots: the s ring in slots 0…m−1, the y ring in m…2m−1, g in slot 2m).
//!
//! The direction d = −H·g is a combination of the basis, d = Σ_j δ_j b_j, and the recursion runs on δ
//! (`shaders/lbfgs_gram.wgsl`, one thread per problem): ⟨s_i, q⟩ = Σ_j δ_j G[s_i][j], and "q ← q − α_i y_i" is
//! "δ[y_i] −= α_i". So the direction costs **two dispatches** whatever m is — the scalar recursion and one
//! combination pass — instead of 2 + 6m, and gᵀd = Σ_j δ_j G[g][j] comes free; keeping G current costs one Gram
//! pass over the three new vectors (s, y, g) per iteration ([`BasisRing::rows`]).
//!
//! ρ_i = 1/s_iᵀy_i for a pair with s_iᵀy_i > ε_c·‖s_i‖·‖y_i‖ and a finite ρ_i, else 0 (the pair drops out of both
//! loops); γ = s_jᵀy_j / y_jᵀy_j of the newest accepted pair in the ring (1 if none). [`reference`] is the f64
//! version, term for term.

use anyhow::{Result, bail};
use l2o_engine::kernels::basis::{BasisRing, Target};
use l2o_engine::shaders::LBFGS_GRAM;
use l2o_engine::{Coefs, Context, DBuf, Dispatch, View};

/// The ring's slot of s_i, y_i and g for history length m.
pub fn s_slot(i: usize) -> usize {
    i
}
pub fn y_slot(m: usize, i: usize) -> usize {
    m + i
}
pub fn g_slot(m: usize) -> usize {
    2 * m
}

/// The scalar program of the direction: δ (K = 2m + 1 coefficients) and gᵀd into `out` (K + 1 reals per problem
/// at `out.offset + b·out.stride`), gᵀd also at `out.buf[b·out.stride + gd_col]` when given (`out` being the
/// optimizer's scalar rows). `head`: ring slot of the newest pair; `count`: pairs in use. Problems whose
/// `status` is not 0 are skipped.
#[allow(clippy::too_many_arguments)]
pub fn coefficients(
    ctx: &Context,
    ring: &BasisRing,
    m: usize,
    head: usize,
    count: usize,
    curvature_eps: &DBuf,
    status: &DBuf,
    out: View,
    gd_col: Option<usize>,
) -> Result<Dispatch> {
    if ring.k != 2 * m + 1 {
        bail!(
            "vector-free L-BFGS: a ring of K = {} vectors, but m = {m} needs 2m + 1 = {}",
            ring.k,
            2 * m + 1
        );
    }
    if count > m || head >= m {
        bail!("vector-free L-BFGS: head {head} / count {count} outside the ring of {m} pairs");
    }
    let b = ring.batch;
    if out.offset + (b - 1) * out.stride + ring.k + 1 > out.buf.len
        || (b > 1 && out.stride < ring.k + 1)
    {
        bail!(
            "vector-free L-BFGS: {b} rows of K + 1 = {} coefficients at offset {} (stride {}) do not fit a buffer of {}",
            ring.k + 1,
            out.offset,
            out.stride,
            out.buf.len
        );
    }
    if status.len < b {
        bail!(
            "vector-free L-BFGS: status holds {} of {b} problems",
            status.len
        );
    }
    if let Some(c) = gd_col
        && c >= out.stride
    {
        bail!(
            "vector-free L-BFGS: gᵀd column {c} outside rows of {}",
            out.stride
        );
    }
    let u = |x: usize| x as u32;
    let params = ctx.params(&[
        u(b),
        u(head),
        u(count),
        u(out.offset),
        u(out.stride),
        gd_col.map_or(u32::MAX, u),
        0,
        0,
    ]);
    ctx.dispatch_with(
        &LBFGS_GRAM,
        "direction",
        &format!("const M: u32 = {m}u;"),
        &[
            &params,
            &ring.gram.buf,
            &out.buf.buf,
            &curvature_eps.buf,
            &status.buf,
        ],
        [b.div_ceil(64) as u32, 1, 1],
    )
}

/// Record d = −H·g for every problem: [`coefficients`] into `coef` (row b at `coef.offset + b·coef.stride`: δ
/// then gᵀd; gᵀd also at column `gd_col` of the row when given), then one combination pass into `d`. Two
/// dispatches.
#[allow(clippy::too_many_arguments)]
pub fn direction(
    ctx: &Context,
    ring: &BasisRing,
    m: usize,
    head: usize,
    count: usize,
    curvature_eps: &DBuf,
    status: &DBuf,
    coef: View,
    gd_col: Option<usize>,
    d: View,
) -> Result<Vec<Dispatch>> {
    Ok(vec![
        coefficients(
            ctx,
            ring,
            m,
            head,
            count,
            curvature_eps,
            status,
            coef,
            gd_col,
        )?,
        ring.combine(
            ctx,
            Coefs {
                buf: coef.buf,
                off: coef.offset,
                stride: coef.stride,
            },
            Target::Vector(d),
            false,
            Some(status),
        )?,
    ])
}

/// Copy the pair test's inner products of the pair in ring slot `slot` from G into each problem's scalar row
/// (`scal[b·stride + col]` for col = `sy`, `yy`, `ss`, and ‖g‖² at column [`l2o_engine::cols::G2`]). One dispatch;
/// `curvature_eps` is the buffer [`coefficients`] takes (bound, not read).
#[allow(clippy::too_many_arguments)]
pub fn pair_columns(
    ctx: &Context,
    ring: &BasisRing,
    m: usize,
    slot: usize,
    scal: &DBuf,
    stride: usize,
    (sy, yy, ss): (usize, usize, usize),
    curvature_eps: &DBuf,
    status: &DBuf,
) -> Result<Dispatch> {
    if ring.k != 2 * m + 1 || slot >= m {
        bail!(
            "vector-free L-BFGS: slot {slot} of m = {m} on a ring of K = {}",
            ring.k
        );
    }
    if sy.max(yy).max(ss) >= stride || ring.batch * stride > scal.len {
        bail!("vector-free L-BFGS: pair columns outside the scalar rows (stride {stride})");
    }
    let u = |x: usize| x as u32;
    let b = ring.batch;
    let params = ctx.params(&[u(b), u(slot), 0, 0, u(stride), u(sy), u(yy), u(ss)]);
    ctx.dispatch_with(
        &LBFGS_GRAM,
        "pair_cols",
        &format!("const M: u32 = {m}u;"),
        // (binding 3, the constants, is not read by pair_cols; any real buffer other than `scal` serves)
        &[
            &params,
            &ring.gram.buf,
            &scal.buf,
            &curvature_eps.buf,
            &status.buf,
        ],
        [b.div_ceil(64) as u32, 1, 1],
    )
}

/// The f64 reference of [`coefficients`], on one problem's row-major Gram matrix (K × K, K = 2m + 1): (δ, gᵀd).
pub mod reference {
    pub fn coefficients(
        gram: &[f64],
        m: usize,
        head: usize,
        count: usize,
        eps: f64,
    ) -> (Vec<f64>, f64) {
        let k = 2 * m + 1;
        let g = |j: usize, l: usize| gram[j * k + l];
        let order: Vec<usize> = (0..count).map(|t| (head + m - t) % m).collect();
        let mut rho = vec![0.0; m];
        let mut gamma = None;
        for &i in &order {
            let (sy, ss, yy) = (g(i, m + i), g(i, i), g(m + i, m + i));
            let mut r = 0.0;
            if sy > eps * (ss * yy).sqrt() {
                r = 1.0 / sy;
                if !r.is_finite() {
                    r = 0.0;
                }
            }
            rho[i] = r;
            if r != 0.0 && gamma.is_none() {
                let gm = sy / yy;
                if gm.is_finite() && gm > 0.0 {
                    gamma = Some(gm);
                }
            }
        }
        let mut delta = vec![0.0; k];
        delta[2 * m] = -1.0;
        let mut alpha = vec![0.0; m];
        for &i in &order {
            if rho[i] != 0.0 {
                let sq: f64 = (0..k).map(|j| delta[j] * g(i, j)).sum();
                alpha[i] = rho[i] * sq;
            }
            delta[m + i] -= alpha[i];
        }
        let gamma = gamma.unwrap_or(1.0);
        delta.iter_mut().for_each(|x| *x *= gamma);
        for &i in order.iter().rev() {
            if rho[i] != 0.0 {
                let yr: f64 = (0..k).map(|j| delta[j] * g(m + i, j)).sum();
                delta[i] += alpha[i] - rho[i] * yr;
            }
        }
        let gd = (0..k).map(|j| delta[j] * g(2 * m, j)).sum();
        (delta, gd)
    }
}
