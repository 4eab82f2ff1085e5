//! L-BFGS-π meta-training fused per problem ([`Schedule::Fused`], `shaders/policy_fused.wgsl`): one thread per
//! problem runs each forward step (the pair and its test, the two-loop direction, the Gram features, the policy,
//! the record, the step) and each step of the reverse sweep, walking its n coordinates itself. An outer step of
//! K inner steps is K + 1 task evaluations, K + 1 `pf_step` and K `pf_reverse` dispatches: 3K + 2 (plus the
//! task's own) instead of the multi-dispatch path's ~77 per inner step. The equations and every
//! scalar decision are those of [`crate::policy`] (the f64 reference, whose module docs derive the adjoint) and
//! of the multi-dispatch path in [`crate::policy::device`]; only the order of the inner products' sums differs.
//!
//! All vectors of a problem live in one buffer (g_0…g_K, d, s, y, λs for every step, and the work vectors of the
//! reverse sweep): (5K + m + 7)·n numbers per problem.

use std::fmt::Write as _;

use anyhow::Result;
use l2o_engine::lbfgs_cols as c;
use l2o_engine::shaders::{Layout, ShaderFamily};
use l2o_engine::{Context, DBuf, Dispatch, ScalarOut};
use l2o_tasks::Task;

/// How a [`PolicyTrainer`](crate::policy::device::PolicyTrainer) runs an outer step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Schedule {
    /// [`Schedule::Fused`] for n ≤ [`MAX_N`] (and where its buffer fits the device), else
    /// [`Schedule::Vectors`].
    #[default]
    Auto,
    /// One thread per problem does a step's vector work itself (this module).
    Fused,
    /// The engine's `reduce`/`lincomb` kernels for every inner product and combination (many threads per
    /// problem: the shape for large n).
    Vectors,
}

/// Above this n, [`Schedule::Auto`] takes the vector path: one thread walks all n coordinates ~(4m + 20) times
/// per inner step.
pub const MAX_N: usize = 4096;

/// Loop iterations of the costlier of `pf_step` and `pf_reverse` for one problem (every pass over n counted, the
/// blocked sums at n·(1 + 1/32)), with a margin for the scalar loops (policy network and its adjoint).
pub fn loop_iterations(n: usize, m: usize) -> usize {
    let forward = (22.0 + 2.1 * m as f64) * n as f64;
    let reverse = (6.0 + 8.2 * m as f64) * n as f64;
    forward.max(reverse).ceil() as usize + 2_000
}

/// Whether the fused schedule can run n coordinates with history m on this context: within
/// [`Context::loop_budget`] (the software adapter's 65,535 loop iterations per invocation; a reverse sweep
/// written as one loop over k went silently wrong from K·n ≈ 3,000 on), always where there is none.
pub fn fits_loop_budget(ctx: &Context, n: usize, m: usize) -> bool {
    ctx.within_loop_budget(loop_iterations(n, m))
}

const R: Layout = Layout::Read;
const W: Layout = Layout::ReadWrite;

/// `lbfgs.wgsl` (bindings 0–4: parameters, constants with φ, scalars, status, pending; the pair test and the
/// line-search start) + the policy network and its adjoint + `policy_fused.wgsl` (x, ∇f, the vectors, ∂φ).
pub static POLICY_FUSED: ShaderFamily = ShaderFamily {
    name: "policy_fused",
    body: concat!(
        include_str!("../../../../shaders/lbfgs.wgsl"),
        include_str!("../../../../shaders/policy_net.wgsl"),
        include_str!("../../../../shaders/policy_adjoint.wgsl"),
        include_str!("../../../../shaders/policy_fused.wgsl")
    ),
    layout: &[R, R, W, W, W, W, R, W, W],
    entries: &["pf_step", "pf_reverse"],
    default_defines: "",
};

/// Offsets (in vectors of n) of one problem's vectors and their count.
#[derive(Clone, Copy, Debug)]
pub(crate) struct VecLayout {
    pub og: usize,
    pub od: usize,
    pub os: usize,
    pub oy: usize,
    pub ol: usize,
    pub oq: usize,
    pub or: usize,
    pub olx: usize,
    pub ols: usize,
    pub old: usize,
    pub olq: usize,
    pub nv: usize,
}

impl VecLayout {
    pub fn new(k: usize, m: usize) -> Self {
        let og = 0;
        let od = og + k + 1;
        let os = od + k;
        let oy = os + k;
        let ol = oy + k;
        let oq = ol + k;
        let or = oq + m + 1;
        Self {
            og,
            od,
            os,
            oy,
            ol,
            oq,
            or,
            olx: or + 1,
            ols: or + 2,
            old: or + 3,
            olq: or + 4,
            nv: or + 5,
        }
    }
}

/// The WGSL constants of one trainer: history m, K steps, the vector layout, the scalar columns (GRAM0, GFROM,
/// REC0, REC), the weights w_k/B and the workgroup size.
pub fn defines(
    m: usize,
    weights: &[f64],
    batch: usize,
    gfrom: usize,
    rec0: usize,
    rec: usize,
    wg: usize,
) -> String {
    let k = weights.len();
    let v = VecLayout::new(k, m);
    let mut s = String::new();
    for (name, val) in [
        ("PM", m),
        ("PK", k),
        ("NV", v.nv),
        ("OG", v.og),
        ("OD", v.od),
        ("OS", v.os),
        ("OY", v.oy),
        ("OL", v.ol),
        ("OQ", v.oq),
        ("OR", v.or),
        ("OLX", v.olx),
        ("OLS", v.ols),
        ("OLD", v.old),
        ("OLQ", v.olq),
        ("GRAM0", c::gram0(k)),
        ("GFROM", gfrom),
        ("REC0", rec0),
        ("REC", rec),
        ("FWG", wg),
    ] {
        let _ = writeln!(s, "const {name}: u32 = {val}u;");
    }
    let w: Vec<String> = weights
        .iter()
        .map(|w| format!("Real({:e})", w / batch as f64))
        .collect();
    let _ = writeln!(s, "const WTS = array<Real, {k}>({});", w.join(", "));
    s
}

/// The buffers the fused schedule binds besides the trainer's scalars.
pub(crate) struct FusedBindings<'a> {
    pub cst: &'a DBuf,
    pub scal: &'a DBuf,
    pub status: &'a DBuf,
    pub pending: &'a DBuf,
    pub x: &'a DBuf,
    pub gnew: &'a DBuf,
    pub vecs: &'a DBuf,
    pub dphi: &'a DBuf,
    pub losses: &'a DBuf,
}

/// The recorded outer step: for k = 0…K the task's evaluation at x_k and `pf_step(k)`, then `pf_reverse`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record(
    ctx: &Context,
    task: &dyn Task,
    bind: &FusedBindings<'_>,
    n: usize,
    batch: usize,
    stride: usize,
    defs: &str,
    wg: usize,
    steps: usize,
) -> Result<Vec<Dispatch>> {
    let kernel = |entry: &'static str, k: usize| -> Result<Dispatch> {
        let p = ctx.params(&[batch as u32, stride as u32, 0, 0, k as u32, 0, 0, n as u32]);
        ctx.dispatch_with(
            &POLICY_FUSED,
            entry,
            defs,
            &[
                &p,
                &bind.cst.buf,
                &bind.scal.buf,
                &bind.status.buf,
                &bind.pending.buf,
                &bind.x.buf,
                &bind.gnew.buf,
                &bind.vecs.buf,
                &bind.dphi.buf,
            ],
            [batch.div_ceil(wg) as u32, 1, 1],
        )
    };
    let mut ds = vec![];
    for k in 0..=steps {
        ds.extend(task.loss_and_grad(
            ctx,
            bind.x.view(n),
            bind.gnew.view(n),
            ScalarOut {
                buf: bind.losses,
                stride: steps + 1,
                col: k,
            },
        )?);
        ds.push(kernel("pf_step", k)?);
    }
    for k in (0..steps).rev() {
        ds.push(kernel("pf_reverse", k)?);
    }
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused family with its generated constants validates with naga for both precisions.
    #[test]
    fn fused_policy_kernels_validate_with_naga() {
        for (m, k) in [(1, 1), (5, 3), (5, 50), (10, 8)] {
            let w = vec![1.0; k];
            let d = defines(m, &w, 4, c::stride(k), c::stride(k) + 1, 24, 8);
            l2o_engine::shaders::validate_with(&POLICY_FUSED, &d)
                .unwrap_or_else(|e| panic!("m = {m}, K = {k}: {e:#}"));
        }
    }
}
