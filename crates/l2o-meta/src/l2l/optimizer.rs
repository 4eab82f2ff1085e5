//! Using a trained LSTM optimizer: as an [`Optimizer`] of the driver (evaluation against the baselines), and as
//! a stepper for a user's own parameters and gradients (host slices or the user's wgpu buffers).

use std::path::Path;

use anyhow::{Result, bail};
use l2o_engine::{Context, DBuf, Dispatch, cols, dot};
use l2o_optim::{Optimizer, State};
use l2o_tasks::Task;

use crate::l2l::LstmConfig;
use crate::l2l::device::LstmBuffers;

/// Refuse a checkpoint that holds another learned optimizer, naming the loader to use.
fn ensure_lstm(s: &crate::state::TrainState, path: &Path) -> Result<()> {
    if s.policy.is_some() {
        bail!(
            "{} holds an L-BFGS-π policy, not an LSTM (load it with l2o_meta::policy::train::policy_optimizer or \
             l2o_meta::load_optimizer)",
            path.display()
        );
    }
    if s.hlstm.is_some() {
        bail!(
            "{} holds a Hilbert LSTM, not an L2L LSTM (load it with l2o_meta::hlstm::device::HlstmOptimizer or \
             l2o_meta::load_optimizer)",
            path.display()
        );
    }
    Ok(())
}

/// The LSTM optimizer in inference mode: two state slots used alternately, no trajectory.
pub struct LstmOptimizer {
    pub cfg: LstmConfig,
    pub phi: Vec<f64>,
    bufs: Option<LstmBuffers>,
    steps: [Vec<Dispatch>; 2],
}

impl LstmOptimizer {
    pub fn new(cfg: LstmConfig, phi: Vec<f64>) -> Result<Self> {
        cfg.validate()?;
        if phi.len() != cfg.layout().len {
            bail!(
                "φ has {} values but hidden = {} needs {}",
                phi.len(),
                cfg.hidden,
                cfg.layout().len
            );
        }
        Ok(Self {
            cfg,
            phi,
            bufs: None,
            steps: [vec![], vec![]],
        })
    }

    /// The best φ of a training checkpoint.
    pub fn from_checkpoint(path: &Path) -> Result<Self> {
        let s = crate::checkpoint::load(path)?;
        ensure_lstm(&s, path)?;
        Self::new(s.lstm, s.best_phi)
    }
}

impl Optimizer for LstmOptimizer {
    fn name(&self) -> String {
        format!("lstm(H={})", self.cfg.hidden)
    }
    fn init(&mut self, ctx: &Context, task: &dyn Task, st: &State) -> Result<()> {
        let bufs = LstmBuffers::new(ctx, &self.cfg, st.n, st.batch, 1, &[1.0], false)?;
        bufs.set_phi(ctx, &self.phi)?;
        bufs.set_state(ctx, None)?;
        let n = st.n;
        let mut tail =
            task.loss_and_grad(ctx, st.theta.view(n), st.grad.view(n), st.out(cols::F))?;
        tail.extend(dot(
            ctx,
            n,
            st.batch,
            st.grad.view(n),
            st.grad.view(n),
            st.out(cols::G2),
            None,
        )?);
        for s in 0..2 {
            let mut d =
                vec![bufs.forward(ctx, &st.theta, &st.grad, &st.status, 0, (s, 1 - s), false)?];
            d.extend(tail.iter().cloned());
            self.steps[s] = d;
        }
        self.bufs = Some(bufs);
        Ok(())
    }
    fn step(&mut self, ctx: &Context, _task: &dyn Task, _st: &State, k: usize) -> Result<()> {
        ctx.submit(&self.steps[(k - 1) % 2])
    }
    /// Steps alternate the two state slots (period 2); the cells of both and the forward's work buffers.
    fn resumable(&self) -> Option<(usize, Vec<DBuf>)> {
        let b = self.bufs.as_ref()?;
        let bufs = [&b.states, &b.cst, &b.xs, &b.gs, &b.dz, &b.partial, &b.dphi, &b.carry];
        Some((2, bufs.into_iter().cloned().collect()))
    }
}

/// Steps a user's own parameters with a trained LSTM optimizer: θ ← θ + s·LSTM(∇f(θ)), keeping the per-coordinate
/// LSTM state between calls. The caller computes the gradients.
pub struct LstmStepper {
    bufs: LstmBuffers,
    status: DBuf,
    theta: DBuf,
    grad: DBuf,
    slot: usize,
    /// Dispatches bound to the last pair of user buffers (by id), per slot.
    bound: Option<((u64, u64), [Dispatch; 2])>,
}

impl LstmStepper {
    /// A stepper for `batch` problems of n parameters each (B·n coordinates).
    pub fn new(
        ctx: &Context,
        cfg: &LstmConfig,
        phi: &[f64],
        n: usize,
        batch: usize,
    ) -> Result<Self> {
        let bufs = LstmBuffers::new(ctx, cfg, n, batch, 1, &[1.0], false)?;
        bufs.set_phi(ctx, phi)?;
        bufs.set_state(ctx, None)?;
        Ok(Self {
            status: ctx.upload_u32("status", &vec![0; batch])?,
            theta: ctx.zeros("theta", n * batch)?,
            grad: ctx.zeros("grad", n * batch)?,
            bufs,
            slot: 0,
            bound: None,
        })
    }

    /// Load the best φ of a checkpoint.
    pub fn from_checkpoint(ctx: &Context, path: &Path, n: usize) -> Result<Self> {
        let s = crate::checkpoint::load(path)?;
        ensure_lstm(&s, path)?;
        Self::new(ctx, &s.lstm, &s.best_phi, n, 1)
    }

    /// Forget the LSTM state (start a new optimization).
    pub fn reset(&mut self, ctx: &Context) -> Result<()> {
        self.slot = 0;
        self.bufs.set_state(ctx, None)
    }

    fn len(&self) -> usize {
        self.bufs.n * self.bufs.batch
    }

    /// One step on host slices: θ (updated in place) and the gradient at θ. One upload and one readback.
    pub fn step_host(&mut self, ctx: &Context, theta: &mut [f64], grad: &[f64]) -> Result<()> {
        if theta.len() != self.len() || grad.len() != self.len() {
            bail!(
                "step_host: θ has {} and the gradient {} values, the stepper was built for {}",
                theta.len(),
                grad.len(),
                self.len()
            );
        }
        ctx.write(&self.theta, 0, theta)?;
        ctx.write(&self.grad, 0, grad)?;
        let d = self.bufs.forward(
            ctx,
            &self.theta,
            &self.grad,
            &self.status,
            0,
            (self.slot, 1 - self.slot),
            false,
        )?;
        ctx.submit(&[d])?;
        self.slot = 1 - self.slot;
        let out = ctx.read(&self.theta)?;
        theta.copy_from_slice(&out);
        Ok(())
    }

    /// One step on the caller's device buffers (wrap a `wgpu::Buffer` with [`Context::wrap`]): θ is updated in
    /// place on the device, nothing is read back. Dispatches are cached for the last pair of buffers.
    pub fn step_buffers(&mut self, ctx: &Context, theta: &DBuf, grad: &DBuf) -> Result<()> {
        if theta.len < self.len() || grad.len < self.len() {
            bail!(
                "step_buffers: buffers of {} and {} elements, {} needed",
                theta.len,
                grad.len,
                self.len()
            );
        }
        let key = (theta.id, grad.id);
        if self.bound.as_ref().map(|b| b.0) != Some(key) {
            let d0 = self
                .bufs
                .forward(ctx, theta, grad, &self.status, 0, (0, 1), false)?;
            let d1 = self
                .bufs
                .forward(ctx, theta, grad, &self.status, 0, (1, 0), false)?;
            self.bound = Some((key, [d0, d1]));
        }
        let d = self.bound.as_ref().expect("just bound").1[self.slot].clone();
        ctx.submit(&[d])?;
        self.slot = 1 - self.slot;
        Ok(())
    }
}
