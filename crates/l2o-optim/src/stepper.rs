//! Drive any [`Optimizer`] from a loop you own: `step(θ, ∇f(θ))` returns the next point at which the optimizer
//! wants the gradient — the next iterate for the learned optimizers and the first-order methods.
//!
//! The optimizers record whole steps as dispatch lists in which the task's evaluation sits in the middle, so
//! the caller's loop is turned inside out: the optimizer runs [`crate::driver::run`]'s loop on a worker thread
//! against a host task ([`l2o_tasks::HostTask`]) whose evaluation hands θ to the caller and waits for the
//! caller's gradient. Each `step` is one such hand-over: one device round trip, one upload of (n + 1)·B values
//! and one readback of θ. The optimizer's state (an LSTM's cells, a memory of pairs) stays on the device
//! between calls.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use anyhow::{Result, anyhow, bail};
use l2o_engine::Context;
use l2o_tasks::{HostProblem, NonFinite, Task};

use crate::driver::{Optimizer, start};

/// Makes a fresh optimizer (the stepper builds one per run: at the first step and after [`Stepper::reset`]).
pub type MakeOptimizer = Box<dyn Fn() -> Result<Box<dyn Optimizer>> + Send + Sync>;

/// What the caller sends back for the point the worker asked about: ∇f (B × n) and f (B).
type Reply = (Vec<f64>, Vec<f64>);

struct Worker {
    reply: SyncSender<Reply>,
    request: Receiver<Result<Vec<f64>>>,
    handle: Option<JoinHandle<()>>,
    /// The point whose gradient the next `step` must bring.
    pending: Vec<f64>,
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

    /// Forget the optimizer's state: the next step starts a new run from the θ it is given.
    pub fn reset(&mut self) {
        self.worker = None;
        self.steps = 0;
    }

    fn spawn(&self, theta0: &[f64]) -> Result<Worker> {
        let (n, b) = (self.n, self.batch);
        let (req_tx, req_rx) = sync_channel::<Result<Vec<f64>>>(1);
        let (rep_tx, rep_rx) = sync_channel::<Reply>(1);
        let to_caller = req_tx.clone();
        let rep_rx = std::sync::Mutex::new(rep_rx);
        let fun: l2o_tasks::HostFn =
            Arc::new(move |theta: &[f64], f: &mut [f64], g: &mut [f64]| {
                to_caller
                    .send(Ok(theta.to_vec()))
                    .map_err(|_| anyhow!("the stepper was closed"))?;
                let (grad, loss) = rep_rx
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .recv()
                    .map_err(|_| anyhow!("the stepper was closed"))?;
                g.copy_from_slice(&grad);
                f.copy_from_slice(&loss);
                Ok(())
            });
        let problem = HostProblem::new("stepper", n, b, fun)?.on_non_finite(NonFinite::Diverge);
        let task = problem.task_at(&self.ctx, theta0.to_vec())?;
        let (ctx, make) = (self.ctx.clone(), self.make.clone());
        let handle = std::thread::Builder::new()
            .name("l2o-stepper".into())
            .spawn(move || {
                let r = (|| -> Result<()> {
                    let mut opt = make()?;
                    let eps = ctx.upload("eps_g", &[0.0])?;
                    let trace = ctx.zeros("trace", b * 5)?;
                    let st = start(&ctx, &task, opt.as_mut(), &eps, &trace)?;
                    for k in 1.. {
                        opt.step(&ctx, &task as &dyn Task, &st, k)?;
                    }
                    Ok(())
                })();
                if let Err(e) = r {
                    // the caller is gone (closed) or must hear why the run stopped
                    let _ = req_tx.send(Err(e));
                }
            })?;
        let mut w = Worker {
            reply: rep_tx,
            request: req_rx,
            handle: Some(handle),
            pending: vec![],
        };
        w.pending = Self::next(&mut w)?;
        Ok(w)
    }

    fn next(w: &mut Worker) -> Result<Vec<f64>> {
        match w.request.recv() {
            Ok(r) => r,
            Err(_) => bail!("the stepper's optimizer stopped without saying why"),
        }
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
            self.worker = Some(self.spawn(theta)?);
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
        let reply = (grad.to_vec(), loss.map_or(vec![0.0; b], |l| l.to_vec()));
        if w.reply.send(reply).is_err() {
            let e = Self::next(w).err();
            self.worker = None;
            return Err(e.unwrap_or_else(|| anyhow!("the stepper's optimizer stopped")));
        }
        match Self::next(w) {
            Ok(x) => {
                w.pending = x.clone();
                self.steps += 1;
                Ok(x)
            }
            Err(e) => {
                self.worker = None;
                Err(e)
            }
        }
    }
}
