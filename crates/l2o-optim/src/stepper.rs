//! Drive any [`Optimizer`] from a loop you own: `step(θ, ∇f(θ))` returns the next point at which the optimizer
//! wants the gradient — the next iterate for the learned optimizers and the first-order methods.
//!
//! The optimizers record whole steps as dispatch lists in which the task's evaluation sits in the middle, so
//! the caller's loop is turned inside out: the optimizer runs [`crate::driver::run`]'s loop on a worker thread
//! against a host task ([`l2o_tasks::HostTask`]) whose evaluation hands θ to the caller and waits for the
//! caller's gradient. Each `step` is one such hand-over: one device round trip, one upload of (n + 1)·B values
//! and one readback of θ. The optimizer's state (an LSTM's cells, a memory of pairs) stays on the device
//! between calls.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Result, anyhow, bail};
use l2o_engine::{Context, DBuf};
use l2o_tasks::{HostProblem, NonFinite, Task};

use crate::driver::{Optimizer, start};

/// Makes a fresh optimizer (the stepper builds one per run: at the first step and after [`Stepper::reset`]).
pub type MakeOptimizer = Box<dyn Fn() -> Result<Box<dyn Optimizer>> + Send + Sync>;

/// What the caller sends the worker, which waits inside a function evaluation.
enum ToWorker {
    /// ∇f (B × n) and f (B) at the point the worker asked about.
    Reply(Vec<f64>, Vec<f64>),
    /// Read the optimizer's state (the evaluation goes on waiting).
    Snapshot,
}

/// What the worker sends the caller.
enum ToCaller {
    /// The next point whose gradient it needs.
    Point(Vec<f64>),
    /// The bytes of its state buffers (see [`Optimizer::resumable`]).
    State(Vec<Vec<u8>>),
}

/// A paused run of a [`Stepper`]: where the optimizer stood (step and evaluation), the point it waits at, and
/// its state buffers' bytes in the device's encoding. [`Stepper::resume`] continues it bit for bit.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The optimizer's name ([`Optimizer::name`]); resuming under another optimizer is refused.
    pub optimizer: String,
    /// "f32" or "f64": the buffers' encoding.
    pub precision: String,
    pub n: usize,
    pub batch: usize,
    /// Calls of [`Stepper::step`] so far.
    pub steps: u64,
    /// The optimizer's step (k ≥ 1) and the evaluation within it (0-based) the run waits at.
    pub step: u64,
    pub evaluation: u64,
    /// The point the next [`Stepper::step`] brings the gradient of (B × n).
    pub pending: Vec<f64>,
    /// The driver's state (θ, ∇f, scalars, status), then the optimizer's buffers, as bytes.
    pub buffers: Vec<Vec<u8>>,
}

/// Where the worker stands: its step k (0 while starting) and the evaluations begun in that step.
#[derive(Default)]
struct Position {
    step: u64,
    evaluation: u64,
}

/// How a resumed worker reaches the snapshot's evaluation: the optimizer's period (None until it is
/// initialised: the start's evaluation is answered on the way) and the snapshot to write there.
struct Replay {
    period: Option<u64>,
    snapshot: Snapshot,
}

impl Replay {
    /// The evaluation to stop at: the snapshot's, in a step congruent to its step mod the period, at most a
    /// period in.
    fn target(&self) -> Option<(u64, u64)> {
        let p = self.period?;
        Some(((self.snapshot.step - 1) % p + 1, self.snapshot.evaluation))
    }
}

/// The driver's state and the optimizer's buffers, set once the optimizer is initialised (Err: its name, when
/// it cannot be paused).
type StateBuffers = Option<Result<Vec<DBuf>, String>>;

/// What the caller and the worker share.
#[derive(Default)]
struct Shared {
    position: Mutex<Position>,
    buffers: Mutex<StateBuffers>,
    replay: Mutex<Option<Replay>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// The worker's loop: start the run, publish the state buffers (and, resuming, the step to replay to), then
    /// step until the caller goes.
    fn run(&self, ctx: &Context, mut opt: Box<dyn Optimizer>, task: &dyn Task) -> Result<()> {
        let b = task.batch();
        let eps = ctx.upload("eps_g", &[0.0])?;
        let trace = ctx.zeros("trace", b * 5)?;
        let st = start(ctx, task, opt.as_mut(), &eps, &trace)?;
        let period = opt.resumable().map(|(p, v)| {
            let mut all = vec![st.theta.clone(), st.grad.clone(), st.scal.clone(), st.status.clone()];
            all.extend(v);
            (p.max(1) as u64, all)
        });
        if let Some(rr) = lock(&self.replay).as_mut() {
            let Some((p, _)) = &period else {
                bail!("resume: {} cannot be paused", opt.name());
            };
            rr.period = Some(*p);
        }
        *lock(&self.buffers) = Some(match period {
            Some((_, all)) => Ok(all),
            None => Err(opt.name()),
        });
        loop {
            // the step after the last (a resumed run's replayed step takes the saved step's number when it
            // reaches the saved evaluation)
            let k = {
                let mut p = lock(&self.position);
                p.step += 1;
                p.evaluation = 0;
                p.step
            };
            opt.step(ctx, task, &st, k as usize)?;
        }
    }

    /// Count an evaluation at θ. Returns the point to hand the caller; None when it was answered here (with
    /// zeros, on a resumed run's way to the snapshot's evaluation, where the saved buffers are written in and
    /// the snapshot's point is handed over instead).
    fn begin_evaluation(&self, ctx: &Context, theta: &[f64], f: &mut [f64], g: &mut [f64]) -> Result<Option<Vec<f64>>> {
        let at = {
            let mut p = lock(&self.position);
            p.evaluation += 1;
            (p.step, p.evaluation - 1)
        };
        let mut r = lock(&self.replay);
        let Some(rr) = r.as_ref() else {
            return Ok(Some(theta.to_vec()));
        };
        let target = rr.target();
        if let Some((step, evaluation)) = target.filter(|t| at.0 > t.0) {
            bail!("resume: the optimizer passed step {step} without reaching the snapshot's evaluation {evaluation}");
        }
        if target != Some(at) {
            // any finite answer: everything it leads to is overwritten at the snapshot's evaluation
            f.fill(0.0);
            g.fill(0.0);
            return Ok(None);
        }
        let rr = r.take().expect("checked");
        let guard = lock(&self.buffers);
        let Some(Ok(list)) = guard.as_ref() else {
            bail!("resume: the optimizer cannot be paused");
        };
        if list.len() != rr.snapshot.buffers.len() {
            bail!(
                "resume: the snapshot has {} buffers, the optimizer {}",
                rr.snapshot.buffers.len(),
                list.len()
            );
        }
        for (d, bytes) in list.iter().zip(&rr.snapshot.buffers) {
            ctx.write_bytes(d, bytes)?;
        }
        lock(&self.position).step = rr.snapshot.step;
        Ok(Some(rr.snapshot.pending))
    }

    /// The state buffers' bytes (while the worker waits in an evaluation: nothing in flight).
    fn read_state(&self, ctx: &Context) -> Result<Vec<Vec<u8>>> {
        match lock(&self.buffers).as_ref() {
            Some(Ok(list)) => ctx.read_bytes(&list.iter().collect::<Vec<_>>()),
            Some(Err(name)) => Err(anyhow!(
                "{name} cannot be paused: its state cannot be saved (only optimizers whose steps are fixed \
                 dispatch lists can; start it again from the parameters)"
            )),
            None => Err(anyhow!("snapshot: the optimizer is not initialised yet")),
        }
    }
}

struct Worker {
    reply: SyncSender<ToWorker>,
    request: Receiver<Result<ToCaller>>,
    handle: Option<JoinHandle<()>>,
    /// The point whose gradient the next `step` must bring.
    pending: Vec<f64>,
    shared: Arc<Shared>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // closing both channels makes the worker's next evaluation (or its last message) fail, which ends its loop
        self.reply = sync_channel(0).0;
        self.request = sync_channel(0).1;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Steps B problems of n parameters with an optimizer, the caller computing the gradients.
pub struct Stepper {
    ctx: Arc<Context>,
    make: Arc<MakeOptimizer>,
    n: usize,
    batch: usize,
    name: String,
    worker: Option<Worker>,
    steps: u64,
}

impl Stepper {
    /// A stepper for `batch` problems of dimension n with optimizers from `make`.
    pub fn new(ctx: Arc<Context>, make: MakeOptimizer, n: usize, batch: usize) -> Result<Self> {
        l2o_tasks::check_dims("stepper", n, batch)?;
        let name = make()?.name();
        Ok(Self {
            ctx,
            make: Arc::new(make),
            n,
            batch,
            name,
            worker: None,
            steps: 0,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn dim(&self) -> usize {
        self.n
    }
    pub fn batch(&self) -> usize {
        self.batch
    }
    /// Steps taken since the start (or the last reset).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Where the run waits (None before the first step): the optimizer's step k ≥ 1 and the evaluation within
    /// it (0-based) whose gradient the next `step` brings. A line search's trial points are evaluations 1, 2, …
    /// of one step; a new k means step k − 1 ended at the point evaluated last.
    pub fn position(&self) -> Option<(u64, u64)> {
        let p = lock(&self.worker.as_ref()?.shared.position);
        Some((p.step, p.evaluation.saturating_sub(1)))
    }

    /// The point whose gradient the next `step` brings (None before the first step).
    pub fn pending(&self) -> Option<&[f64]> {
        self.worker.as_ref().map(|w| w.pending.as_slice())
    }

    /// Forget the optimizer's state: the next step starts a new run from the θ it is given.
    pub fn reset(&mut self) {
        self.worker = None;
        self.steps = 0;
    }

    /// The paused run: None before the first step (a fresh run). Fails for an optimizer that cannot be paused
    /// ([`Optimizer::resumable`]).
    pub fn snapshot(&mut self) -> Result<Option<Snapshot>> {
        if self.worker.is_none() {
            return Ok(None);
        }
        let ToCaller::State(buffers) = self.exchange(ToWorker::Snapshot)? else {
            self.worker = None;
            bail!("snapshot: the stepper's worker answered out of turn");
        };
        let w = self.worker.as_ref().expect("it answered");
        let pos = lock(&w.shared.position);
        Ok(Some(Snapshot {
            optimizer: self.name.clone(),
            precision: self.ctx.precision().to_string(),
            n: self.n,
            batch: self.batch,
            steps: self.steps,
            step: pos.step,
            // the evaluation it waits in (the counter counts it already)
            evaluation: pos.evaluation.saturating_sub(1),
            pending: w.pending.clone(),
            buffers,
        }))
    }

    /// A stepper that goes on from `snap` (taken by [`Stepper::snapshot`] from a stepper of the same optimizer,
    /// on an adapter of the same precision) exactly as the original would have: its next `step` takes the
    /// gradient at `snap.pending`. The new optimizer is brought to the same evaluation of a step congruent to
    /// the saved one (at most its period of steps, the evaluations answered with zeros), then given the saved
    /// buffers.
    pub fn resume(ctx: Arc<Context>, make: MakeOptimizer, snap: Snapshot) -> Result<Self> {
        let mut s = Self::new(ctx, make, snap.n, snap.batch)?;
        if snap.optimizer != s.name {
            bail!(
                "resume: the snapshot was taken from {}, this stepper runs {}",
                snap.optimizer,
                s.name
            );
        }
        let here = s.ctx.precision().to_string();
        if snap.precision != here {
            bail!(
                "resume: the snapshot holds {} buffers, this adapter computes in {here}; resume it with precision \
                 {}",
                snap.precision,
                snap.precision
            );
        }
        if snap.pending.len() != snap.n * snap.batch || snap.step == 0 {
            bail!("resume: the snapshot is inconsistent (its point or its step), it cannot be resumed");
        }
        let theta0 = snap.pending.clone();
        s.steps = snap.steps;
        s.worker = Some(s.spawn(&theta0, Some(snap))?);
        Ok(s)
    }

    fn spawn(&self, theta0: &[f64], resume: Option<Snapshot>) -> Result<Worker> {
        let (n, b) = (self.n, self.batch);
        let (req_tx, req_rx) = sync_channel::<Result<ToCaller>>(1);
        let (rep_tx, rep_rx) = sync_channel::<ToWorker>(1);
        let shared = Arc::new(Shared::default());
        if let Some(snap) = resume {
            *lock(&shared.replay) = Some(Replay {
                period: None,
                snapshot: snap,
            });
        }
        let (sh, ctx_f, to_caller, rep_rx) = (shared.clone(), self.ctx.clone(), req_tx.clone(), Mutex::new(rep_rx));
        let fun: l2o_tasks::HostFn =
            Arc::new(move |theta: &[f64], f: &mut [f64], g: &mut [f64]| {
                let Some(point) = sh.begin_evaluation(&ctx_f, theta, f, g)? else {
                    return Ok(());
                };
                let closed = || anyhow!("the stepper was closed");
                to_caller.send(Ok(ToCaller::Point(point))).map_err(|_| closed())?;
                loop {
                    match lock(&rep_rx).recv().map_err(|_| closed())? {
                        ToWorker::Reply(grad, loss) => {
                            g.copy_from_slice(&grad);
                            f.copy_from_slice(&loss);
                            return Ok(());
                        }
                        ToWorker::Snapshot => {
                            let state = sh.read_state(&ctx_f).map(ToCaller::State);
                            to_caller.send(state).map_err(|_| closed())?;
                        }
                    }
                }
            });
        let problem = HostProblem::new("stepper", n, b, fun)?.on_non_finite(NonFinite::Diverge);
        let task = problem.task_at(&self.ctx, theta0.to_vec())?;
        let (ctx, make, sh) = (self.ctx.clone(), self.make.clone(), shared.clone());
        let handle = std::thread::Builder::new()
            .name("l2o-stepper".into())
            .spawn(move || {
                if let Err(e) = make().and_then(|opt| sh.run(&ctx, opt, &task)) {
                    // the caller is gone (closed) or must hear why the run stopped
                    let _ = req_tx.send(Err(e));
                }
            })?;
        let mut w = Worker {
            reply: rep_tx,
            request: req_rx,
            handle: Some(handle),
            pending: vec![],
            shared,
        };
        w.pending = Self::next(&w)?;
        Ok(w)
    }

    /// The worker's next message (its error when it stopped).
    fn receive(w: &Worker) -> Result<ToCaller> {
        match w.request.recv() {
            Ok(r) => r,
            Err(_) => bail!("the stepper's optimizer stopped without saying why"),
        }
    }

    /// The next point the worker asks about.
    fn next(w: &Worker) -> Result<Vec<f64>> {
        match Self::receive(w)? {
            ToCaller::Point(x) => Ok(x),
            ToCaller::State(_) => bail!("the stepper's worker answered out of turn"),
        }
    }

    /// Send the running worker `msg` and take its answer; a worker that stopped is dropped, with its reason.
    fn exchange(&mut self, msg: ToWorker) -> Result<ToCaller> {
        let w = self.worker.as_ref().expect("a running worker");
        let answer = match w.reply.send(msg) {
            Ok(()) => Self::receive(w),
            // it stopped before: its last message says why
            Err(_) => Self::receive(w).and_then(|_| Err(anyhow!("the stepper's optimizer stopped"))),
        };
        if answer.is_err() {
            self.worker = None;
        }
        answer
    }

    /// One step: `theta` (B × n) must be the point the previous step returned (or any point at the first step
    /// and after [`Stepper::reset`]); `grad` is ∇f there and `loss` f (the Hilbert LSTM reads it; None: 0).
    /// Returns the next point.
    pub fn step(&mut self, theta: &[f64], grad: &[f64], loss: Option<&[f64]>) -> Result<Vec<f64>> {
        let (n, b) = (self.n, self.batch);
        if theta.len() != n * b || grad.len() != n * b {
            bail!(
                "step: θ has {} and the gradient {} values; this optimizer steps {b} × {n} = {} parameters",
                theta.len(),
                grad.len(),
                n * b
            );
        }
        if let Some(l) = loss.filter(|l| l.len() != b) {
            bail!("step: {} loss values for {b} problems", l.len());
        }
        if let Some(i) = grad.iter().position(|g| !g.is_finite()) {
            bail!(
                "step: the gradient is not finite at index {i} ({})",
                grad[i]
            );
        }
        if self.worker.is_none() {
            self.worker = Some(self.spawn(theta, None)?);
        }
        let p = self.ctx.precision();
        let w = self.worker.as_mut().expect("spawned");
        let as_device = p.decode(&p.encode(theta));
        if as_device
            .iter()
            .zip(&w.pending)
            .any(|(a, b)| a.to_bits() != b.to_bits())
        {
            bail!(
                "step: θ is not the point the previous step returned; the optimizer's state belongs to that \
                 trajectory — pass back what step returned, or call reset() to start again from a new θ"
            );
        }
        let reply = ToWorker::Reply(grad.to_vec(), loss.map_or(vec![0.0; b], |l| l.to_vec()));
        let ToCaller::Point(x) = self.exchange(reply)? else {
            self.worker = None;
            bail!("the stepper's worker answered out of turn");
        };
        self.worker.as_mut().expect("it answered").pending = x.clone();
        self.steps += 1;
        Ok(x)
    }
}
