//! L-BFGS-π meta-training on the device: the forward unroll of K steps with its trajectory record and the
//! hand-derived reverse sweep of [`crate::policy`] (same equations, same order), recorded once as one list of
//! dispatches and replayed every outer step. The vector work is the engine's `reduce`/`lincomb` kernels (the
//! adjoints of inner products and linear combinations are inner products and linear combinations again); the
//! per-problem scalar work is the `lbfgs` family (two-loop scalars, pair test, `policy_step`) and the `policy`
//! family (`shaders/policy.wgsl`: the records and the scalar adjoints).
//!
//! Device memory per problem: D, S, Y and λs as \[K\]\[n\] each and G as [K+1]\[n\] (5·K·n numbers), q-history
//! [m+1]\[n\], [d, g, s, y] \[4\]\[n\] and five n-vectors; the scalar row holds the live L-BFGS columns (with ρ_j of
//! every step j, the rings being the K-long histories), a record of 24 values per step and the work columns.
//! One host round trip per outer step (losses, ∂φ, ‖g_K‖²).

use anyhow::{Result, bail};
use l2o_engine::lbfgs_cols as c;
use l2o_engine::shaders::{LBFGS, POLICY};
use l2o_engine::{Context, DBuf, Dispatch, ScalarOut, Scalars, Term, dot, gram, lincomb};
use l2o_tasks::Task;

use crate::policy::PolicyConfig;
use crate::policy::fused::{self, Schedule};

/// Values recorded per step (the `R_*` fields of `shaders/policy.wgsl`).
const REC: usize = 24;
const R_T: usize = 18;
const R_NORESET: usize = 19;
const R_GAM: usize = 20;
const R_GACC: usize = 23;

/// Column layout of one problem's scalar row.
#[derive(Clone, Copy, Debug)]
struct Cols {
    /// After the L-BFGS columns for rings of length K (ρ_j of every step j): the live γ source (step index, −1: none)
    gfrom: usize,
    rec0: usize,
    lt: usize,
    cd: usize,
    cs: usize,
    cdot: usize,
    lgam: usize,
    z: usize,
    la: usize,
    nn: usize,
    mm: usize,
    pp: usize,
    mq: usize,
    alpha: usize,
    beta: usize,
    stride: usize,
}

impl Cols {
    fn new(k: usize, m: usize) -> Self {
        let gfrom = c::stride(k);
        let rec0 = gfrom + 1;
        let w = rec0 + k * REC;
        let la = w + 13;
        Self {
            gfrom,
            rec0,
            lt: w,
            cd: w + 1,
            cs: w + 5,
            cdot: w + 9,
            lgam: w + 10,
            z: w + 11,
            // w + 12 spare
            la,
            nn: la + m,
            mm: la + m + 1,
            pp: la + m + 2,
            mq: la + m + 3,
            alpha: la + m + 4,
            beta: la + 2 * m + 4,
            stride: la + 3 * m + 4,
        }
    }
    fn rec(&self, k: usize) -> usize {
        self.rec0 + k * REC
    }
}

/// Device buffers and the recorded unroll of one trainer.
pub struct PolicyTrainer {
    pub cfg: PolicyConfig,
    pub n: usize,
    pub batch: usize,
    pub steps: usize,
    pub weights: Vec<f64>,
    cols: Cols,
    /// [c1, c2, t_max, ε_c, τm, τM, ε, n_h, φ]: the L-BFGS constants with the policy after them.
    cst: DBuf,
    pending: DBuf,
    status: DBuf,
    pub scal: DBuf,
    pub x: DBuf,
    g: DBuf,
    d: DBuf,
    s: DBuf,
    y: DBuf,
    v4: DBuf,
    /// q_0..q_m of the recomputed two-loop, one buffer each (an input must not alias the output buffer)
    qh: Vec<DBuf>,
    r: DBuf,
    /// ∇f at the new iterate as a plain [B][n] buffer (tasks may require one), then copied into G
    gnew: DBuf,
    lx: DBuf,
    ls: DBuf,
    ld: DBuf,
    lq: DBuf,
    lsb: DBuf,
    dphi: DBuf,
    /// f_b(x_k), [B][K+1]
    losses: DBuf,
    unroll: Vec<Dispatch>,
    /// [`Schedule::Fused`]: every vector of every problem ([`crate::policy::fused`]); then the buffers of the
    /// vector path above are placeholders of one element.
    vecs: Option<DBuf>,
}

/// What one outer step returns.
#[derive(Clone, Debug)]
pub struct PolicyStepResult {
    /// L = (1/B) Σ_b Σ_{k=1..K} w_k f_b(x_k)
    pub meta_loss: f64,
    /// f_b(x_k), \[B\]\[K+1\]
    pub losses: Vec<f64>,
    /// ∂L/∂φ (summed over problems, with the 1/B of L)
    pub dphi: Vec<f64>,
    /// ‖g_b(x_K)‖ per problem
    pub gnorm: Vec<f64>,
}

impl PolicyTrainer {
    /// A trainer with the schedule chosen by n ([`Schedule::Auto`]).
    pub fn new(
        ctx: &Context,
        cfg: &PolicyConfig,
        n: usize,
        batch: usize,
        weights: &[f64],
    ) -> Result<Self> {
        Self::with_schedule(ctx, cfg, n, batch, weights, Schedule::Auto)
    }

    /// A trainer running its outer steps by `schedule` (both compute the same meta-gradient).
    pub fn with_schedule(
        ctx: &Context,
        cfg: &PolicyConfig,
        n: usize,
        batch: usize,
        weights: &[f64],
        schedule: Schedule,
    ) -> Result<Self> {
        cfg.validate()?;
        let steps = weights.len();
        if steps == 0 || n == 0 || batch == 0 {
            bail!("policy trainer: K = {steps}, n = {n}, B = {batch} must all be positive");
        }
        let m = cfg.m;
        let cols = Cols::new(steps, m);
        let len = cfg.layout().len;
        let eps_c = cfg
            .curvature_eps
            .unwrap_or(l2o_optim::LbfgsConfig::default().curvature_eps(ctx.precision()));
        let mut cst = vec![0.0, 0.0, 1e10, eps_c, cfg.tau_min, cfg.tau_max, cfg.eps];
        cst.push(cfg.nh as f64);
        cst.extend(vec![0.0; len]);
        let vl = fused::VecLayout::new(steps, m);
        let vec_bytes = (batch * vl.nv * n * ctx.precision().size()) as u64;
        let fits = vec_bytes <= ctx.limits.max_storage_buffer_binding_size
            && vec_bytes <= ctx.limits.max_buffer_size;
        let budget = fused::fits_loop_budget(ctx, n, m);
        let fused = match schedule {
            Schedule::Auto => n <= fused::MAX_N && fits && budget,
            Schedule::Fused if !budget => bail!(
                "the fused L-BFGS-π schedule needs ~{} loop iterations per thread for n = {n}, m = {m}, more than \
                 the software adapter's {} (its JIT stops every loop beyond that): use the vector schedule \
                 (Schedule::Vectors or Schedule::Auto)",
                fused::loop_iterations(n, m),
                ctx.loop_budget().unwrap_or(usize::MAX)
            ),
            Schedule::Fused => true,
            Schedule::Vectors => false,
        };
        let vecs = if fused {
            Some(ctx.zeros(
                "L-BFGS-π vectors (g, d, s, y, λs per step; work)",
                batch * vl.nv * n,
            )?)
        } else {
            None
        };
        // the vector path's buffers, placeholders when fused
        let (kn, bn) = if fused {
            (1, 1)
        } else {
            (batch * steps * n, batch * n)
        };
        Ok(Self {
            cfg: *cfg,
            n,
            batch,
            steps,
            weights: weights.to_vec(),
            cols,
            cst: ctx.upload("policy consts", &cst)?,
            pending: ctx.upload_u32("pending", &[0])?,
            status: ctx.upload_u32("status", &vec![0; batch])?,
            scal: ctx.zeros("policy scalars", batch * cols.stride)?,
            x: ctx.zeros("x", batch * n)?,
            g: ctx.zeros("g history", if fused { 1 } else { batch * (steps + 1) * n })?,
            d: ctx.zeros("d history", kn)?,
            s: ctx.zeros("s history", kn)?,
            y: ctx.zeros("y history", kn)?,
            v4: ctx.zeros("[d, g, s, y]", 4 * bn)?,
            qh: (0..=m)
                .map(|_| ctx.zeros("two-loop q", bn))
                .collect::<Result<_>>()?,
            r: ctx.zeros("two-loop r", bn)?,
            gnew: ctx.zeros("new gradient", batch * n)?,
            lx: ctx.zeros("λx", bn)?,
            ls: ctx.zeros("λS", bn)?,
            ld: ctx.zeros("λd", bn)?,
            lq: ctx.zeros("λq", bn)?,
            lsb: ctx.zeros("λs history", kn)?,
            dphi: ctx.zeros("∂φ per problem", batch * len)?,
            losses: ctx.zeros("unroll losses", batch * (steps + 1))?,
            unroll: vec![],
            vecs,
        })
    }

    /// The schedule this trainer runs (never [`Schedule::Auto`]).
    pub fn schedule(&self) -> Schedule {
        if self.vecs.is_some() {
            Schedule::Fused
        } else {
            Schedule::Vectors
        }
    }

    fn lb(&self, ctx: &Context, entry: &'static str, slot: usize) -> Result<Dispatch> {
        let p = ctx.params(&[
            self.batch as u32,
            self.cols.stride as u32,
            0,
            0,
            slot as u32,
            self.steps as u32,
            c::gram0(self.steps) as u32,
            0,
        ]);
        ctx.dispatch(
            &LBFGS,
            entry,
            &[
                &p,
                &self.cst.buf,
                &self.scal.buf,
                &self.status.buf,
                &self.pending.buf,
            ],
            [self.batch.div_ceil(64) as u32, 1, 1],
        )
    }

    fn pk(&self, ctx: &Context, entry: &'static str, k: usize, cs: [usize; 8]) -> Result<Dispatch> {
        let mut w = vec![
            self.batch as u32,
            self.cols.stride as u32,
            k as u32,
            self.cols.rec(k.min(self.steps - 1)) as u32,
        ];
        w.extend(cs.iter().map(|&v| v as u32));
        let p = ctx.params(&w);
        ctx.dispatch(
            &POLICY,
            entry,
            &[&p, &self.cst.buf, &self.scal.buf, &self.dphi.buf],
            [self.batch.div_ceil(64) as u32, 1, 1],
        )
    }

    fn sc(&self, mask: Option<usize>) -> Scalars<'_> {
        Scalars {
            scal: &self.scal,
            stride: self.cols.stride,
            status: None,
            mask_col: mask,
        }
    }

    fn out(&self, col: usize) -> ScalarOut<'_> {
        ScalarOut {
            buf: &self.scal,
            stride: self.cols.stride,
            col,
        }
    }

    /// Record the forward unroll and the reverse sweep for `task` (its dimension and batch must match) and start
    /// from its initial point.
    pub fn bind(&mut self, ctx: &Context, task: &dyn Task) -> Result<()> {
        if task.dim() != self.n || task.batch() != self.batch {
            bail!(
                "task is {}×{} but the trainer was built for n = {}, B = {}",
                task.batch(),
                task.dim(),
                self.n,
                self.batch
            );
        }
        self.unroll = if let Some(vecs) = &self.vecs {
            let wg = if ctx.is_software() { 8 } else { 64 };
            let defs = fused::defines(
                self.cfg.m,
                &self.weights,
                self.batch,
                self.cols.gfrom,
                self.cols.rec0,
                REC,
                wg,
            );
            let bind = fused::FusedBindings {
                cst: &self.cst,
                scal: &self.scal,
                status: &self.status,
                pending: &self.pending,
                x: &self.x,
                gnew: &self.gnew,
                vecs,
                dphi: &self.dphi,
                losses: &self.losses,
            };
            fused::record(
                ctx,
                task,
                &bind,
                self.n,
                self.batch,
                self.cols.stride,
                &defs,
                wg,
                self.steps,
            )?
        } else {
            let mut d = self.forward(ctx, task)?;
            d.extend(self.reverse(ctx)?);
            d
        };
        ctx.write(&self.x, 0, &task.initial_point())
    }

    fn forward(&self, ctx: &Context, task: &dyn Task) -> Result<Vec<Dispatch>> {
        let (n, bt, kk, m) = (self.n, self.batch, self.steps, self.cfg.m);
        let cl = self.cols;
        let sc = self.sc(None);
        let gv = |k: usize| self.g.slot(k, kk + 1, n);
        let eval = |k: usize| -> Result<Vec<Dispatch>> {
            let mut e = task.loss_and_grad(
                ctx,
                self.x.view(n),
                self.gnew.view(n),
                ScalarOut {
                    buf: &self.losses,
                    stride: kk + 1,
                    col: k,
                },
            )?;
            e.push(lincomb(
                ctx,
                n,
                bt,
                gv(k),
                None,
                &[Term::new(self.gnew.view(n), 1.0)],
                sc,
            )?);
            Ok(e)
        };
        let mut ds = eval(0)?;
        for k in 0..kk {
            let count = k.min(m);
            let head = if k == 0 { 0 } else { k - 1 };
            ds.extend(dot(ctx, n, bt, gv(k), gv(k), self.out(c::G2), None)?);
            ds.extend(l2o_optim::lbfgs::two_loop(
                ctx,
                n,
                bt,
                kk,
                gv(k),
                self.d.slot(k, kk, n),
                &self.s,
                &self.y,
                sc,
                head,
                count,
            )?);
            // reset to −g when d is not a descent direction (ls_begin sets DA, DB)
            ds.extend(dot(
                ctx,
                n,
                bt,
                gv(k),
                self.d.slot(k, kk, n),
                self.out(c::GD),
                None,
            )?);
            ds.push(self.lb(ctx, "ls_begin", 0)?);
            ds.push(lincomb(
                ctx,
                n,
                bt,
                self.d.slot(k, kk, n),
                Some((1.0, Some(c::DA))),
                &[Term::scaled(gv(k), 1.0, c::DB)],
                sc,
            )?);
            // the policy: Gram of [d, g, s_{k−1}, y_{k−1}], t = π(·; φ)
            let v4 = |j| self.v4.slot(j, 4, n);
            ds.push(lincomb(
                ctx,
                n,
                bt,
                v4(0),
                None,
                &[Term::new(self.d.slot(k, kk, n), 1.0)],
                sc,
            )?);
            ds.push(lincomb(
                ctx,
                n,
                bt,
                v4(1),
                None,
                &[Term::new(gv(k), 1.0)],
                sc,
            )?);
            if k == 0 {
                ds.push(lincomb(ctx, n, bt, v4(2), None, &[], sc)?);
                ds.push(lincomb(ctx, n, bt, v4(3), None, &[], sc)?);
            } else {
                ds.push(lincomb(
                    ctx,
                    n,
                    bt,
                    v4(2),
                    None,
                    &[Term::new(self.s.slot(k - 1, kk, n), 1.0)],
                    sc,
                )?);
                ds.push(lincomb(
                    ctx,
                    n,
                    bt,
                    v4(3),
                    None,
                    &[Term::new(self.y.slot(k - 1, kk, n), 1.0)],
                    sc,
                )?);
            }
            ds.extend(gram(ctx, n, bt, 4, v4(0), n, self.out(c::gram0(kk)))?);
            ds.push(self.lb(ctx, "policy_step", 0)?);
            ds.push(self.pk(
                ctx,
                "record_pre",
                k,
                [c::gram0(kk), c::T, c::DB, c::GAMMA, cl.gfrom, 0, 0, 0],
            )?);
            // s_k = t d_k, x_{k+1} = x_k + s_k, g_{k+1}, f(x_{k+1})
            ds.push(lincomb(
                ctx,
                n,
                bt,
                self.s.slot(k, kk, n),
                None,
                &[Term::scaled(self.d.slot(k, kk, n), 1.0, c::T)],
                sc,
            )?);
            ds.push(lincomb(
                ctx,
                n,
                bt,
                self.x.view(n),
                Some((1.0, None)),
                &[Term::new(self.s.slot(k, kk, n), 1.0)],
                sc,
            )?);
            ds.extend(eval(k + 1)?);
            // y_k and the pair test
            ds.push(lincomb(
                ctx,
                n,
                bt,
                self.y.slot(k, kk, n),
                None,
                &[Term::new(gv(k + 1), 1.0), Term::new(gv(k), -1.0)],
                sc,
            )?);
            let (sv, yv) = (self.s.slot(k, kk, n), self.y.slot(k, kk, n));
            ds.extend(dot(ctx, n, bt, sv, yv, self.out(c::SY), None)?);
            ds.extend(dot(ctx, n, bt, yv, yv, self.out(c::YY), None)?);
            ds.extend(dot(ctx, n, bt, sv, sv, self.out(c::SS), None)?);
            ds.push(self.lb(ctx, "pair_update", k)?);
            ds.push(self.pk(
                ctx,
                "record_post",
                k,
                [c::rho(k), c::YY, 0, 0, cl.gfrom, 0, 0, 0],
            )?);
        }
        ds.extend(dot(ctx, n, bt, gv(kk), gv(kk), self.out(c::G2), None)?);
        Ok(ds)
    }

    fn reverse(&self, ctx: &Context) -> Result<Vec<Dispatch>> {
        let (n, bt, kk, m) = (self.n, self.batch, self.steps, self.cfg.m);
        let cl = self.cols;
        let sc = self.sc(None);
        let gv = |k: usize| self.g.slot(k, kk + 1, n);
        let qv = |e: usize| self.qh[e].view(n);
        let (lx, ls, ld, lq, r) = (
            self.lx.view(n),
            self.ls.view(n),
            self.ld.view(n),
            self.lq.view(n),
            self.r.view(n),
        );
        let inv_b = 1.0 / bt as f64;
        let mut ds = vec![];
        for k in (0..kk).rev() {
            let rb = cl.rec(k);
            let masked = self.sc(Some(rb + R_NORESET));
            // λx += (w_{k+1}/B) g_{k+1};  λS = λx + λs_k + GACC_k·y_k;  λt = ⟨λS, d_k⟩
            ds.push(lincomb(
                ctx,
                n,
                bt,
                lx,
                Some((1.0, None)),
                &[Term::new(gv(k + 1), self.weights[k] * inv_b)],
                sc,
            )?);
            ds.push(lincomb(
                ctx,
                n,
                bt,
                ls,
                None,
                &[
                    Term::new(lx, 1.0),
                    Term::new(self.lsb.slot(k, kk, n), 1.0),
                    Term::scaled(self.y.slot(k, kk, n), 1.0, rb + R_GACC),
                ],
                sc,
            )?);
            ds.extend(dot(
                ctx,
                n,
                bt,
                ls,
                self.d.slot(k, kk, n),
                self.out(cl.lt),
                None,
            )?);
            ds.push(self.pk(ctx, "rev_policy", k, [cl.lt, cl.cd, cl.cs, 0, 0, 0, 0, 0])?);
            // λd = t λS + Σ_j CD_j V_j;  λs_{k−1} += Σ_j CS_j V_j
            let mut terms = vec![
                Term::scaled(ls, 1.0, rb + R_T),
                Term::scaled(self.d.slot(k, kk, n), 1.0, cl.cd),
                Term::scaled(gv(k), 1.0, cl.cd + 1),
            ];
            if k > 0 {
                terms.push(Term::scaled(self.s.slot(k - 1, kk, n), 1.0, cl.cd + 2));
            }
            ds.push(lincomb(ctx, n, bt, ld, None, &terms, sc)?);
            if k > 0 {
                ds.push(lincomb(
                    ctx,
                    n,
                    bt,
                    ld,
                    Some((1.0, None)),
                    &[Term::scaled(self.y.slot(k - 1, kk, n), 1.0, cl.cd + 3)],
                    sc,
                )?);
                ds.push(lincomb(
                    ctx,
                    n,
                    bt,
                    self.lsb.slot(k - 1, kk, n),
                    Some((1.0, None)),
                    &[
                        Term::scaled(self.d.slot(k, kk, n), 1.0, cl.cs),
                        Term::scaled(gv(k), 1.0, cl.cs + 1),
                        Term::scaled(self.s.slot(k - 1, kk, n), 1.0, cl.cs + 2),
                        Term::scaled(self.y.slot(k - 1, kk, n), 1.0, cl.cs + 3),
                    ],
                    sc,
                )?);
            }
            let cnt = k.min(m);
            if cnt == 0 {
                continue;
            }
            let pair = |e: usize| k - 1 - e; // e = 0 is the newest pair
            // recompute the two-loop of step k: q_0..q_c (kept), α_e, β_e
            ds.push(lincomb(
                ctx,
                n,
                bt,
                qv(0),
                None,
                &[Term::new(gv(k), -1.0)],
                sc,
            )?);
            for e in 0..cnt {
                let j = pair(e);
                ds.extend(dot(
                    ctx,
                    n,
                    bt,
                    self.s.slot(j, kk, n),
                    qv(e),
                    self.out(cl.alpha + e),
                    Some(c::rho(j)),
                )?);
                ds.push(lincomb(
                    ctx,
                    n,
                    bt,
                    qv(e + 1),
                    None,
                    &[
                        Term::new(qv(e), 1.0),
                        Term::scaled(self.y.slot(j, kk, n), -1.0, cl.alpha + e),
                    ],
                    sc,
                )?);
            }
            ds.push(lincomb(
                ctx,
                n,
                bt,
                r,
                None,
                &[Term::scaled(qv(cnt), 1.0, rb + R_GAM)],
                sc,
            )?);
            for e in (0..cnt).rev() {
                let j = pair(e);
                ds.extend(dot(
                    ctx,
                    n,
                    bt,
                    self.y.slot(j, kk, n),
                    r,
                    self.out(cl.beta + e),
                    Some(c::rho(j)),
                )?);
                ds.push(lincomb(
                    ctx,
                    n,
                    bt,
                    r,
                    Some((1.0, None)),
                    &[
                        Term::scaled(self.s.slot(j, kk, n), 1.0, cl.alpha + e),
                        Term::scaled(self.s.slot(j, kk, n), -1.0, cl.beta + e),
                    ],
                    sc,
                )?);
            }
            // second loop reversed (newest first), λr = λd
            for e in 0..cnt {
                let j = pair(e);
                ds.extend(dot(
                    ctx,
                    n,
                    bt,
                    ld,
                    self.s.slot(j, kk, n),
                    self.out(cl.cdot),
                    None,
                )?);
                ds.push(self.pk(
                    ctx,
                    "rev_loop2",
                    k,
                    [
                        cl.cdot,
                        c::rho(j),
                        cl.beta + e,
                        cl.la + e,
                        cl.nn,
                        cl.mm,
                        0,
                        0,
                    ],
                )?);
                ds.push(lincomb(
                    ctx,
                    n,
                    bt,
                    self.lsb.slot(j, kk, n),
                    Some((1.0, None)),
                    &[
                        Term::scaled(ld, 1.0, cl.alpha + e),
                        Term::scaled(ld, -1.0, cl.beta + e),
                        Term::scaled(self.y.slot(j, kk, n), 1.0, cl.mm),
                    ],
                    masked,
                )?);
                ds.push(lincomb(
                    ctx,
                    n,
                    bt,
                    ld,
                    Some((1.0, None)),
                    &[Term::scaled(self.y.slot(j, kk, n), 1.0, cl.nn)],
                    masked,
                )?);
            }
            // γ: λγ = ⟨λr, q_c⟩;  λq = γ λr
            ds.extend(dot(ctx, n, bt, ld, qv(cnt), self.out(cl.lgam), None)?);
            ds.push(self.pk(ctx, "rev_gamma", k, [cl.lgam, cl.rec0, REC, 0, 0, 0, 0, 0])?);
            ds.push(lincomb(
                ctx,
                n,
                bt,
                lq,
                None,
                &[Term::scaled(ld, 1.0, rb + R_GAM)],
                sc,
            )?);
            // first loop reversed (oldest first)
            for e in (0..cnt).rev() {
                let j = pair(e);
                ds.extend(dot(
                    ctx,
                    n,
                    bt,
                    lq,
                    self.y.slot(j, kk, n),
                    self.out(cl.z),
                    None,
                )?);
                ds.push(self.pk(
                    ctx,
                    "rev_loop1",
                    k,
                    [cl.z, cl.la + e, c::rho(j), cl.alpha + e, cl.pp, cl.mq, 0, 0],
                )?);
                ds.push(lincomb(
                    ctx,
                    n,
                    bt,
                    self.lsb.slot(j, kk, n),
                    Some((1.0, None)),
                    &[
                        Term::scaled(qv(e), 1.0, cl.pp),
                        Term::scaled(self.y.slot(j, kk, n), 1.0, cl.mq),
                    ],
                    masked,
                )?);
                ds.push(lincomb(
                    ctx,
                    n,
                    bt,
                    lq,
                    Some((1.0, None)),
                    &[Term::scaled(self.s.slot(j, kk, n), 1.0, cl.pp)],
                    masked,
                )?);
            }
        }
        Ok(ds)
    }

    /// Number of dispatches of one outer step (forward + reverse).
    pub fn dispatches_per_step(&self) -> usize {
        self.unroll.len()
    }

    /// Overwrite the current iterates of problem `b` (e.g. a fresh x0 after convergence).
    pub fn set_x(&self, ctx: &Context, b: usize, x: &[f64]) -> Result<()> {
        if x.len() != self.n || b >= self.batch {
            bail!(
                "set_x: problem {b} of {}, {} values for n = {}",
                self.batch,
                x.len(),
                self.n
            );
        }
        ctx.write(&self.x, b * self.n, x)
    }

    /// One outer step at φ: K forward steps from the current x with an empty L-BFGS memory (x_K carries over
    /// to the next call), the reverse sweep, ∂L/∂φ; one readback.
    pub fn run(&self, ctx: &Context, phi: &[f64]) -> Result<PolicyStepResult> {
        if self.unroll.is_empty() {
            bail!("no task bound: call bind() first");
        }
        let len = self.cfg.layout().len;
        if phi.len() != len {
            bail!("policy parameters: {} values, expected {len}", phi.len());
        }
        ctx.write(&self.cst, 8, phi)?;
        // fresh L-BFGS state: γ = 1, no pairs, no γ source
        let cl = self.cols;
        let mut row = vec![0.0; cl.stride];
        row[c::GAMMA] = 1.0;
        row[cl.gfrom] = -1.0;
        let init: Vec<f64> = (0..self.batch).flat_map(|_| row.iter().copied()).collect();
        ctx.write(&self.scal, 0, &init)?;
        ctx.submit_after_clear(&[&self.lx, &self.lsb, &self.dphi], &self.unroll)?;
        let mut r = ctx.read_many(&[&self.losses, &self.dphi, &self.scal])?;
        let scal = r.pop().expect("three buffers");
        let dphi_b = r.pop().expect("three buffers");
        let losses = r.pop().expect("three buffers");
        let (bt, kk) = (self.batch, self.steps);
        let mut meta_loss = 0.0;
        for b in 0..bt {
            for k in 1..=kk {
                meta_loss += self.weights[k - 1] * losses[b * (kk + 1) + k];
            }
        }
        let mut dphi = vec![0.0; len];
        for b in 0..bt {
            for (i, v) in dphi.iter_mut().enumerate() {
                *v += dphi_b[b * len + i];
            }
        }
        let gnorm = (0..bt)
            .map(|b| scal[b * cl.stride + c::G2].max(0.0).sqrt())
            .collect();
        Ok(PolicyStepResult {
            meta_loss: meta_loss / bt as f64,
            losses,
            dphi,
            gnorm,
        })
    }
}
