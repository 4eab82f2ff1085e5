//! A task evaluated on the host: the loss and gradient of B problems come from a closure over B × n host
//! arrays — a Rust function, or a Python (numpy, JAX, PyTorch) function through the `l2o` Python package.
//!
//! Under the frozen-gradient convention (seed 002 §2) meta-training needs nothing from the optimizee but f and
//! ∇f at the points the optimizer visits, so a [`HostTask`] can be optimized by every optimizer and
//! meta-trained on by every learned optimizer, like a built-in task.
//!
//! **How it runs.** [`Task::loss_and_grad`] records three steps: a kernel that gathers θ (any view) into a
//! contiguous B × n buffer, a host step ([`l2o_engine::Dispatch::host`]: read that buffer back, call the
//! closure, write f and ∇f to two upload buffers) and a kernel that scatters them into the caller's gradient
//! view and scalar column. **The price**, per evaluation: one device round trip (the readback waits for every
//! kernel before it) and one upload of (n + 1)·B numbers, plus the closure itself — where a built-in task's
//! evaluation is a few kernels inside a recorded list with no round trip at all (`l2o bench --host` measures
//! the difference).
//!
//! **Fresh problems per epoch.** A [`HostProblem`] with a [`Sampler`] draws a batch of problems from a seed:
//! `sample(seed)` returns θ₀ (B × n) and typically sets up the problem data that the closure reads (a design
//! matrix per problem, say). Meta-training keeps several batches alive at once (the epoch's training batch and
//! the validation set), so the sampler must be a pure function of its seed: before evaluating a batch other
//! than the one sampled last, the task calls `sample(seed)` again to put its data back (and checks that θ₀
//! came out the same).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use l2o_engine::{Context, DBuf, Dispatch, ScalarOut, View};

use crate::{TASKS, Task, TaskParams, check_dims, check_fits, check_views, grid};

/// f and ∇f of B problems: `fun(theta, f, grad)` reads θ (B × n, row-major) and writes f (B) and ∇f (B × n).
pub type HostFn = Arc<dyn Fn(&[f64], &mut [f64], &mut [f64]) -> Result<()> + Send + Sync>;

/// Draws a batch of problems: `sample(seed)` → θ₀ (B × n, row-major), setting up whatever data the
/// [`HostFn`] reads. Must be a pure function of the seed (see the module documentation).
pub type Sampler = Arc<dyn Fn(u64) -> Result<Vec<f64>> + Send + Sync>;

/// What a non-finite f or ∇f from the closure does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonFinite {
    /// Stop with an error naming the problem and the evaluation (the default: almost always a bug).
    Error,
    /// Hand it to the device: the driver marks that problem diverged and freezes it (a reported status).
    Diverge,
}

/// Counters of a problem's evaluations (shared by every task built from it).
#[derive(Debug, Default)]
pub struct HostStats {
    evaluations: AtomicU64,
    closure_ns: AtomicU64,
    total_ns: AtomicU64,
    resamples: AtomicU64,
}

impl HostStats {
    /// Host steps run (each evaluates all B problems).
    pub fn evaluations(&self) -> u64 {
        self.evaluations.load(Ordering::Relaxed)
    }
    /// Seconds spent in the closure.
    pub fn closure_seconds(&self) -> f64 {
        self.closure_ns.load(Ordering::Relaxed) as f64 * 1e-9
    }
    /// Seconds spent in host steps: the readback (waiting for the kernels before it), the closure, the upload.
    pub fn host_step_seconds(&self) -> f64 {
        self.total_ns.load(Ordering::Relaxed) as f64 * 1e-9
    }
    /// Times the sampler was called again to restore another batch's data.
    pub fn resamples(&self) -> u64 {
        self.resamples.load(Ordering::Relaxed)
    }
}

/// A family of problems evaluated on the host: its closure, dimension n, problems per batch B and, optionally,
/// a sampler of fresh batches. Cheap to clone (shared pointers); [`HostProblem::task`] makes the batches.
#[derive(Clone)]
pub struct HostProblem {
    name: String,
    dim: usize,
    batch: usize,
    fun: HostFn,
    sample: Option<Sampler>,
    non_finite: NonFinite,
    /// The seed of the batch whose data the closure sees now (the one sampled last).
    current: Arc<Mutex<Option<u64>>>,
    stats: Arc<HostStats>,
}

impl HostProblem {
    /// Problems of dimension `dim`, `batch` at a time, with loss and gradient from `fun`.
    pub fn new(name: &str, dim: usize, batch: usize, fun: HostFn) -> Result<Self> {
        check_dims(name, dim, batch)?;
        Ok(Self {
            name: name.to_string(),
            dim,
            batch,
            fun,
            sample: None,
            non_finite: NonFinite::Error,
            current: Arc::new(Mutex::new(None)),
            stats: Arc::new(HostStats::default()),
        })
    }

    /// Draw batches with `sample` ([`HostProblem::task`]).
    pub fn with_sampler(mut self, sample: Sampler) -> Self {
        self.sample = Some(sample);
        self
    }

    /// What a non-finite f or ∇f does ([`NonFinite::Error`] unless set).
    pub fn on_non_finite(mut self, p: NonFinite) -> Self {
        self.non_finite = p;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn dim(&self) -> usize {
        self.dim
    }
    pub fn batch(&self) -> usize {
        self.batch
    }
    pub fn has_sampler(&self) -> bool {
        self.sample.is_some()
    }
    /// Evaluation counters of every task of this problem.
    pub fn stats(&self) -> &HostStats {
        &self.stats
    }

    fn draw(&self, seed: u64) -> Result<Vec<f64>> {
        let Some(sample) = &self.sample else {
            bail!(
                "task {}: no sampler, so there is no batch of problems to draw from seed {seed}: give the task a \
                 sampler (sample(seed) -> θ₀ of B × n) or start from a point of your own",
                self.name
            );
        };
        let x0 = sample(seed).with_context(|| format!("task {}: sample({seed})", self.name))?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(seed);
        Ok(x0)
    }

    /// The batch of problems drawn from `seed` (needs a sampler).
    pub fn task(&self, ctx: &Context, seed: u64) -> Result<HostTask> {
        let x0 = self.draw(seed)?;
        HostTask::new(ctx, self.clone(), x0, Some(seed))
    }

    /// The problems as the closure defines them now, started from `x0` (B × n): no sampler involved.
    pub fn task_at(&self, ctx: &Context, x0: Vec<f64>) -> Result<HostTask> {
        HostTask::new(ctx, self.clone(), x0, None)
    }

    /// Put the data of the batch drawn from `seed` back if another batch was sampled since (the closure sees
    /// one batch's data at a time), checking that the sampler gives the same θ₀ again.
    fn restore(&self, seed: u64, x0: &[f64]) -> Result<()> {
        let now = *self.current.lock().unwrap_or_else(|p| p.into_inner());
        if now == Some(seed) {
            return Ok(());
        }
        self.stats.resamples.fetch_add(1, Ordering::Relaxed);
        let again = self.draw(seed)?;
        if again.len() != x0.len()
            || again
                .iter()
                .zip(x0)
                .any(|(a, b)| a.to_bits() != b.to_bits())
        {
            bail!(
                "task {}: sample({seed}) returned a different θ₀ the second time; the sampler must be a pure function \
                 of its seed (draw from a generator seeded with it, e.g. numpy.random.default_rng(seed))",
                self.name
            );
        }
        Ok(())
    }

    /// One evaluation of all B problems at θ: the closure, timed, checked for shape and (by policy) finiteness.
    fn evaluate(&self, theta: &[f64], evaluation: u64) -> Result<(Vec<f64>, Vec<f64>)> {
        let (n, b) = (self.dim, self.batch);
        let mut f = vec![0.0; b];
        let mut g = vec![0.0; b * n];
        let t0 = Instant::now();
        (self.fun)(theta, &mut f, &mut g)
            .with_context(|| format!("task {}: evaluation {evaluation}", self.name))?;
        self.stats
            .closure_ns
            .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if self.non_finite == NonFinite::Error {
            let bad_f = f.iter().position(|v| !v.is_finite());
            let bad_g = g.iter().position(|v| !v.is_finite());
            if let Some(k) = bad_f.map(|p| p * n).or(bad_g) {
                let p = k / n;
                let at = if theta[p * n..(p + 1) * n].iter().all(|x| x.is_finite()) {
                    "at a finite point"
                } else {
                    "at a non-finite point (the optimizer diverged before)"
                };
                bail!(
                    "task {}: the function returned a non-finite {} for problem {p} at evaluation {evaluation}, {at} \
                     (f = {}); fix the function, lower the step size, or let such problems be reported as diverged \
                     (NonFinite::Diverge; in Python on_nonfinite=\"diverge\")",
                    self.name,
                    if bad_f.is_some() { "loss" } else { "gradient" },
                    f[p]
                );
            }
        }
        Ok((f, g))
    }
}

/// One batch of a [`HostProblem`] as a [`Task`]: its θ₀ and the device buffers of its host steps.
pub struct HostTask {
    problem: HostProblem,
    seed: Option<u64>,
    theta0: Vec<f64>,
    /// θ gathered for the host (B × n), the host's ∇f (B × n) and f (B).
    x: DBuf,
    gh: DBuf,
    fh: DBuf,
    /// Bound to the unused slots.
    unused: DBuf,
    no_data: DBuf,
}

impl HostTask {
    fn new(ctx: &Context, problem: HostProblem, x0: Vec<f64>, seed: Option<u64>) -> Result<Self> {
        let (n, b) = (problem.dim, problem.batch);
        if x0.len() != n * b {
            bail!(
                "task {}: θ₀ has {} values, the task has {b} problems of dimension {n} ({} values)",
                problem.name,
                x0.len(),
                n * b
            );
        }
        if let Some(i) = x0.iter().position(|v| !v.is_finite()) {
            bail!(
                "task {}: θ₀ is not finite at problem {}, coordinate {} ({})",
                problem.name,
                i / n,
                i % n,
                x0[i]
            );
        }
        let what = format!(
            "host task {} (n = {n}, batch = {b}): θ (batch × n)",
            problem.name
        );
        check_fits(ctx, &what, &[b, n])?;
        Ok(Self {
            x: ctx.zeros("host theta", b * n)?,
            gh: ctx.zeros("host grad", b * n)?,
            fh: ctx.zeros("host f", b)?,
            unused: ctx.zeros("host unused", 1)?,
            no_data: ctx.zeros("host no data", 1)?,
            problem,
            seed,
            theta0: x0,
        })
    }

    /// The problem this batch belongs to.
    pub fn problem(&self) -> &HostProblem {
        &self.problem
    }

    /// The seed this batch was drawn from (None: a starting point of the caller's).
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }
}

impl Task for HostTask {
    fn name(&self) -> String {
        self.problem.name.clone()
    }
    fn dim(&self) -> usize {
        self.problem.dim
    }
    fn batch(&self) -> usize {
        self.problem.batch
    }

    fn loss_and_grad(
        &self,
        ctx: &Context,
        theta: View,
        grad: View,
        out: ScalarOut,
    ) -> Result<Vec<Dispatch>> {
        let (n, b) = (self.dim(), self.batch());
        check_views(&self.problem.name, &theta, &grad, n, b)?;
        out.check(b, 1)?;
        let nd = &self.no_data.buf;
        // one parameter block for both kernels (the gather reads only n, B and θ's layout)
        let p = ctx.params_of(&TaskParams::new(n, b, &theta, &grad, out.col, out.stride));
        let gather = ctx.dispatch(
            &TASKS,
            "host_gather",
            &[
                &p,
                theta.buffer(),
                &self.unused.buf,
                nd,
                nd,
                nd,
                &self.x.buf,
                &self.unused.buf,
            ],
            grid(n, b),
        )?;
        let scatter = ctx.dispatch(
            &TASKS,
            "host_scatter",
            &[
                &p,
                theta.buffer(),
                grad.buffer(),
                &self.gh.buf,
                &self.fh.buf,
                nd,
                &self.x.buf,
                &out.buf.buf,
            ],
            grid(n, b),
        )?;
        let (problem, seed, x0) = (self.problem.clone(), self.seed, self.theta0.clone());
        let (x, gh, fh) = (self.x.clone(), self.gh.clone(), self.fh.clone());
        let host = Dispatch::host(
            "host task",
            Arc::new(move |ctx: &Context| {
                let t0 = Instant::now();
                if let Some(s) = seed {
                    problem.restore(s, &x0)?;
                }
                let th = ctx.read(&x)?;
                let k = problem.stats.evaluations.fetch_add(1, Ordering::Relaxed);
                let (f, g) = problem.evaluate(&th, k)?;
                ctx.write(&gh, 0, &g)?;
                ctx.write(&fh, 0, &f)?;
                problem
                    .stats
                    .total_ns
                    .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                Ok(())
            }),
        );
        Ok(vec![gather, host, scatter])
    }

    fn initial_point(&self) -> Vec<f64> {
        self.theta0.clone()
    }

    /// The closure at θ for problem b (the other problems at θ₀): B problems are evaluated to get one.
    fn oracle_loss_grad(&self, b: usize, theta: &[f64]) -> (f64, Vec<f64>) {
        let n = self.dim();
        let mut x = self.theta0.clone();
        x[b * n..(b + 1) * n].copy_from_slice(theta);
        let r = self
            .seed
            .map_or(Ok(()), |s| self.problem.restore(s, &self.theta0))
            .and_then(|_| self.problem.evaluate(&x, u64::MAX));
        match r {
            Ok((f, g)) => (f[b], g[b * n..(b + 1) * n].to_vec()),
            Err(e) => {
                log::warn!("{e:#}");
                (f64::NAN, vec![f64::NAN; n])
            }
        }
    }
}
