//! L-BFGS for B problems at once (Liu & Nocedal 1989; seed 003 Algorithm 1), with the step-size rule as a
//! separate piece ([`LineSearch`]): constant t = 1, Armijo backtracking, or strong Wolfe.
//!
//! Direction, by the two-loop recursion over the ring of the last m pairs s_i = x_{i+1} − x_i,
//! y_i = g_{i+1} − g_i, ρ_i = 1/(s_iᵀy_i), computed on the device as a sequence of `reduce`/`lincomb`
//! dispatches with every scalar kept on the device:
//! ```text
//!   q ← −g
//!   for i = newest … oldest:  α_i ← ρ_i s_iᵀq ;  q ← q − α_i y_i
//!   r ← γ q,   γ = s_jᵀy_j / y_jᵀy_j of the newest accepted pair j (γ = 1 before any)
//!   for i = oldest … newest:  β_i ← ρ_i y_iᵀr ;  r ← r + (α_i − β_i) s_i
//!   d ← r    (= −H g; since the recursion is linear in g, starting from −g gives d directly)
//! ```
//! Skipped pairs: a new pair is accepted iff s_iᵀy_i > ε_c·‖s_i‖·‖y_i‖ (ε_c = 1e-5 in f32, 1e-10 in f64:
//! above the rounding noise of the inner product) and ρ_i = 1/s_iᵀy_i and γ are finite (near convergence s_iᵀy_i
//! can be a denormal whose reciprocal overflows); a rejected pair keeps its ring slot with ρ_i = 0, which
//! removes it from both loops (so the memory holds the accepted pairs among the last m iterations). A problem
//! whose gradient is exactly zero is a stationary point: frozen as converged whatever ε_g is.
//! If gᵀd ≥ 0 the direction is reset to −g. The first trial step is 1, or min(1, 1/‖g‖) while no pair has
//! been accepted. The line-search state machines are in `shaders/lbfgs.wgsl`; [`reference`](mod@reference) is the f64 CPU
//! implementation of exactly the same algorithm.
//!
//! Host round trips: none for the constant step; for a line search, one 4-byte read of the number of problems
//! still searching after each round of trial evaluations (to stop early instead of running max_ls rounds).

use std::collections::HashMap;

use anyhow::Result;
use l2o_engine::lbfgs_cols as c;
use l2o_engine::shaders::LBFGS;
use l2o_engine::{
    Context, DBuf, Dispatch, Precision, ScalarOut, Scalars, Term, View, dot, lincomb,
};
use l2o_tasks::Task;

use crate::driver::{Optimizer, State};
use crate::step_policy::PolicyConfig;

/// Step-size rule of L-BFGS.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LineSearch {
    /// t = 1 every step (seed 003's "baseline L-BFGS").
    Constant,
    /// Backtracking until f(x + t d) ≤ f(x) + c1·t·gᵀd, t ← c2·t (seed 003: c1 = 0.25, c2 = 0.5).
    Armijo { c1: f64, c2: f64 },
    /// Strong Wolfe conditions (Nocedal & Wright 2006, Algorithms 3.5 and 3.6 with safeguarded cubic
    /// interpolation), usually c1 = 1e-4, c2 = 0.9.
    Wolfe { c1: f64, c2: f64 },
}

impl LineSearch {
    pub fn armijo() -> Self {
        LineSearch::Armijo { c1: 0.25, c2: 0.5 }
    }
    pub fn wolfe() -> Self {
        LineSearch::Wolfe { c1: 1e-4, c2: 0.9 }
    }
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "constant" | "none" => LineSearch::Constant,
            "armijo" | "backtracking" => Self::armijo(),
            "wolfe" | "strong-wolfe" => Self::wolfe(),
            _ => anyhow::bail!("unknown line search {s:?}: use constant, armijo or wolfe"),
        })
    }
    fn method(self) -> u32 {
        match self {
            LineSearch::Constant => 0,
            LineSearch::Armijo { .. } => 1,
            LineSearch::Wolfe { .. } => 2,
        }
    }
    fn constants(self) -> (f64, f64) {
        match self {
            LineSearch::Constant => (0.0, 0.0),
            LineSearch::Armijo { c1, c2 } | LineSearch::Wolfe { c1, c2 } => (c1, c2),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            LineSearch::Constant => "constant",
            LineSearch::Armijo { .. } => "armijo",
            LineSearch::Wolfe { .. } => "wolfe",
        }
    }
}

/// How the direction d = −H·g (and the rest of an iteration) is computed on the device. Every choice runs the same
/// algorithm; they differ in dispatches and rounding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Direction {
    /// [`Direction::Fused`] for n ≤ [`crate::lbfgs_fused::AUTO_MAX_N`] (where the adapter can run it), else
    /// [`Direction::Gram`].
    #[default]
    Auto,
    /// The whole line-search round in one dispatch, one thread per problem, the direction from Gram entries
    /// ([`crate::lbfgs_fused`]): an iteration is the task's evaluation plus one dispatch per round.
    Fused,
    /// The two-loop recursion on the vectors: 2 + 6·count dispatches of `reduce`/`lincomb` (module docs).
    TwoLoop,
    /// The same recursion on the Gram entries of the basis [s…, y…, g] kept in a
    /// [`BasisRing`](l2o_engine::BasisRing) ([`crate::vector_free`]): 2 dispatches for the direction, whatever
    /// m, plus one Gram pass over s, y and g when a pair is inserted.
    Gram,
}

impl Direction {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "auto" => Direction::Auto,
            "fused" => Direction::Fused,
            "two-loop" | "vectors" => Direction::TwoLoop,
            "gram" | "vector-free" => Direction::Gram,
            _ => anyhow::bail!("unknown L-BFGS direction {s:?}: use auto, fused, two-loop or gram"),
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Direction::Auto => "auto",
            Direction::Fused => "fused",
            Direction::TwoLoop => "two-loop",
            Direction::Gram => "gram",
        }
    }
}

/// L-BFGS settings.
#[derive(Clone, Copy, Debug)]
pub struct LbfgsConfig {
    /// History length m (ring of the last m pairs), default 5.
    pub m: usize,
    pub line_search: LineSearch,
    /// How an iteration is scheduled on the device ([`Direction`]; default: chosen by n).
    pub direction: Direction,
    /// Trial evaluations per line search before it gives up (status 3: line search failed).
    pub max_ls: usize,
    /// Largest trial step of the Wolfe bracketing phase.
    pub t_max: f64,
    /// Relative curvature threshold ε_c; None: 1e-5 (f32) or 1e-10 (f64).
    pub curvature_eps: Option<f64>,
}

impl Default for LbfgsConfig {
    fn default() -> Self {
        Self {
            m: 5,
            line_search: LineSearch::wolfe(),
            direction: Direction::Auto,
            max_ls: 25,
            t_max: 1e10,
            curvature_eps: None,
        }
    }
}

impl LbfgsConfig {
    pub fn curvature_eps(&self, p: Precision) -> f64 {
        self.curvature_eps.unwrap_or(match p {
            Precision::F32 => 1e-5,
            Precision::F64 => 1e-10,
        })
    }
}

struct Bufs {
    d: DBuf,
    theta_t: DBuf,
    grad_t: DBuf,
    s: DBuf,
    y: DBuf,
    cst: DBuf,
    pending: DBuf,
    /// [B][4][n]: d, g, s_{k−1}, y_{k−1} side by side for the policy's Gram dispatch (L-BFGS-π only).
    v4: Option<DBuf>,
    /// [`Direction::Gram`]: the basis [s_0…s_{m−1}, y_0…y_{m−1}, g] and its Gram matrix (then `s` and `y` are
    /// unused), and ε_c alone in a buffer for its kernels.
    ring: Option<(l2o_engine::BasisRing, DBuf)>,
    /// [`Direction::Fused`]: the basis ring [B][K][n], its Gram matrices [B][K][K] and the per-problem "accepted
    /// in this iteration" flags.
    fused: Option<(DBuf, DBuf, DBuf)>,
}

impl Bufs {
    fn s_view(&self, i: usize, m: usize, n: usize) -> View<'_> {
        match &self.ring {
            Some((r, _)) => r.slot(crate::vector_free::s_slot(i)),
            None => self.s.slot(i, m, n),
        }
    }
    fn y_view(&self, i: usize, m: usize, n: usize) -> View<'_> {
        match &self.ring {
            Some((r, _)) => r.slot(crate::vector_free::y_slot(m, i)),
            None => self.y.slot(i, m, n),
        }
    }
}

pub struct Lbfgs {
    pub cfg: LbfgsConfig,
    bufs: Option<Bufs>,
    direction: HashMap<(usize, usize), Vec<Dispatch>>,
    begin: Vec<Dispatch>,
    round: Vec<Dispatch>,
    finish: Vec<Vec<Dispatch>>,
    /// Pairs inserted so far (all problems insert in lockstep; skipped pairs have ρ = 0).
    inserted: usize,
    /// L-BFGS-π: the step-size policy and its parameters φ replace the line search.
    policy: Option<(PolicyConfig, Vec<f64>)>,
    /// Per ring slot of the newest pair: gather [d, g, s, y], their Gram matrix, the policy kernel.
    policy_steps: Vec<Vec<Dispatch>>,
    /// [`Direction::Gram`], before the first step: g into the ring and its Gram row.
    gram_start: Vec<Dispatch>,
    /// The schedule chosen at `init` (never [`Direction::Auto`]).
    mode: Direction,
    /// [`Direction::Fused`]: the task's evaluation at θ_t, the start kernel, and a round (that evaluation and
    /// the round kernel) per (slot of the pair it inserts, pairs in use after it).
    task_eval: Vec<Dispatch>,
    fused_start: Vec<Dispatch>,
    fused_rounds: HashMap<(usize, usize), Vec<Dispatch>>,
}

impl Lbfgs {
    pub fn new(cfg: LbfgsConfig) -> Self {
        Self {
            cfg,
            bufs: None,
            direction: HashMap::new(),
            begin: vec![],
            round: vec![],
            finish: vec![],
            inserted: 0,
            policy: None,
            policy_steps: vec![],
            gram_start: vec![],
            mode: Direction::TwoLoop,
            task_eval: vec![],
            fused_start: vec![],
            fused_rounds: HashMap::new(),
        }
    }

    /// The schedule for n coordinates: L-BFGS-π keeps the two-loop on vectors; [`Direction::Auto`] is fused up
    /// to [`crate::lbfgs_fused::AUTO_MAX_N`], the Gram direction above.
    pub fn schedule(&self, n: usize) -> Direction {
        match (self.policy.is_some(), self.cfg.direction) {
            (true, _) => Direction::TwoLoop,
            (false, Direction::Auto) if n <= crate::lbfgs_fused::AUTO_MAX_N => Direction::Fused,
            (false, Direction::Auto) => Direction::Gram,
            (false, d) => d,
        }
    }

    /// L-BFGS-π (seed 003): the two-loop direction with the step t_k = π(d_k, g_k, s_{k−1}, y_{k−1}; φ) of the
    /// learned policy instead of a line search (one function evaluation per iteration, no host round trip).
    pub fn with_policy(pc: PolicyConfig, phi: Vec<f64>) -> Result<Self> {
        pc.validate()?;
        anyhow::ensure!(
            phi.len() == pc.layout().len,
            "policy parameters: {} values for n_h = {} (expected {})",
            phi.len(),
            pc.nh,
            pc.layout().len
        );
        anyhow::ensure!(
            phi.iter().all(|v| v.is_finite()),
            "policy parameters contain NaN or Inf"
        );
        let mut l = Self::new(LbfgsConfig {
            m: pc.m,
            line_search: LineSearch::Constant,
            curvature_eps: pc.curvature_eps,
            ..LbfgsConfig::default()
        });
        l.policy = Some((pc, phi));
        Ok(l)
    }

    /// Whether the direction runs on Gram entries by separate dispatches (the schedule `init` chose).
    fn gram(&self) -> bool {
        self.mode == Direction::Gram
    }

    /// The `Params` of shaders/lbfgs.wgsl: batch, stride, line search, max_ls, the ring slot, m, q0 (the policy's
    /// Gram column, or the fused round's pair count) and n.
    fn params(
        &self,
        ctx: &Context,
        st: &State,
        slot: usize,
        q0: usize,
    ) -> l2o_engine::wgpu::Buffer {
        ctx.params(&[
            st.batch as u32,
            st.stride as u32,
            self.cfg.line_search.method(),
            self.cfg.max_ls as u32,
            slot as u32,
            self.cfg.m as u32,
            q0 as u32,
            st.n as u32,
        ])
    }

    /// A dispatch of the fused family; with `free` = (ε_g, trace), `fused_free` of the free-running family.
    fn fused_dispatch(
        &self,
        ctx: &Context,
        st: &State,
        entry: &'static str,
        slot: usize,
        count: usize,
        free: Option<(&DBuf, &DBuf)>,
    ) -> Result<Dispatch> {
        let b = self.bufs.as_ref().expect("init");
        let (vecs, gram, parked) = b.fused.as_ref().expect("fused");
        let p = self.params(ctx, st, slot, count);
        let wg = if ctx.is_software() { 8 } else { 64 };
        let mut binds = vec![
            &p,
            &b.cst.buf,
            &st.scal.buf,
            &st.status.buf,
            &b.pending.buf,
            &vecs.buf,
            &gram.buf,
            &st.theta.buf,
            &st.grad.buf,
            &b.theta_t.buf,
            &b.grad_t.buf,
            &b.d.buf,
            &parked.buf,
        ];
        let family = match free {
            Some((eps, trace)) => {
                binds.extend([&eps.buf, &trace.buf]);
                &crate::lbfgs_fused::LBFGS_FUSED_FREE
            }
            None => &crate::lbfgs_fused::LBFGS_FUSED,
        };
        ctx.dispatch_with(
            family,
            entry,
            &crate::lbfgs_fused::defines(self.cfg.m, wg),
            &binds,
            [st.batch.div_ceil(wg) as u32, 1, 1],
        )
    }

    fn lbfgs_dispatch(
        &self,
        ctx: &Context,
        st: &State,
        entry: &'static str,
        slot: usize,
    ) -> Result<Dispatch> {
        let b = self.bufs.as_ref().expect("init");
        let p = self.params(ctx, st, slot, c::gram0(self.cfg.m));
        ctx.dispatch(
            &LBFGS,
            entry,
            &[&p, &b.cst.buf, &st.scal.buf, &st.status.buf, &b.pending.buf],
            [st.batch.div_ceil(64) as u32, 1, 1],
        )
    }
}

/// Record the two-loop recursion d ← −H·g for B problems (see the module docs): `s` and `y` are rings laid out
/// \[B\]\[m\]\[n\], the newest pair in slot `head`, `count` pairs in use; ρ_i, α_i, β_i and γ live in the scalar
/// columns of [`lbfgs_cols`](l2o_engine::lbfgs_cols) of `sc.scal` (stride `sc.stride`). Problems frozen by
/// `sc.status` are skipped. 2 + 6·count dispatches for n ≤ 4096 (each inner product adds a second pass above).
#[allow(clippy::too_many_arguments)]
pub fn two_loop(
    ctx: &Context,
    n: usize,
    batch: usize,
    m: usize,
    grad: View,
    d: View,
    s: &DBuf,
    y: &DBuf,
    sc: Scalars,
    head: usize,
    count: usize,
) -> Result<Vec<Dispatch>> {
    anyhow::ensure!(
        count <= m && head < m,
        "two_loop: head {head} / count {count} outside the ring of {m}"
    );
    anyhow::ensure!(
        sc.stride >= c::stride(m),
        "two_loop: scalar stride {} < {} needed for m = {m}",
        sc.stride,
        c::stride(m)
    );
    let out = |col| ScalarOut {
        buf: sc.scal,
        stride: sc.stride,
        col,
    };
    let mut ds = vec![lincomb(
        ctx,
        n,
        batch,
        d,
        None,
        &[Term::new(grad, -1.0)],
        sc,
    )?];
    let order: Vec<usize> = (0..count).map(|j| (head + m - j) % m).collect(); // newest → oldest
    for &i in &order {
        ds.extend(dot(
            ctx,
            n,
            batch,
            s.slot(i, m, n),
            d,
            out(c::alpha(m, i)),
            Some(c::rho(i)),
        )?);
        ds.push(lincomb(
            ctx,
            n,
            batch,
            d,
            Some((1.0, None)),
            &[Term::scaled(y.slot(i, m, n), -1.0, c::alpha(m, i))],
            sc,
        )?);
    }
    ds.push(lincomb(
        ctx,
        n,
        batch,
        d,
        Some((1.0, Some(c::GAMMA))),
        &[],
        sc,
    )?);
    for &i in order.iter().rev() {
        ds.extend(dot(
            ctx,
            n,
            batch,
            y.slot(i, m, n),
            d,
            out(c::beta(m, i)),
            Some(c::rho(i)),
        )?);
        let terms = [
            Term::scaled(s.slot(i, m, n), 1.0, c::alpha(m, i)),
            Term::scaled(s.slot(i, m, n), -1.0, c::beta(m, i)),
        ];
        ds.push(lincomb(ctx, n, batch, d, Some((1.0, None)), &terms, sc)?);
    }
    Ok(ds)
}

/// Free-running fused rounds submitted between two reads of the running count ([`Optimizer::run_free`]).
pub const FREE_ROUNDS_PER_CHECK: usize = 4;

impl Optimizer for Lbfgs {
    fn name(&self) -> String {
        match self.policy {
            Some(_) => format!("lbfgs-π(m={})", self.cfg.m),
            None if self.cfg.direction == Direction::Gram => format!(
                "lbfgs(m={},{},gram)",
                self.cfg.m,
                self.cfg.line_search.name()
            ),
            None => format!("lbfgs(m={},{})", self.cfg.m, self.cfg.line_search.name()),
        }
    }
    fn scalar_columns(&self) -> usize {
        // Direction::Gram (chosen or, for Auto, possibly chosen at init by n): the K = 2m + 1 coefficients of d
        // and gᵀd after the L-BFGS columns
        let gram = self.policy.is_none()
            && matches!(self.cfg.direction, Direction::Gram | Direction::Auto);
        c::stride(self.cfg.m) + if gram { 2 * self.cfg.m + 2 } else { 0 }
    }
    fn initial_scalars(&self) -> Vec<(usize, f64)> {
        vec![(c::GAMMA, 1.0)]
    }
    fn counts_evaluations(&self) -> bool {
        true
    }

    fn init(&mut self, ctx: &Context, task: &dyn Task, st: &State) -> Result<()> {
        let (n, bt, m) = (st.n, st.batch, self.cfg.m);
        anyhow::ensure!(
            (1..=64).contains(&m),
            "L-BFGS history m = {m} must be in 1..=64"
        );
        let (c1, c2) = self.cfg.line_search.constants();
        let mut cst = vec![
            c1,
            c2,
            self.cfg.t_max,
            self.cfg.curvature_eps(ctx.precision()),
        ];
        if let Some((pc, phi)) = &self.policy {
            cst.extend([pc.tau_min, pc.tau_max, pc.eps, pc.nh as f64]);
            cst.extend(phi);
        }
        self.mode = self.schedule(n);
        // the fused kernels bind 13 storage buffers and walk n in one thread: Auto falls back where a device
        // allows fewer bindings or shorter loops; an explicit Fused there is an error
        let bindings = crate::lbfgs_fused::LBFGS_FUSED.layout.len() as u32;
        let fits = ctx.limits.max_storage_buffers_per_shader_stage >= bindings
            && crate::lbfgs_fused::fits_loop_budget(ctx, n, m);
        if self.mode == Direction::Fused && !fits {
            if self.cfg.direction == Direction::Auto {
                self.mode = Direction::Gram;
            } else {
                anyhow::bail!(
                    "the fused L-BFGS kernels cannot run n = {n}, m = {m} on this adapter (one thread walks ~{} \
                     loop iterations per round, the software adapter stops at {}; or it allows fewer than {bindings} \
                     storage buffers): use --direction auto, two-loop or gram",
                    crate::lbfgs_fused::loop_iterations(n, m),
                    ctx.loop_budget()
                        .map_or("no limit".to_string(), |b| b.to_string())
                );
            }
        }
        self.inserted = 0;
        self.direction.clear();
        self.fused_rounds.clear();
        let k = 2 * m + 1;
        // Direction::Gram and Direction::Fused keep s and y in a basis ring instead
        let hist = if self.mode == Direction::TwoLoop {
            bt * m * n
        } else {
            1
        };
        self.bufs = Some(Bufs {
            d: ctx.zeros("d", bt * n)?,
            theta_t: ctx.zeros("theta_trial", bt * n)?,
            grad_t: ctx.zeros("grad_trial", bt * n)?,
            s: ctx.zeros("s history", hist)?,
            y: ctx.zeros("y history", hist)?,
            cst: ctx.upload("lbfgs consts", &cst)?,
            pending: ctx.upload_u32("pending", &[0])?,
            v4: match self.policy {
                Some(_) => Some(ctx.zeros("policy [d, g, s, y]", bt * 4 * n)?),
                None => None,
            },
            ring: if self.gram() {
                Some((
                    l2o_engine::BasisRing::new(ctx, n, bt, k)?,
                    ctx.upload("curvature eps", &[self.cfg.curvature_eps(ctx.precision())])?,
                ))
            } else {
                None
            },
            fused: if self.mode == Direction::Fused {
                Some((
                    ctx.zeros("basis vectors", bt * k * n)?,
                    ctx.zeros("basis Gram matrices", bt * k * k)?,
                    ctx.upload_u32("accepted this iteration", &vec![0; bt])?,
                ))
            } else {
                None
            },
        });
        let bf = self.bufs.as_ref().expect("just set");
        if self.mode == Direction::Fused {
            self.task_eval =
                task.loss_and_grad(ctx, bf.theta_t.view(n), bf.grad_t.view(n), st.out(c::FT))?;
            self.fused_start = vec![self.fused_dispatch(ctx, st, "fused_start", 0, 0, None)?];
            return Ok(());
        }
        let sc = Scalars {
            scal: &st.scal,
            stride: st.stride,
            status: Some(&st.status),
            mask_col: None,
        };
        let pend = Scalars {
            mask_col: Some(c::PENDING),
            ..sc
        };
        let (dv, tv, gv) = (bf.d.view(n), bf.theta_t.view(n), bf.grad_t.view(n));
        // Line-search start: gᵀd, ls_begin, then d ← DA·d + DB·g (reset to −g when d is not a descent direction).
        // (Direction::Gram: the scalar recursion writes gᵀd itself)
        let mut begin = if bf.ring.is_some() {
            vec![]
        } else {
            dot(ctx, n, bt, st.grad.view(n), dv, st.out(c::GD), None)?
        };
        begin.push(self.lbfgs_dispatch(ctx, st, "ls_begin", 0)?);
        begin.push(lincomb(
            ctx,
            n,
            bt,
            dv,
            Some((1.0, Some(c::DA))),
            &[Term::scaled(st.grad.view(n), 1.0, c::DB)],
            sc,
        )?);
        // One round of trials for the problems still searching.
        let mut round = vec![lincomb(
            ctx,
            n,
            bt,
            tv,
            None,
            &[
                Term::new(st.theta.view(n), 1.0),
                Term::scaled(dv, 1.0, c::T),
            ],
            pend,
        )?];
        round.extend(task.loss_and_grad(ctx, tv, gv, st.out(c::FT))?);
        round.extend(dot(ctx, n, bt, gv, dv, st.out(c::GDT), None)?);
        round.push(self.lbfgs_dispatch(ctx, st, "ls_update", 0)?);
        // Direction::Gram: g (st.grad) copied into the basis ring's g slot
        let g_into_ring = |ring: &l2o_engine::BasisRing| {
            lincomb(
                ctx,
                n,
                bt,
                ring.slot(crate::vector_free::g_slot(m)),
                None,
                &[Term::new(st.grad.view(n), 1.0)],
                sc,
            )
        };
        // Accept: s ← θ_t − θ, y ← g_t − g, θ ← θ_t, g ← g_t, the pair's inner products, ρ and γ.
        let mut finish = vec![];
        for slot in 0..m {
            let (sv, yv) = (bf.s_view(slot, m, n), bf.y_view(slot, m, n));
            let mut f = vec![
                lincomb(
                    ctx,
                    n,
                    bt,
                    sv,
                    None,
                    &[Term::new(tv, 1.0), Term::new(st.theta.view(n), -1.0)],
                    sc,
                )?,
                lincomb(
                    ctx,
                    n,
                    bt,
                    yv,
                    None,
                    &[Term::new(gv, 1.0), Term::new(st.grad.view(n), -1.0)],
                    sc,
                )?,
                lincomb(
                    ctx,
                    n,
                    bt,
                    st.theta.view(n),
                    None,
                    &[Term::new(tv, 1.0)],
                    sc,
                )?,
                lincomb(ctx, n, bt, st.grad.view(n), None, &[Term::new(gv, 1.0)], sc)?,
            ];
            if let Some((ring, eps1)) = &bf.ring {
                // the new g into the basis, the Gram rows of s, y and g in one pass, sᵀy, yᵀy, sᵀs, ‖g‖² from G
                use crate::vector_free as vf;
                f.push(g_into_ring(ring)?);
                f.extend(ring.rows(
                    ctx,
                    &[vf::s_slot(slot), vf::y_slot(m, slot), vf::g_slot(m)],
                    Some(&st.status),
                )?);
                f.push(vf::pair_columns(
                    ctx,
                    ring,
                    m,
                    slot,
                    &st.scal,
                    st.stride,
                    (c::SY, c::YY, c::SS),
                    eps1,
                    &st.status,
                )?);
            } else {
                f.extend(dot(ctx, n, bt, sv, yv, st.out(c::SY), None)?);
                f.extend(dot(ctx, n, bt, yv, yv, st.out(c::YY), None)?);
                f.extend(dot(ctx, n, bt, sv, sv, st.out(c::SS), None)?);
                f.extend(dot(
                    ctx,
                    n,
                    bt,
                    st.grad.view(n),
                    st.grad.view(n),
                    st.out(c::G2),
                    None,
                )?);
            }
            f.push(self.lbfgs_dispatch(ctx, st, "pair_update", slot)?);
            finish.push(f);
        }
        let mut policy_steps = vec![];
        if let Some(v4) = &bf.v4 {
            for head in 0..m {
                let copy = |j: usize, src: View| {
                    lincomb(
                        ctx,
                        n,
                        bt,
                        v4.slot(j, 4, n),
                        None,
                        &[Term::new(src, 1.0)],
                        sc,
                    )
                };
                let mut ps = vec![
                    copy(0, dv)?,
                    copy(1, st.grad.view(n))?,
                    copy(2, bf.s.slot(head, m, n))?,
                    copy(3, bf.y.slot(head, m, n))?,
                ];
                ps.extend(l2o_engine::gram(
                    ctx,
                    n,
                    bt,
                    4,
                    v4.slot(0, 4, n),
                    n,
                    st.out(c::gram0(m)),
                )?);
                ps.push(self.lbfgs_dispatch(ctx, st, "policy_step", 0)?);
                policy_steps.push(ps);
            }
        }
        self.gram_start = match &bf.ring {
            Some((ring, _)) => {
                let mut v = vec![g_into_ring(ring)?];
                v.extend(ring.rows(ctx, &[crate::vector_free::g_slot(m)], Some(&st.status))?);
                v
            }
            None => vec![],
        };
        self.begin = begin;
        self.round = round;
        self.finish = finish;
        self.policy_steps = policy_steps;
        Ok(())
    }

    /// The fused schedule only, where the adapter allows the free-running family's 15 storage bindings:
    /// rounds of the task's evaluation and `fused_free` until every problem has stopped or done `steps`
    /// iterations (at most `steps · (max_ls + 1)` rounds; `pending` read every [`FREE_ROUNDS_PER_CHECK`]
    /// rounds, so up to that many − 1 idle rounds at the end).
    fn run_free(
        &mut self,
        ctx: &Context,
        _task: &dyn Task,
        st: &State,
        steps: usize,
        eps: &DBuf,
        trace: &DBuf,
        progress: &mut dyn FnMut(usize),
    ) -> Result<bool> {
        let bindings = crate::lbfgs_fused::LBFGS_FUSED_FREE.layout.len() as u32;
        if self.mode != Direction::Fused
            || ctx.limits.max_storage_buffers_per_shader_stage < bindings
            || steps == 0
        {
            return Ok(false);
        }
        let mut round = self.task_eval.clone();
        round.push(self.fused_dispatch(ctx, st, "fused_free", steps, 0, Some((eps, trace)))?);
        let bf = self.bufs.as_ref().expect("init");
        let parked = &bf.fused.as_ref().expect("fused").2;
        let first: Vec<Dispatch> = self.fused_start.iter().chain(&round).cloned().collect();
        ctx.submit_after_clear(&[&bf.pending, parked], &first)?;
        let max_rounds = steps * (self.cfg.max_ls + 1);
        let mut rounds = 1;
        while rounds < max_rounds {
            if rounds % FREE_ROUNDS_PER_CHECK == 0 {
                if ctx.read_u32(&bf.pending)?[0] == 0 {
                    break;
                }
                progress(rounds.min(steps - 1));
            }
            // pending counts the problems still running after the last round before each check
            if (rounds + 1) % FREE_ROUNDS_PER_CHECK == 0 {
                ctx.submit_after_clear(&[&bf.pending], &round)?;
            } else {
                ctx.submit(&round)?;
            }
            rounds += 1;
        }
        progress(steps);
        Ok(true)
    }

    fn step(&mut self, ctx: &Context, _task: &dyn Task, st: &State, _k: usize) -> Result<()> {
        let m = self.cfg.m;
        if self.mode == Direction::Fused {
            // the accepted pair goes to slot `inserted % m`; pairs in use after it: min(inserted + 1, m)
            let key = (self.inserted % m, (self.inserted + 1).min(m));
            if !self.fused_rounds.contains_key(&key) {
                let mut round = self.task_eval.clone();
                round.push(self.fused_dispatch(ctx, st, "fused_round", key.0, key.1, None)?);
                self.fused_rounds.insert(key, round);
            }
            let round = &self.fused_rounds[&key];
            let bf = self.bufs.as_ref().expect("init");
            let parked = &bf.fused.as_ref().expect("fused").2;
            if self.inserted == 0 {
                let first: Vec<Dispatch> = self.fused_start.iter().chain(round).cloned().collect();
                ctx.submit_after_clear(&[&bf.pending, parked], &first)?;
            } else {
                ctx.submit_after_clear(&[&bf.pending, parked], round)?;
            }
            if self.cfg.line_search != LineSearch::Constant {
                for _ in 0..self.cfg.max_ls + 1 {
                    if ctx.read_u32(&bf.pending)?[0] == 0 {
                        break;
                    }
                    ctx.submit_after_clear(&[&bf.pending], round)?;
                }
            }
            self.inserted += 1;
            return Ok(());
        }
        let count = self.inserted.min(m);
        let head = (self.inserted + m - 1) % m;
        if !self.direction.contains_key(&(head, count)) {
            let bf = self.bufs.as_ref().expect("init");
            let sc = Scalars {
                scal: &st.scal,
                stride: st.stride,
                status: Some(&st.status),
                mask_col: None,
            };
            let d = match &bf.ring {
                // δ in the scalar columns after the L-BFGS ones (scalar_columns), gᵀd straight into GD
                Some((ring, eps1)) => crate::vector_free::direction(
                    ctx,
                    ring,
                    m,
                    head,
                    count,
                    eps1,
                    &st.status,
                    View {
                        buf: &st.scal,
                        offset: c::stride(m),
                        stride: st.stride,
                    },
                    Some(c::GD),
                    bf.d.view(st.n),
                )?,
                None => two_loop(
                    ctx,
                    st.n,
                    st.batch,
                    m,
                    st.grad.view(st.n),
                    bf.d.view(st.n),
                    &bf.s,
                    &bf.y,
                    sc,
                    head,
                    count,
                )?,
            };
            self.direction.insert((head, count), d);
        }
        let mut first: Vec<Dispatch> = if self.inserted == 0 {
            self.gram_start.clone()
        } else {
            vec![]
        };
        first.extend(self.direction[&(head, count)].iter().cloned());
        first.extend(self.begin.iter().cloned());
        if !self.policy_steps.is_empty() {
            first.extend(self.policy_steps[head].iter().cloned());
        }
        first.extend(self.round.iter().cloned());
        let pending = &self.bufs.as_ref().expect("init").pending;
        ctx.submit_after_clear(&[pending], &first)?;
        if self.cfg.line_search != LineSearch::Constant {
            // max_ls rounds plus the Wolfe fallback evaluation
            for _ in 0..self.cfg.max_ls + 1 {
                if ctx.read_u32(pending)?[0] == 0 {
                    break;
                }
                ctx.submit_after_clear(&[pending], &self.round)?;
            }
        }
        let slot = self.inserted % m;
        ctx.submit(&self.finish[slot])?;
        self.inserted += 1;
        Ok(())
    }
}

/// f64 CPU reference of [`Lbfgs`] on one problem: the same two-loop, pair test, direction reset, first step
/// and line-search state machines as the device kernels, with the task's oracle for f and ∇f.
pub mod reference {
    use super::*;

    /// Per-iteration record of the reference run.
    #[derive(Clone, Debug)]
    pub struct RefTrace {
        pub f: Vec<f64>,
        pub gnorm: Vec<f64>,
        pub theta: Vec<Vec<f64>>,
        pub evaluations: usize,
        /// 0 running, 1 converged, 3 line search failed, 4 converged at the working precision (as the device
        /// status codes; the precision-floor test with f64's ε).
        pub status: u32,
    }

    // `!(rad >= 0.0)` on purpose: NaN must take the bisection branch, exactly as in the WGSL.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    fn interp(tl: f64, fl: f64, gl: f64, th: f64, fh: f64, gh: f64) -> f64 {
        let mid = 0.5 * (tl + th);
        let d1 = gl + gh - 3.0 * (fl - fh) / (tl - th);
        let rad = d1 * d1 - gl * gh;
        if !(rad >= 0.0) || !rad.is_finite() {
            return mid;
        }
        let mut d2 = rad.sqrt();
        if th < tl {
            d2 = -d2;
        }
        let tc = th - (th - tl) * (gh + d2 - d1) / (gh - gl + 2.0 * d2);
        let a = tl.min(th);
        let w = tl.max(th) - a;
        if !(tc >= a + 0.1 * w && tc <= a + 0.9 * w) {
            return mid;
        }
        tc
    }

    fn dotp(a: &[f64], b: &[f64]) -> f64 {
        l2o_engine::oracle::dot(a, b)
    }

    /// d = −H·g by the two-loop recursion over the ring (newest pair in `head`, `count` pairs; ρ_i = 0 skips
    /// pair i), exactly as the device [`two_loop`](super::two_loop) computes it.
    pub fn two_loop(
        g: &[f64],
        s: &[Vec<f64>],
        y: &[Vec<f64>],
        rho: &[f64],
        gamma: f64,
        head: usize,
        count: usize,
    ) -> Vec<f64> {
        let (n, m) = (g.len(), s.len());
        let order: Vec<usize> = (0..count).map(|j| (head + m - j) % m).collect();
        let mut d: Vec<f64> = g.iter().map(|v| -v).collect();
        let mut alpha = vec![0.0; m];
        for &i in &order {
            alpha[i] = rho[i] * dotp(&s[i], &d);
            for j in 0..n {
                d[j] -= alpha[i] * y[i][j];
            }
        }
        d.iter_mut().for_each(|v| *v *= gamma);
        for &i in order.iter().rev() {
            let beta = rho[i] * dotp(&y[i], &d);
            for j in 0..n {
                d[j] += (alpha[i] - beta) * s[i][j];
            }
        }
        d
    }

    /// The status of a failed line search (`failed_status` in shaders/lbfgs.wgsl): converged at the working
    /// precision (4) when the first trial's predicted decrease −t₀·φ'(0) is at most [`FLOOR_ULPS`] units of
    /// `eps` at the scale max(|f(θ_k)|, |f(θ₀)|), else line search failed (3).
    pub fn failed_status(t0: f64, gd0: f64, f0: f64, f_start: f64, eps: f64) -> u32 {
        if -t0 * gd0 <= FLOOR_ULPS * eps * f0.abs().max(f_start.abs()) {
            l2o_engine::status::AT_PRECISION
        } else {
            l2o_engine::status::LINE_SEARCH_FAILED
        }
    }

    /// The precision-floor test's threshold in units of ε (`FLOOR_ULPS` in shaders/lbfgs.wgsl).
    pub const FLOOR_ULPS: f64 = 100.0;

    /// Run `steps` iterations of problem `b` of `task` from `theta0`, stopping when ‖g‖ < eps_g.
    pub fn run(
        task: &dyn Task,
        b: usize,
        theta0: &[f64],
        cfg: &LbfgsConfig,
        steps: usize,
        eps_g: f64,
    ) -> RefTrace {
        run_fn(
            &|x: &[f64]| task.oracle_loss_grad(b, x),
            theta0,
            cfg,
            steps,
            eps_g,
        )
    }

    /// [`run`] on any host function `lg(θ) = (f, ∇f)`.
    pub fn run_fn(
        lg: &dyn Fn(&[f64]) -> (f64, Vec<f64>),
        theta0: &[f64],
        cfg: &LbfgsConfig,
        steps: usize,
        eps_g: f64,
    ) -> RefTrace {
        let n = theta0.len();
        let m = cfg.m;
        let eps_c = cfg.curvature_eps(Precision::F64);
        let (c1, c2) = cfg.line_search.constants();
        let mut x = theta0.to_vec();
        let (mut f, mut g) = lg(&x);
        let mut s_hist = vec![vec![0.0; n]; m];
        let mut y_hist = vec![vec![0.0; n]; m];
        let mut rho = vec![0.0; m];
        let (mut gamma, mut hasp) = (1.0, false);
        let f_start = f;
        let mut tr = RefTrace {
            f: vec![f],
            gnorm: vec![dotp(&g, &g).sqrt()],
            theta: vec![x.clone()],
            evaluations: 0,
            status: 0,
        };
        // a zero gradient is a stationary point (as on the device: shaders/status.wgsl)
        if tr.gnorm[0] < eps_g || tr.gnorm[0] == 0.0 {
            tr.status = 1;
            return tr;
        }
        for k in 0..steps {
            let mut d = two_loop(&g, &s_hist, &y_hist, &rho, gamma, (k + m - 1) % m, k.min(m));
            let g2 = dotp(&g, &g);
            let mut gd = dotp(&g, &d);
            if !(gd < 0.0 && gd.is_finite()) {
                d = g.iter().map(|v| -v).collect();
                gd = -g2;
            }
            // line search
            let (f0, gd0) = (f, gd);
            let t0 = if hasp {
                1.0
            } else {
                (1.0 / g2.sqrt()).min(1.0)
            };
            let mut t = t0;
            let (mut phase, mut nls) = (0u32, 0usize);
            let (mut tlo, mut flo, mut glo) = (0.0, f0, gd0);
            let (mut thi, mut fhi, mut ghi) = (0.0, 0.0, 0.0);
            let accepted: Option<(Vec<f64>, f64, Vec<f64>)>;
            loop {
                let xt: Vec<f64> = x.iter().zip(&d).map(|(a, b)| a + t * b).collect();
                let (ft, gt_vec) = lg(&xt);
                let gt = dotp(&gt_vec, &d);
                nls += 1;
                tr.evaluations += 1;
                let finite = ft.is_finite() && gt.is_finite();
                // backtracking: only where f can resolve the decrease asked for (as shaders/lbfgs.wgsl)
                let bound = f0 + c1 * t * gd0;
                let backtracking = matches!(cfg.line_search, LineSearch::Armijo { .. });
                let armijo = finite && ft <= bound && (bound < f0 || !backtracking);
                if cfg.line_search == LineSearch::Constant || phase == 3 {
                    accepted = Some((xt, ft, gt_vec));
                    break;
                }
                match cfg.line_search {
                    LineSearch::Armijo { .. } => {
                        if armijo {
                            accepted = Some((xt, ft, gt_vec));
                            break;
                        }
                        t *= c2;
                    }
                    _ => {
                        let curv = gt.abs() <= -c2 * gd0;
                        let (fh_, gh_) = if finite { (ft, gt) } else { (f64::MAX, 0.0) };
                        if phase < 2 {
                            if !armijo || (phase == 1 && ft >= flo) {
                                (thi, fhi, ghi) = (t, fh_, gh_);
                                phase = 2;
                                t = interp(tlo, flo, glo, thi, fhi, ghi);
                            } else if curv {
                                accepted = Some((xt, ft, gt_vec));
                                break;
                            } else if gt >= 0.0 {
                                (thi, fhi, ghi) = (tlo, flo, glo);
                                (tlo, flo, glo) = (t, ft, gt);
                                phase = 2;
                                t = interp(tlo, flo, glo, thi, fhi, ghi);
                            } else {
                                (tlo, flo, glo) = (t, ft, gt);
                                phase = 1;
                                t = (4.0 * t).min(cfg.t_max);
                            }
                        } else {
                            if !armijo || ft >= flo {
                                (thi, fhi, ghi) = (t, fh_, gh_);
                            } else {
                                if curv {
                                    accepted = Some((xt, ft, gt_vec));
                                    break;
                                }
                                if gt * (thi - tlo) >= 0.0 {
                                    (thi, fhi, ghi) = (tlo, flo, glo);
                                }
                                (tlo, flo, glo) = (t, ft, gt);
                            }
                            t = interp(tlo, flo, glo, thi, fhi, ghi);
                        }
                    }
                }
                if nls >= cfg.max_ls {
                    if matches!(cfg.line_search, LineSearch::Wolfe { .. }) && tlo > 0.0 {
                        phase = 3;
                        t = tlo;
                    } else {
                        accepted = None;
                        break;
                    }
                }
            }
            let Some((xt, ft, gt_vec)) = accepted else {
                tr.status = failed_status(t0, gd0, f0, f_start, f64::EPSILON);
                break;
            };
            let slot = k % m;
            s_hist[slot] = xt.iter().zip(&x).map(|(a, b)| a - b).collect();
            y_hist[slot] = gt_vec.iter().zip(&g).map(|(a, b)| a - b).collect();
            x = xt;
            g = gt_vec;
            f = ft;
            let (sy, yy, ss) = (
                dotp(&s_hist[slot], &y_hist[slot]),
                dotp(&y_hist[slot], &y_hist[slot]),
                dotp(&s_hist[slot], &s_hist[slot]),
            );
            let (r, gm) = (1.0 / sy, sy / yy);
            if sy.is_finite()
                && yy.is_finite()
                && ss.is_finite()
                && sy > eps_c * (ss * yy).sqrt()
                && yy > 0.0
                && r.is_finite()
                && gm.is_finite()
                && gm > 0.0
            {
                (rho[slot], gamma) = (r, gm);
                hasp = true;
            } else {
                rho[slot] = 0.0;
            }
            let gn = dotp(&g, &g).sqrt();
            tr.f.push(f);
            tr.gnorm.push(gn);
            tr.theta.push(x.clone());
            if !f.is_finite() || !gn.is_finite() {
                tr.status = 2;
                break;
            }
            if gn < eps_g || gn == 0.0 {
                tr.status = 1;
                break;
            }
        }
        tr
    }
}
