//! The Hilbert LSTM on the device: the forward sweep with its trajectory store, the reverse sweep and the
//! meta-gradient (crate::hlstm has the equations), and the trained optimizer as a driver [`Optimizer`].
//!
//! Every vector lives in one trajectory store per problem, `[B][S][n]` with S = 3(T+1) + 2(T+m) slots:
//! g_0..g_T, u_{−m}..u_{T−1} (s_i of step t is u_{t−i}; negative indices are the memory carried into the
//! unroll), y_{−m}..y_{T−1}, c_0..c_T, h_0..h_T. So the basis of step t, [g_t, u_{t−1..t−m}, y_{t−1..t−m}, c_t, h_t],
//! is a list of slots — no gathering copies — and the reverse sweep finds every vector it needs in place.
//! The adjoint store `[B][T+m+4][n]` holds λu_{−m}..λu_{T−1}, λc and λh (ping-pong); λθ has its own buffer.
//!
//! Step t, forward: Gram of the basis (`hilbert::dots`) → the cell (`hlstm.wgsl::cell_fwd`) → u_t, c_{t+1},
//! h_{t+1} in one `combine` → θ += u_t → the task's loss and gradient → g_{t+1} and y_t in one `combine`.
//! Reverse (t = T−1…0): λθ += (w_{t+1}/B)ℓ'(f_{t+1}) g_{t+1}; λu_t += λθ; the 3k cross products
//! ⟨λu_t, V_j⟩, ⟨λc_{t+1}, V_j⟩, ⟨λh_{t+1}, V_j⟩ (`dots`) → `cell_rev` (∂φ per problem, λG) → λu_{t−1..t−m},
//! λc_t, λh_t in one `combine`. An unroll is one submit and one readback (losses and ∂φ per problem, summed
//! on the host in a fixed order: deterministic).

use std::path::Path;

use anyhow::{Result, bail, ensure};
use l2o_engine::shaders::HLSTM;
use l2o_engine::{
    Coefs, Context, DBuf, Dispatch, Operand, Output, Pair, ScalarOut, Scalars, Stores, Term, View,
    cols, combine, dot, dots, gram_pairs, lincomb,
};
use l2o_optim::{Optimizer, State};
use l2o_tasks::Task;

use crate::hlstm::{HlstmConfig, HlstmTraining, Layout, MetaLoss};

/// WGSL constants of a configuration (the `hlstm` family is specialised per architecture), with 64 problems per
/// workgroup of the per-problem kernels.
pub fn defines(cfg: &HlstmConfig) -> String {
    defines_for(cfg, 64)
}

/// Problems per workgroup of the per-problem kernels on `ctx`: 8 on the software adapter, where one workgroup
/// runs on one core (B = 32 in workgroups of 64 left the second core idle: the cell kernels of `l2o bench
/// --hlstm` took 1.2–1.5× longer), 64 elsewhere.
pub fn problems_per_workgroup(ctx: &Context) -> usize {
    if ctx.is_software() { 8 } else { 64 }
}

/// [`defines`] with `wg` problems per workgroup (`HWG`).
pub fn defines_for(cfg: &HlstmConfig, wg: usize) -> String {
    let l = cfg.layout();
    format!(
        "const M: u32 = {}u; const K: u32 = {}u; const KK: u32 = {}u; const QH: u32 = {}u; const NF: u32 = {}u; \
         const NH: u32 = {}u; const KC: u32 = {}u; const NO: u32 = {}u; const CELL: u32 = {}u; const PL: u32 = {}u; \
         const RW: u32 = {}u; const NR: u32 = {}u; const HWG: u32 = {wg}u;",
        l.m,
        l.k,
        l.k * l.k,
        l.m * l.k,
        l.nf,
        l.hidden,
        l.kc,
        l.no,
        cfg.cell,
        l.len,
        l.k * l.k + 4,
        (l.m + 2) * (l.k + 3)
    )
}

/// Device buffers and dispatch builders for T steps of B problems of dimension n.
pub struct HlstmDevice {
    pub cfg: HlstmConfig,
    pub lay: Layout,
    pub n: usize,
    pub batch: usize,
    pub tsteps: usize,
    defines: String,
    /// Trajectory store \[B\]\[S\]\[n\].
    pub tr: DBuf,
    slots: usize,
    /// Adjoint store [B][S'][n] and λθ (training only).
    ad: Option<(DBuf, DBuf)>,
    aslots: usize,
    rec: DBuf,
    coef: DBuf,
    pub state: DBuf,
    pk: DBuf,
    rcoef: DBuf,
    pub dphi: DBuf,
    /// \[B\]\[2\][T+1]: f_t, then the loss weights.
    pub lrec: DBuf,
    phi: DBuf,
    cst: DBuf,
    /// Shared coefficient tables: the carry identity ((3+2m)²), then [0, 1, −1, 1] (g, y), then [1] (g_0).
    tables: DBuf,
}

impl HlstmDevice {
    /// Buffers for T = `tsteps` steps (`train`: with the adjoint store and the reverse-sweep buffers).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: &Context,
        cfg: &HlstmConfig,
        n: usize,
        batch: usize,
        tsteps: usize,
        weights: &[f64],
        loss: MetaLoss,
        train: bool,
    ) -> Result<Self> {
        cfg.validate()?;
        ensure!(
            n > 0 && batch > 0 && tsteps > 0,
            "HLSTM: n, batch and T must be positive"
        );
        ensure!(
            weights.len() == tsteps,
            "HLSTM: {} weights for T = {tsteps}",
            weights.len()
        );
        let lay = cfg.layout();
        let m = lay.m;
        let slots = 3 * (tsteps + 1) + 2 * (tsteps + m);
        let aslots = tsteps + m + 4;
        let tr = ctx
            .zeros("hlstm trajectory", batch * slots * n)
            .map_err(|e| {
                e.context(format!(
                    "the HLSTM trajectory of T = {tsteps} steps holds {slots} vectors per problem ({batch} × {slots} × \
                     {n} numbers); use a shorter unroll, fewer problems or a GPU with larger buffers"
                ))
            })?;
        let ad = if train {
            Some((
                ctx.zeros("hlstm adjoints", batch * aslots * n)?,
                ctx.zeros("hlstm λθ", batch * n)?,
            ))
        } else {
            None
        };
        let k = lay.k;
        let (floor, kind) = match loss {
            MetaLoss::Sum => (0.0, 0.0),
            MetaLoss::Log { floor } => (floor, 1.0),
        };
        let mut cst = vec![cfg.eps_c(ctx.precision()), kind, floor, 1.0 / batch as f64];
        cst.extend_from_slice(weights);
        let w = 3 + 2 * m;
        let mut tables = vec![0.0; w * w];
        for i in 0..w {
            tables[i * w + i] = 1.0;
        }
        tables.extend_from_slice(&[0.0, 1.0, -1.0, 1.0, 1.0]);
        Ok(Self {
            cfg: *cfg,
            lay,
            n,
            batch,
            tsteps,
            defines: defines_for(cfg, problems_per_workgroup(ctx)),
            tr,
            slots,
            ad,
            aslots,
            rec: ctx.zeros("hlstm records", batch * tsteps * (k * k + 4))?,
            coef: ctx.zeros("hlstm coefficients", batch * tsteps * 3 * k)?,
            state: ctx.zeros("hlstm state", batch * 4)?,
            pk: ctx.zeros("hlstm cross products", batch * 3 * k)?,
            rcoef: ctx.zeros("hlstm reverse coefficients", batch * (m + 2) * (k + 3))?,
            dphi: ctx.zeros("hlstm dphi", if train { batch * lay.len } else { 1 })?,
            lrec: ctx.zeros("hlstm losses", batch * 2 * (tsteps + 1))?,
            phi: ctx.zeros("hlstm phi", lay.len)?,
            cst: ctx.upload("hlstm constants", &cst)?,
            tables: ctx.upload("hlstm tables", &tables)?,
        })
    }

    pub fn set_phi(&self, ctx: &Context, phi: &[f64]) -> Result<()> {
        if phi.len() != self.lay.len {
            bail!(
                "φ has {} values, this HLSTM needs {}",
                phi.len(),
                self.lay.len
            );
        }
        ctx.write(&self.phi, 0, phi)
    }

    // slot offsets (elements of problem 0) in the trajectory store
    fn g(&self, t: usize) -> usize {
        t * self.n
    }
    fn u(&self, j: isize) -> usize {
        (self.tsteps + 1 + (j + self.lay.m as isize) as usize) * self.n
    }
    fn y(&self, j: isize) -> usize {
        (2 * self.tsteps + 1 + self.lay.m + (j + self.lay.m as isize) as usize) * self.n
    }
    fn c(&self, t: usize) -> usize {
        (3 * self.tsteps + 1 + 2 * self.lay.m + t) * self.n
    }
    fn h(&self, t: usize) -> usize {
        (4 * self.tsteps + 2 + 2 * self.lay.m + t) * self.n
    }
    // adjoint store
    fn lu(&self, j: isize) -> usize {
        (j + self.lay.m as isize) as usize * self.n
    }
    fn lc(&self, p: usize) -> usize {
        (self.tsteps + self.lay.m + p) * self.n
    }
    fn lh(&self, p: usize) -> usize {
        (self.tsteps + self.lay.m + 2 + p) * self.n
    }

    /// The basis of step t as trajectory operands.
    fn basis(&self, t: usize) -> Vec<Operand> {
        let m = self.lay.m as isize;
        let t = t as isize;
        let mut v = vec![Operand::x(self.g(t as usize))];
        v.extend((0..m).map(|i| Operand::x(self.u(t - 1 - i))));
        v.extend((0..m).map(|i| Operand::x(self.y(t - 1 - i))));
        v.push(Operand::x(self.c(t as usize)));
        v.push(Operand::x(self.h(t as usize)));
        v
    }

    fn tview(&self, off: usize) -> View<'_> {
        View {
            buf: &self.tr,
            offset: off,
            stride: self.slots * self.n,
        }
    }

    fn stores<'a>(&'a self, y: Option<(&'a DBuf, usize)>) -> Stores<'a> {
        Stores {
            x: &self.tr,
            x_stride: self.slots * self.n,
            y,
        }
    }

    fn kernel(&self, ctx: &Context, entry: &'static str, t: usize) -> Result<Dispatch> {
        let k = self.lay.k;
        let u = |x: usize| x as u32;
        let params = ctx.params(&[
            u(self.batch),
            u(t),
            u(self.tsteps),
            u(self.tsteps * (k * k + 4)),
            u(self.tsteps * 3 * k),
            u(2 * (self.tsteps + 1)),
            0,
            0,
        ]);
        ctx.dispatch_with(
            &HLSTM,
            entry,
            &self.defines,
            &[
                &params,
                &self.phi.buf,
                &self.cst.buf,
                &self.rec.buf,
                &self.coef.buf,
                &self.state.buf,
                &self.pk.buf,
                &self.rcoef.buf,
                &self.dphi.buf,
                &self.lrec.buf,
            ],
            [u(self.batch.div_ceil(problems_per_workgroup(ctx))), 1, 1],
        )
    }

    /// Where the task writes f(θ_t) in training: lrec\[b\]\[0\]\[t\].
    pub fn loss_out(&self, t: usize) -> ScalarOut<'_> {
        ScalarOut {
            buf: &self.lrec,
            stride: 2 * (self.tsteps + 1),
            col: t,
        }
    }

    /// g_0 ← `grad` (the gradient at the start of the unroll).
    pub fn begin(&self, ctx: &Context, grad: &DBuf) -> Result<Dispatch> {
        let w = 3 + 2 * self.lay.m;
        combine(
            ctx,
            self.n,
            self.batch,
            &self.stores(Some((grad, self.n))),
            &[Operand::y(0)],
            &[Output {
                op: Operand::x(self.g(0)),
                accumulate: false,
            }],
            Coefs {
                buf: &self.tables,
                off: w * w + 4,
                stride: 0,
            },
            None,
        )
    }

    /// Forward step t. `task_eval` evaluates the task at `theta` into `grad` (and f where the caller wants it);
    /// `status` freezes finished problems' θ (evaluation).
    pub fn forward_step(
        &self,
        ctx: &Context,
        t: usize,
        theta: &DBuf,
        grad: &DBuf,
        task_eval: Vec<Dispatch>,
        status: Option<&DBuf>,
    ) -> Result<Vec<Dispatch>> {
        let (n, bt, k) = (self.n, self.batch, self.lay.k);
        let basis = self.basis(t);
        let rec_out = ScalarOut {
            buf: &self.rec,
            stride: self.tsteps * (k * k + 4),
            col: t * (k * k + 4),
        };
        let mut d = dots(
            ctx,
            n,
            bt,
            &self.stores(None),
            &gram_pairs(&basis, 0),
            rec_out,
        )?;
        d.push(self.kernel(ctx, "cell_fwd", t)?);
        let outs = [self.u(t as isize), self.c(t + 1), self.h(t + 1)].map(|o| Output {
            op: Operand::x(o),
            accumulate: false,
        });
        d.push(combine(
            ctx,
            n,
            bt,
            &self.stores(None),
            &basis,
            &outs,
            Coefs {
                buf: &self.coef,
                off: t * 3 * k,
                stride: self.tsteps * 3 * k,
            },
            None,
        )?);
        d.push(lincomb(
            ctx,
            n,
            bt,
            theta.view(n),
            Some((1.0, None)),
            &[Term::new(self.tview(self.u(t as isize)), 1.0)],
            Scalars {
                scal: &self.lrec,
                stride: 2 * (self.tsteps + 1),
                status,
                mask_col: None,
            },
        )?);
        d.extend(task_eval);
        let w = 3 + 2 * self.lay.m;
        d.push(combine(
            ctx,
            n,
            bt,
            &self.stores(Some((grad, n))),
            &[Operand::x(self.g(t)), Operand::y(0)],
            &[
                Output {
                    op: Operand::x(self.g(t + 1)),
                    accumulate: false,
                },
                Output {
                    op: Operand::x(self.y(t as isize)),
                    accumulate: false,
                },
            ],
            Coefs {
                buf: &self.tables,
                off: w * w,
                stride: 0,
            },
            None,
        )?);
        Ok(d)
    }

    /// The per-problem loss weights of the unroll (after the forward sweep).
    pub fn loss_weights(&self, ctx: &Context) -> Result<Dispatch> {
        self.kernel(ctx, "loss_weights", 0)
    }

    /// Reverse step t (after `loss_weights`, with the adjoint store, λθ and dphi cleared before the sweep).
    /// `memory_grad = false` stops the meta-gradient at the memory: no adjoint flows into s_i, c, h.
    pub fn reverse_step(
        &self,
        ctx: &Context,
        t: usize,
        memory_grad: bool,
    ) -> Result<Vec<Dispatch>> {
        let Some((ad, lt)) = &self.ad else {
            bail!("this HLSTM was built for evaluation (no adjoint store)");
        };
        let (n, bt, k, m) = (self.n, self.batch, self.lay.k, self.lay.m);
        let ti = t as isize;
        let wcol = self.tsteps + 1 + t + 1;
        let lsc = Scalars {
            scal: &self.lrec,
            stride: 2 * (self.tsteps + 1),
            status: None,
            mask_col: None,
        };
        let aview = |off: usize| View {
            buf: ad,
            offset: off,
            stride: self.aslots * n,
        };
        let mut d = vec![
            lincomb(
                ctx,
                n,
                bt,
                lt.view(n),
                Some((1.0, None)),
                &[Term::scaled(self.tview(self.g(t + 1)), 1.0, wcol)],
                lsc,
            )?,
            lincomb(
                ctx,
                n,
                bt,
                aview(self.lu(ti)),
                Some((1.0, None)),
                &[Term::new(lt.view(n), 1.0)],
                lsc,
            )?,
        ];
        let st = self.stores(Some((ad, self.aslots * n)));
        let basis = self.basis(t);
        let (pn, pc) = ((t + 1) % 2, t % 2);
        let lams = [
            Operand::y(self.lu(ti)),
            Operand::y(self.lc(pn)),
            Operand::y(self.lh(pn)),
        ];
        let mut pairs = vec![];
        for (o, lam) in lams.iter().enumerate() {
            for (j, v) in basis.iter().enumerate() {
                pairs.push(Pair {
                    a: *lam,
                    b: *v,
                    col: o * k + j,
                    mirror: None,
                });
            }
        }
        d.extend(dots(
            ctx,
            n,
            bt,
            &st,
            &pairs,
            ScalarOut {
                buf: &self.pk,
                stride: 3 * k,
                col: 0,
            },
        )?);
        d.push(self.kernel(ctx, "cell_rev", t)?);
        if !memory_grad {
            return Ok(d);
        }
        let mut inputs = lams.to_vec();
        inputs.extend(basis);
        let mut outs: Vec<Output> = (0..m as isize)
            .map(|i| Output {
                op: Operand::y(self.lu(ti - 1 - i)),
                accumulate: true,
            })
            .collect();
        outs.push(Output {
            op: Operand::y(self.lc(pc)),
            accumulate: false,
        });
        outs.push(Output {
            op: Operand::y(self.lh(pc)),
            accumulate: false,
        });
        d.push(combine(
            ctx,
            n,
            bt,
            &st,
            &inputs,
            &outs,
            Coefs {
                buf: &self.rcoef,
                off: 0,
                stride: (m + 2) * (k + 3),
            },
            None,
        )?);
        Ok(d)
    }

    /// Carry the end of the unroll into slot 0 and the memory slots of the next one (g, c, h, the last m pairs).
    pub fn carry(&self, ctx: &Context) -> Result<Dispatch> {
        let (tt, m) = (self.tsteps, self.lay.m as isize);
        let ti = tt as isize;
        let mut ins = vec![self.g(tt), self.c(tt), self.h(tt)];
        let mut outs = vec![self.g(0), self.c(0), self.h(0)];
        for i in 0..m {
            ins.push(self.u(ti - 1 - i));
            outs.push(self.u(-1 - i));
        }
        for i in 0..m {
            ins.push(self.y(ti - 1 - i));
            outs.push(self.y(-1 - i));
        }
        let ins: Vec<Operand> = ins.into_iter().map(Operand::x).collect();
        let outs: Vec<Output> = outs
            .into_iter()
            .map(|o| Output {
                op: Operand::x(o),
                accumulate: false,
            })
            .collect();
        combine(
            ctx,
            self.n,
            self.batch,
            &self.stores(None),
            &ins,
            &outs,
            Coefs {
                buf: &self.tables,
                off: 0,
                stride: 0,
            },
            None,
        )
    }

    /// A fresh run: empty memory, c = h = 0, state (γ = 1, no pair, ν0 unset, f_start per problem).
    pub fn reset_state(&self, ctx: &Context, f_start: &[f64]) -> Result<()> {
        let mut s = vec![0.0; self.batch * 4];
        for b in 0..self.batch {
            s[b * 4] = 1.0;
            s[b * 4 + 3] = f_start[b];
        }
        ctx.write(&self.state, 0, &s)
    }
}

/// What one device unroll returns.
#[derive(Clone, Debug)]
pub struct HlstmUnrollResult {
    /// L = (1/B) Σ_b Σ_t w_t ℓ(f_b(θ_t)).
    pub meta_loss: f64,
    /// ∂L/∂φ (summed over problems).
    pub dphi: Vec<f64>,
    /// f_b(θ_t), \[B\]\[T+1\].
    pub losses: Vec<f64>,
    /// Problems left out of `meta_loss` and `dphi` because their loss or contribution was not finite (an
    /// iterate that diverged); `meta_loss` is NaN only when every problem diverged.
    pub diverged: usize,
}

/// Meta-training on the device: one unroll of T steps per call to [`HlstmTrainer::run`], carrying θ, the memory
/// and the cell state across unrolls of one run ([`HlstmTrainer::carry`]).
pub struct HlstmTrainer {
    pub dev: HlstmDevice,
    theta: DBuf,
    grad: DBuf,
    weights: Vec<f64>,
    loss: MetaLoss,
    memory_grad: bool,
    f_start: Vec<f64>,
    /// f(θ) at the start of the next unroll (the device records f_1..f_T only).
    f_now: Vec<f64>,
    unroll: Vec<Dispatch>,
    carry_d: Option<Dispatch>,
    /// Most problems of this run seen diverged in one unroll (warned about when it grows).
    diverged_seen: usize,
    warned_divergence: bool,
}

impl HlstmTrainer {
    pub fn new(
        ctx: &Context,
        cfg: &HlstmConfig,
        n: usize,
        batch: usize,
        weights: &[f64],
        training: &HlstmTraining,
    ) -> Result<Self> {
        let dev = HlstmDevice::new(
            ctx,
            cfg,
            n,
            batch,
            weights.len(),
            weights,
            training.loss,
            true,
        )?;
        Ok(Self {
            theta: ctx.zeros("theta", batch * n)?,
            grad: ctx.zeros("grad", batch * n)?,
            dev,
            weights: weights.to_vec(),
            loss: training.loss,
            memory_grad: training.memory_grad,
            f_start: vec![0.0; batch],
            f_now: vec![0.0; batch],
            unroll: vec![],
            carry_d: None,
            diverged_seen: 0,
            warned_divergence: false,
        })
    }

    /// Start a run on `task` from its initial point (records the unroll's dispatches for this task).
    pub fn bind(&mut self, ctx: &Context, task: &dyn Task) -> Result<()> {
        let theta0 = task.initial_point();
        self.bind_at(ctx, task, &theta0)
    }

    /// Start a run on `task` from θ0 (B·n).
    pub fn bind_at(&mut self, ctx: &Context, task: &dyn Task, theta0: &[f64]) -> Result<()> {
        let d = &self.dev;
        if task.dim() != d.n || task.batch() != d.batch {
            bail!(
                "task is {}×{} but the trainer was built for n = {}, B = {}",
                task.batch(),
                task.dim(),
                d.n,
                d.batch
            );
        }
        let n = d.n;
        let mut u = vec![];
        for t in 0..d.tsteps {
            let ev = task.loss_and_grad(
                ctx,
                self.theta.view(n),
                self.grad.view(n),
                d.loss_out(t + 1),
            )?;
            u.extend(d.forward_step(ctx, t, &self.theta, &self.grad, ev, None)?);
        }
        u.push(d.loss_weights(ctx)?);
        for t in (0..d.tsteps).rev() {
            u.extend(d.reverse_step(ctx, t, self.memory_grad)?);
        }
        self.unroll = u;
        self.carry_d = Some(d.carry(ctx)?);
        task.reset(ctx)?;
        ctx.write(&self.theta, 0, theta0)?;
        let mut first =
            task.loss_and_grad(ctx, self.theta.view(n), self.grad.view(n), d.loss_out(0))?;
        first.push(d.begin(ctx, &self.grad)?);
        ctx.submit_after_clear(&[&d.tr], &first)?;
        let l = ctx.read(&d.lrec)?;
        self.f_start = (0..d.batch).map(|b| l[b * 2 * (d.tsteps + 1)]).collect();
        self.f_now = self.f_start.clone();
        self.diverged_seen = 0;
        d.reset_state(ctx, &self.f_start)
    }

    /// Move the end of the last unroll to the start of the next (same run).
    pub fn carry(&self, ctx: &Context) -> Result<()> {
        match &self.carry_d {
            Some(c) => ctx.submit(std::slice::from_ref(c)),
            None => bail!("carry before bind"),
        }
    }

    /// One unroll from the current state with φ: forward sweep, reverse sweep, one readback.
    pub fn run(&mut self, ctx: &Context, phi: &[f64]) -> Result<HlstmUnrollResult> {
        let d = &self.dev;
        if self.unroll.is_empty() {
            bail!("run before bind");
        }
        d.set_phi(ctx, phi)?;
        let (ad, lt) = d.ad.as_ref().expect("trainer has an adjoint store");
        ctx.submit_after_clear(&[ad, lt, &d.dphi], &self.unroll)?;
        let r = ctx.read_many(&[&d.lrec, &d.dphi])?;
        let (tt, bt, pl) = (d.tsteps, d.batch, d.lay.len);
        let mut losses = vec![0.0; bt * (tt + 1)];
        let mut meta = 0.0;
        let mut dphi = vec![0.0; pl];
        let mut diverged = 0;
        let f_now = &mut self.f_now;
        for b in 0..bt {
            let mut lb = 0.0;
            for t in 0..=tt {
                let f = if t == 0 {
                    f_now[b]
                } else {
                    r[0][b * 2 * (tt + 1) + t]
                };
                losses[b * (tt + 1) + t] = f;
                if t > 0 {
                    lb += self.weights[t - 1] * self.loss.eval(f, self.f_start[b]).0 / bt as f64;
                }
            }
            f_now[b] = losses[b * (tt + 1) + tt];
            let db = &r[1][b * pl..(b + 1) * pl];
            // A problem whose iterate diverged (a non-finite loss or contribution) is left out of the
            // meta-loss and ∂φ of this unroll, so the other problems still train φ; it is counted.
            if !(lb.is_finite() && db.iter().all(|v| v.is_finite())) {
                diverged += 1;
                continue;
            }
            meta += lb;
            for (g, v) in dphi.iter_mut().zip(db) {
                *g += v;
            }
        }
        if diverged == bt {
            meta = f64::NAN;
        }
        if diverged > self.diverged_seen {
            let first = !self.warned_divergence;
            self.diverged_seen = diverged;
            self.warned_divergence = true;
            let msg = format!(
                "{diverged} of {bt} problems of this run diverged (non-finite loss): left out of the meta-gradient"
            );
            if first {
                log::warn!("{msg} (later runs' counts at RUST_LOG=debug)");
            } else {
                log::debug!("{msg}");
            }
        }
        Ok(HlstmUnrollResult {
            meta_loss: meta,
            dphi,
            losses,
            diverged,
        })
    }

    /// θ of every problem now (B·n).
    pub fn theta(&self, ctx: &Context) -> Result<Vec<f64>> {
        ctx.read(&self.theta)
    }
}

/// A trained (or initial) HLSTM as a driver optimizer: forward steps only, in windows of `window` steps whose
/// trajectory store is reused (the end of a window is carried to its start).
pub struct HlstmOptimizer {
    pub cfg: HlstmConfig,
    pub phi: Vec<f64>,
    window: usize,
    dev: Option<HlstmDevice>,
    steps: Vec<Vec<Dispatch>>,
    carry_d: Option<Dispatch>,
}

impl HlstmOptimizer {
    pub fn new(cfg: HlstmConfig, phi: Vec<f64>) -> Result<Self> {
        cfg.validate()?;
        if phi.len() != cfg.layout().len {
            bail!(
                "φ has {} values, this HLSTM needs {}",
                phi.len(),
                cfg.layout().len
            );
        }
        Ok(Self {
            cfg,
            phi,
            window: 8,
            dev: None,
            steps: vec![],
            carry_d: None,
        })
    }

    /// The best φ of a checkpoint written by `l2o train --optimizer hlstm`.
    pub fn from_checkpoint(path: &Path) -> Result<Self> {
        let st = crate::checkpoint::load(path)?;
        let Some(cfg) = st.hlstm else {
            bail!(
                "{} does not hold a Hilbert LSTM (it holds {})",
                path.display(),
                if st.policy.is_some() {
                    "an L-BFGS-π policy"
                } else {
                    "an L2L LSTM"
                }
            );
        };
        Self::new(cfg, st.best_phi)
    }
}

impl Optimizer for HlstmOptimizer {
    fn name(&self) -> String {
        format!("hlstm(cell {}, m={})", self.cfg.cell, self.cfg.m)
    }
    fn init(&mut self, ctx: &Context, task: &dyn Task, st: &State) -> Result<()> {
        let (n, bt) = (st.n, st.batch);
        // the longest window (≤ 8) whose trajectory store fits one binding
        let m = self.cfg.m;
        let lim = ctx.limits.max_storage_buffer_binding_size as usize / ctx.precision().size();
        let mut window = self.window;
        while window > 1 && bt * (3 * (window + 1) + 2 * (window + m)) * n > lim {
            window -= 1;
        }
        let w = vec![1.0; window];
        let dev = HlstmDevice::new(ctx, &self.cfg, n, bt, window, &w, MetaLoss::Sum, false)?;
        dev.set_phi(ctx, &self.phi)?;
        let mut steps = vec![];
        for t in 0..window {
            let mut ev =
                task.loss_and_grad(ctx, st.theta.view(n), st.grad.view(n), st.out(cols::F))?;
            ev.extend(dot(
                ctx,
                n,
                bt,
                st.grad.view(n),
                st.grad.view(n),
                st.out(cols::G2),
                None,
            )?);
            steps.push(dev.forward_step(ctx, t, &st.theta, &st.grad, ev, Some(&st.status))?);
        }
        // the driver evaluated f and ∇f at θ_0 already: g_0 ← ∇f
        ctx.submit_after_clear(&[&dev.tr], &[dev.begin(ctx, &st.grad)?])?;
        let scal = ctx.read(&st.scal)?;
        let f0: Vec<f64> = (0..bt).map(|b| scal[b * st.stride + cols::F]).collect();
        dev.reset_state(ctx, &f0)?;
        self.carry_d = Some(dev.carry(ctx)?);
        self.steps = steps;
        self.window = window;
        self.dev = Some(dev);
        Ok(())
    }
    fn step(&mut self, ctx: &Context, _task: &dyn Task, _st: &State, k: usize) -> Result<()> {
        let t = (k - 1) % self.window;
        if t == 0 && k > 1 {
            let c = self.carry_d.as_ref().expect("initialised");
            ctx.submit(std::slice::from_ref(c))?;
        }
        ctx.submit(&self.steps[t])
    }
    /// Steps repeat with the window (the carry's effect is in the trajectory store); the trajectory store, the
    /// cell state and the forward's work buffers.
    fn resumable(&self) -> Option<(usize, Vec<DBuf>)> {
        let d = self.dev.as_ref()?;
        let bufs = [&d.tr, &d.rec, &d.coef, &d.state, &d.pk, &d.rcoef, &d.lrec, &d.dphi];
        Some((self.window, bufs.into_iter().cloned().collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `hlstm` family validates with naga for both cells and several memories (both precisions, no device),
    /// and its default constants are those of the default architecture.
    #[test]
    fn hlstm_wgsl_validates_for_every_structure() {
        assert_eq!(HLSTM.default_defines, defines(&HlstmConfig::default()));
        for cell in [1, 2] {
            for (m, hidden) in [(1, 1), (3, 16), (5, 32), (12, 64)] {
                let cfg = HlstmConfig {
                    cell,
                    m,
                    hidden,
                    curvature_eps: None,
                };
                l2o_engine::shaders::validate_with(&HLSTM, &defines(&cfg))
                    .unwrap_or_else(|e| panic!("cell {cell} m {m}: {e}"));
            }
        }
    }

    /// The parameter counts stated in docs/hlstm.md and docs/studies/hlstm.md.
    #[test]
    fn parameter_counts() {
        let count = |cell, m, hidden| {
            HlstmConfig {
                cell,
                m,
                hidden,
                curvature_eps: None,
            }
            .layout()
            .len
        };
        assert_eq!(count(1, 5, 32), 4093);
        assert_eq!(count(2, 5, 32), 4606);
        assert_eq!(count(1, 3, 16), 1157);
        assert_eq!(count(2, 3, 16), 1350);
    }
}
