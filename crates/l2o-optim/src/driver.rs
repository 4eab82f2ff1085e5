//! The driver: device state of a batch of problems, the optimizer trait, and the loop that runs an optimizer on
//! a task and records a per-step trace on the device (read back once at the end, or at the early-stop checks).

use anyhow::{Result, bail};
use l2o_engine::shaders::STATUS;
use l2o_engine::{Context, DBuf, Dispatch, ScalarOut, cols, dot, status};
use l2o_tasks::Task;

/// Options of a run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Iterations (optimizer steps). The budget counts steps; [`Trace::evaluations`] counts function
    /// evaluations (not the one at θ₀).
    pub steps: usize,
    /// A problem converges (and is frozen) when ‖∇f‖ < eps_g. 0 disables.
    pub eps_g: f64,
    /// Read the status vector every this many steps and stop once every problem is frozen (0: never).
    pub check_every: usize,
    /// Every problem takes its step k in the same step of the run, and `progress(k)` is called after each.
    /// Without it an optimizer that can ([`Optimizer::run_free`]: the fused L-BFGS) lets every problem run at
    /// its own pace, its trajectory unchanged bit for bit, and reports progress less often.
    pub lockstep: bool,
}

impl RunOptions {
    /// Exactly `steps` steps: no convergence test, no early-stop checks (meta-training, validation, tuning).
    pub fn fixed(steps: usize) -> Self {
        Self {
            steps,
            eps_g: 0.0,
            check_every: 0,
            lockstep: false,
        }
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            steps: 100,
            eps_g: 0.0,
            check_every: 10,
            lockstep: false,
        }
    }
}

/// Device state of B problems: θ, ∇f(θ), the per-problem scalar table (columns [`cols`] first, then the
/// optimizer's own) and the status vector.
pub struct State {
    pub n: usize,
    pub batch: usize,
    pub theta: DBuf,
    pub grad: DBuf,
    pub scal: DBuf,
    pub stride: usize,
    pub status: DBuf,
}

impl State {
    pub fn out(&self, col: usize) -> ScalarOut<'_> {
        ScalarOut {
            buf: &self.scal,
            stride: self.stride,
            col,
        }
    }
}

/// An optimizer steps B problems on the device. `init` allocates its buffers and records its dispatches once;
/// `step` submits one iteration (and must leave F, G2 of `cols` updated for the new θ of running problems).
/// `Send`: a [`crate::stepper::Stepper`] runs it on a worker thread.
pub trait Optimizer: Send {
    fn name(&self) -> String;
    /// Scalar columns per problem the optimizer needs (≥ 4: the shared [`cols`]).
    fn scalar_columns(&self) -> usize {
        4
    }
    /// Initial values of the optimizer's own scalar columns (index ≥ 4), per problem.
    fn initial_scalars(&self) -> Vec<(usize, f64)> {
        vec![]
    }
    /// Whether `step` counts its own function evaluations in `cols::NFEV` (line searches do).
    fn counts_evaluations(&self) -> bool {
        false
    }
    fn init(&mut self, ctx: &Context, task: &dyn Task, st: &State) -> Result<()>;
    fn step(&mut self, ctx: &Context, task: &dyn Task, st: &State, k: usize) -> Result<()>;
    /// Run all `steps` iterations with every problem at its own pace (right after `init`), doing per problem
    /// what the lockstep loop's `step` + `update_status` + `record` do: count its iterations, freeze it on
    /// ‖∇f‖ < ε_g (`eps`, one value) or a non-finite f, and write its trace row k (`trace`, [rows][B][5], as
    /// `status.wgsl`) when it finishes iteration k, or when it stops during it. Rows after a problem stops are
    /// left unwritten (evaluations column 0); [`run`] fills them. Returns false, having done nothing, where the
    /// optimizer cannot (the default): [`run`] then steps in lockstep.
    #[allow(clippy::too_many_arguments)]
    fn run_free(
        &mut self,
        _ctx: &Context,
        _task: &dyn Task,
        _st: &State,
        _steps: usize,
        _eps: &DBuf,
        _trace: &DBuf,
        _progress: &mut dyn FnMut(usize),
    ) -> Result<bool> {
        Ok(false)
    }
    /// Whether a run a caller drives ([`crate::stepper::Stepper`]) can be paused and resumed, and how: the
    /// period P of the recorded steps (step k submits the same dispatches as step k − P, and a step's dispatch
    /// list never depends on values read back from the device) and every buffer of the optimizer whose content
    /// at a function evaluation is read after it (its state carried between steps, and what a step writes
    /// before its evaluation and reads after). A fresh optimizer brought to the same evaluation of step
    /// ((k − 1) mod P) + 1, its buffers (and the driver's [`State`]) overwritten with the saved contents, then
    /// continues bit for bit as the original. Called after `init`. None (the default): it cannot be paused.
    fn resumable(&self) -> Option<(usize, Vec<DBuf>)> {
        None
    }
}

/// Per-step record of a run, B values per row: row 0 is the starting point, row k after k steps.
#[derive(Clone, Debug)]
pub struct Trace {
    pub optimizer: String,
    pub batch: usize,
    pub f: Vec<Vec<f64>>,
    pub gnorm: Vec<Vec<f64>>,
    pub status: Vec<Vec<u32>>,
    /// Iterations taken by each problem after each step (\[step\]\[problem\]; a frozen problem stops counting).
    pub iterations: Vec<Vec<u64>>,
    /// Function evaluations taken by each problem after each step (\[step\]\[problem\]). Counting rule (every
    /// optimizer): the evaluation at θ₀, made before the first step, is not counted; every later evaluation is,
    /// a line search's trial points included.
    pub evaluations: Vec<Vec<u64>>,
    /// Function evaluations per problem at the end of the run (the same rule).
    pub final_evaluations: Vec<u64>,
    pub final_theta: Vec<f64>,
}

impl Trace {
    /// A trace of `batch` problems with no rows yet.
    pub fn empty(optimizer: String, batch: usize) -> Self {
        Self {
            optimizer,
            batch,
            f: vec![],
            gnorm: vec![],
            status: vec![],
            iterations: vec![],
            evaluations: vec![],
            final_evaluations: vec![],
            final_theta: vec![],
        }
    }
}

/// Count of problems per status code (index = code; a code no kernel writes is counted in the last slot).
pub fn status_counts(codes: &[u32]) -> [usize; status::COUNT] {
    let mut c = [0; status::COUNT];
    for &s in codes {
        c[(s as usize).min(status::COUNT - 1)] += 1;
    }
    c
}

/// Mean, median, first and third quartile of the finite values (and how many were not finite).
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    pub mean: f64,
    pub median: f64,
    pub q1: f64,
    pub q3: f64,
    pub min: f64,
    pub max: f64,
    pub non_finite: usize,
}

pub fn summarize(v: &[f64]) -> Summary {
    let mut f: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    let non_finite = v.len() - f.len();
    if f.is_empty() {
        return Summary {
            mean: f64::NAN,
            median: f64::NAN,
            q1: f64::NAN,
            q3: f64::NAN,
            min: f64::NAN,
            max: f64::NAN,
            non_finite,
        };
    }
    f.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| {
        let x = p * (f.len() - 1) as f64;
        let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
        f[lo] + (f[hi] - f[lo]) * (x - lo as f64)
    };
    Summary {
        mean: f.iter().sum::<f64>() / f.len() as f64,
        median: q(0.5),
        q1: q(0.25),
        q3: q(0.75),
        min: f[0],
        max: f[f.len() - 1],
        non_finite,
    }
}

impl Trace {
    /// The status of problem b after the last step.
    pub fn status_of(&self, b: usize) -> l2o_engine::status::Status {
        let code = self.status.last().map_or(0, |row| row[b]);
        l2o_engine::status::Status::from_code(code).unwrap_or(l2o_engine::status::Status::Running)
    }

    pub fn steps(&self) -> usize {
        self.f.len() - 1
    }
    pub fn final_status(&self) -> &[u32] {
        &self.status[self.steps()]
    }
    /// Count of problems per status code at the end.
    pub fn status_counts(&self) -> [usize; status::COUNT] {
        status_counts(self.final_status())
    }
    /// Iterations each problem took to converge (None if it did not).
    pub fn iterations_to_converge(&self) -> Vec<Option<u64>> {
        let last = self.steps();
        (0..self.batch)
            .map(|b| (self.status[last][b] == status::CONVERGED).then(|| self.iterations[last][b]))
            .collect()
    }
}

fn status_dispatch(
    ctx: &Context,
    st: &State,
    eps: &DBuf,
    trace: &DBuf,
    entry: &'static str,
    count: u32,
    row: usize,
) -> Result<Dispatch> {
    let params = ctx.params(&[st.batch as u32, st.stride as u32, count, row as u32]);
    ctx.dispatch(
        &STATUS,
        entry,
        &[&params, &eps.buf, &st.scal.buf, &st.status.buf, &trace.buf],
        [st.batch.div_ceil(64) as u32, 1, 1],
    )
}

/// The start of a run: [`Task::reset`], the [`State`] at the task's θ₀ with f(θ₀), ∇f(θ₀) and ‖∇f(θ₀)‖² evaluated,
/// the status set (against the tolerance in `eps`) and recorded in row 0 of `trace` (5 values per problem per row),
/// and the optimizer initialised. [`run`] goes on from here; so does [`crate::stepper::Stepper`].
pub fn start(
    ctx: &Context,
    task: &dyn Task,
    opt: &mut dyn Optimizer,
    eps: &DBuf,
    trace: &DBuf,
) -> Result<State> {
    let (n, batch) = (task.dim(), task.batch());
    task.reset(ctx)?;
    let stride = opt.scalar_columns();
    if stride < 4 {
        bail!(
            "optimizer {} declares {stride} scalar columns; at least 4 are needed",
            opt.name()
        );
    }
    let mut init = vec![0.0; batch * stride];
    for b in 0..batch {
        for &(c, v) in &opt.initial_scalars() {
            init[b * stride + c] = v;
        }
    }
    let st = State {
        n,
        batch,
        theta: ctx.upload("theta", &task.initial_point())?,
        grad: ctx.zeros("grad", batch * n)?,
        scal: ctx.upload("scalars", &init)?,
        stride,
        status: ctx.upload_u32("status", &vec![0; batch])?,
    };
    let mut d = task.loss_and_grad(ctx, st.theta.view(n), st.grad.view(n), st.out(cols::F))?;
    d.extend(dot(
        ctx,
        n,
        batch,
        st.grad.view(n),
        st.grad.view(n),
        st.out(cols::G2),
        None,
    )?);
    d.push(status_dispatch(
        ctx,
        &st,
        eps,
        trace,
        "update_status",
        0,
        0,
    )?);
    d.push(status_dispatch(ctx, &st, eps, trace, "record", 0, 0)?);
    ctx.submit(&d)?;
    opt.init(ctx, task, &st)?;
    Ok(st)
}

/// Run `opt` on `task` from the task's initial point (after [`Task::reset`], so repeated runs on one task see
/// the same evaluations); `progress(k)` is called after step k is submitted.
pub fn run(
    ctx: &Context,
    task: &dyn Task,
    opt: &mut dyn Optimizer,
    o: &RunOptions,
    progress: &mut dyn FnMut(usize),
) -> Result<Trace> {
    let batch = task.batch();
    let eps = ctx.upload("eps_g", &[o.eps_g])?;
    let trace = ctx.zeros("trace", (o.steps + 1) * batch * 5)?;
    let st = start(ctx, task, opt, &eps, &trace)?;
    let stride = st.stride;
    // count: bit 0 iterations, bit 1 evaluations (unless the optimizer counts its own).
    let count = if opt.counts_evaluations() { 1 } else { 3 };
    let mut done = o.steps;
    let free = !o.lockstep && opt.run_free(ctx, task, &st, o.steps, &eps, &trace, progress)?;
    for k in (1..=o.steps).filter(|_| !free) {
        opt.step(ctx, task, &st, k)?;
        let upd = status_dispatch(ctx, &st, &eps, &trace, "update_status", count, k)?;
        let rec = status_dispatch(ctx, &st, &eps, &trace, "record", 0, k)?;
        ctx.submit(&[upd, rec])?;
        progress(k);
        if o.check_every > 0 && k % o.check_every == 0 && k < o.steps {
            let s = ctx.read_u32(&st.status)?;
            if s.iter().all(|&x| x != status::RUNNING) {
                done = k;
                break;
            }
        }
    }
    let mut raw = ctx.read(&trace)?;
    if free {
        // a row a problem did not write (it had stopped: evaluations 0, as every written row k ≥ 1 counts at
        // least k) repeats its previous row, as the lockstep loop's `record` would have
        for k in 1..=o.steps {
            for b in 0..batch {
                let (at, prev) = ((k * batch + b) * 5, ((k - 1) * batch + b) * 5);
                if raw[at + 4] == 0.0 {
                    raw.copy_within(prev..prev + 5, at);
                }
            }
        }
    }
    let mut t = Trace::empty(opt.name(), batch);
    t.final_theta = ctx.read(&st.theta)?;
    for k in 0..=o.steps {
        let r = k.min(done); // after an early stop every problem is frozen: later rows repeat the last
        let row = |j: usize| {
            (0..batch)
                .map(|b| raw[(r * batch + b) * 5 + j])
                .collect::<Vec<f64>>()
        };
        t.f.push(row(0));
        t.gnorm
            .push(row(1).into_iter().map(|g2| g2.max(0.0).sqrt()).collect());
        t.status
            .push(row(2).into_iter().map(|s| s as u32).collect());
        // counts are small integers, exact in f32 and f64
        let count = |v: Vec<f64>| {
            v.into_iter()
                .map(|x| x.max(0.0) as u64)
                .collect::<Vec<u64>>()
        };
        t.iterations.push(count(row(3)));
        t.evaluations.push(count(row(4)));
    }
    let scal = ctx.read(&st.scal)?;
    t.final_evaluations = (0..batch)
        .map(|b| scal[b * stride + cols::NFEV].max(0.0) as u64)
        .collect();
    Ok(t)
}
