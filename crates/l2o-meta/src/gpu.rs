//! The L2L forward sweep, stored trajectory and reverse sweep on the device (`shaders/lstm.wgsl`).
//!
//! An unroll of T steps is one pre-recorded list of dispatches, replayed every unroll (φ lives in a uniform
//! buffer rewritten between unrolls): for t = 0..T: the task's loss and gradient at θ_t, then the LSTM forward
//! step (recording x_t, g_t and the new state); the loss at θ_T; the reverse sweep (one thread per
//! coordinate walks t = T−1…0 and writes ∂L/∂z); the outer-product reduction into per-chunk partials; and
//! the fixed-order sum over chunks into ∂L/∂φ. One readback per unroll brings back the per-step losses
//! and ∂L/∂φ together: 4T + 6 dispatches (quadratic task) and 1 host round trip per unroll.

use anyhow::{Result, bail};
use l2o_engine::shaders::LSTM;
use l2o_engine::{Context, DBuf, Dispatch, ScalarOut, wgpu};
use l2o_tasks::Task;

use crate::lstm::{CoordState, LstmConfig};

/// Rows of ∂L/∂z per outer-product tile (the shader's RT).
const OUTER_ROWS: usize = 8;

/// Bytes of the uniform buffer that holds φ (the shader's PHI_VEC4 × vec4).
pub const PHI_BYTES: usize = 65536;

/// Numbers of the device trajectory per coordinate for an unroll of T steps (states, inputs, gradients,
/// adjoint rows): (T+1)·4H + T·D + T + T·(8H+1).
pub fn trajectory_len(cfg: &LstmConfig, steps: usize) -> usize {
    let (h, d) = (cfg.hidden, cfg.input_dim());
    (steps + 1) * 4 * h + steps * d + steps + steps * (8 * h + 1)
}

/// Device buffers shared by training and inference: φ (uniform), constants, states, and the status vector.
pub struct LstmBuffers {
    pub cfg: LstmConfig,
    pub n: usize,
    pub batch: usize,
    pub steps: usize,
    pub phi: wgpu::Buffer,
    pub cst: DBuf,
    pub states: DBuf,
    pub xs: DBuf,
    pub gs: DBuf,
    pub dz: DBuf,
    pub partial: DBuf,
    pub dphi: DBuf,
    pub carry: DBuf,
    pub chunks: usize,
    pub chunk_len: usize,
    /// Steps per time chunk of the reverse sweep (all T when the adjoint rows fit one binding).
    pub time_chunk: usize,
}

impl LstmBuffers {
    /// Allocate for B problems × n coordinates and unrolls of `steps` (`steps` = 1 with `train` = false for
    /// inference: two state slots, no trajectory). `weights[t−1]` = w_t.
    pub fn new(
        ctx: &Context,
        cfg: &LstmConfig,
        n: usize,
        batch: usize,
        steps: usize,
        weights: &[f64],
        train: bool,
    ) -> Result<Self> {
        cfg.validate()?;
        if n == 0 || batch == 0 || steps == 0 {
            bail!(
                "LSTM optimizer: n, batch and unroll length must be positive (n = {n}, batch = {batch}, T = {steps})"
            );
        }
        if weights.len() != steps {
            bail!(
                "LSTM optimizer: {} meta-loss weights for an unroll of {steps} steps",
                weights.len()
            );
        }
        let l = cfg.layout();
        let real = ctx.precision().size();
        if l.len * real > PHI_BYTES {
            bail!(
                "LSTM optimizer: φ has {} parameters ({} bytes) but the uniform block holds {PHI_BYTES} bytes: use a smaller hidden size",
                l.len,
                l.len * real
            );
        }
        let (h, d, k) = (cfg.hidden, cfg.input_dim(), n * batch);
        let lim = ctx.limits.max_storage_buffer_binding_size as usize;
        let per = |rows: usize| rows * k * real;
        // The reverse sweep runs in time chunks of tc steps: the ∂L/∂z rows of one chunk (plus the carried λ's)
        // must fit one binding; the states of the whole unroll must too.
        let dz_rows = |tc: usize| tc * (8 * h + 1) + 4 * h + 1;
        let tc = (1..=steps)
            .rev()
            .find(|&tc| per(dz_rows(tc)) <= lim)
            .unwrap_or(0);
        if train && (tc == 0 || per((steps + 1) * 4 * h) > lim) {
            bail!(
                "LSTM trajectory for T = {steps} steps × B = {batch} × n = {n}: the states of the unroll need \
                 {:.1} MiB and the adjoint rows of one step {:.1} MiB, but max_storage_buffer_binding_size is \
                 {:.1} MiB (memory is O(T·B·n·H)): shorten the unroll, or reduce the batch or the dimension",
                per((steps + 1) * 4 * h) as f64 / 1048576.0,
                per(dz_rows(1)) as f64 / 1048576.0,
                lim as f64 / 1048576.0
            );
        }
        let phi = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("lstm phi"),
            size: PHI_BYTES as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let p = cfg.preprocess.unwrap_or(10.0);
        let mut cst = vec![cfg.scale, p, (-p).exp(), p.exp()];
        cst.extend(weights.iter().map(|w| w / batch as f64));
        let total = tc.max(1) * k;
        // outer_partial: at most 16 chunks of entries, 64 lanes each taking every 64th entry (≥ 64 per lane).
        let chunk_len = (64 * 64).max(total.div_ceil(16)).next_multiple_of(64);
        let chunks = total.div_ceil(chunk_len);
        let (slots, tsteps) = if train { (steps + 1, steps) } else { (2, 1) };
        Ok(Self {
            cfg: *cfg,
            n,
            batch,
            steps,
            phi,
            cst: ctx.upload("lstm consts", &cst)?,
            states: ctx.zeros("lstm states", slots * 4 * h * k)?,
            xs: ctx.zeros("lstm inputs", if train { tsteps * d * k } else { 1 })?,
            gs: ctx.zeros("lstm gradients", if train { tsteps * k } else { 1 })?,
            dz: ctx.zeros("lstm adjoint rows", if train { dz_rows(tc) * k } else { 1 })?,
            partial: ctx.zeros("lstm partials", if train { l.len * chunks * 64 } else { 1 })?,
            dphi: ctx.zeros("lstm dphi", l.len)?,
            carry: ctx.zeros("lstm carried state", 4 * h * k)?,
            chunks,
            chunk_len,
            time_chunk: tc.max(1),
        })
    }

    /// Run the reverse sweep in time chunks of at most `tc` steps (by default the largest chunk whose adjoint
    /// rows fit one binding). Call before recording the reverse dispatches.
    pub fn set_time_chunk(&mut self, tc: usize) {
        self.time_chunk = tc.clamp(1, self.time_chunk);
        let total = self.time_chunk * self.n * self.batch;
        self.chunk_len = (64 * 64).max(total.div_ceil(16)).next_multiple_of(64);
        self.chunks = total.div_ceil(self.chunk_len);
    }

    /// Upload φ.
    pub fn set_phi(&self, ctx: &Context, phi: &[f64]) -> Result<()> {
        let l = self.cfg.layout();
        if phi.len() != l.len {
            bail!(
                "φ has {} values, the architecture needs {}",
                phi.len(),
                l.len
            );
        }
        if let Some(i) = phi.iter().position(|v| !v.is_finite()) {
            bail!("φ[{i}] = {} is not finite", phi[i]);
        }
        let mut bytes = ctx.precision().encode(phi);
        bytes.resize(PHI_BYTES, 0);
        ctx.queue.write_buffer(&self.phi, 0, &bytes);
        Ok(())
    }

    /// Set the state of slot 0 (zero: `None`).
    pub fn set_state(&self, ctx: &Context, states: Option<&[CoordState]>) -> Result<()> {
        let (h, k) = (self.cfg.hidden, self.n * self.batch);
        let mut v = vec![0.0; 4 * h * k];
        if let Some(s) = states {
            if s.len() != k {
                bail!(
                    "set_state: {} coordinate states for {k} coordinates",
                    s.len()
                );
            }
            for (kk, st) in s.iter().enumerate() {
                for r in 0..4 * h {
                    v[r * k + kk] = st[r];
                }
            }
        }
        ctx.write(&self.states, 0, &v)
    }

    /// Copy the state of slot `from` to slot 0 (carry the LSTM state across unrolls).
    pub fn carry_state(&self, ctx: &Context, from: usize) -> Result<()> {
        let len = 4 * self.cfg.hidden * self.n * self.batch;
        ctx.copy(&self.states, from * len, &self.carry, 0, len)?;
        ctx.copy(&self.carry, 0, &self.states, 0, len)
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &self,
        ctx: &Context,
        entry: &'static str,
        theta: &DBuf,
        grad: &DBuf,
        status: &DBuf,
        t: usize,
        slots: (usize, usize),
        record: bool,
    ) -> Result<Dispatch> {
        let (h, d, k) = (self.cfg.hidden, self.cfg.input_dim(), self.n * self.batch);
        let u = |x: usize| x as u32;
        let params = ctx.params(&[
            u(k),
            u(self.n),
            u(self.batch),
            u(h),
            u(d),
            u(t),
            u(slots.0),
            u(slots.1),
            u(self.steps),
            record as u32,
            u(self.chunks),
            u(self.chunk_len),
            self.cfg.preprocess.is_some() as u32,
            u(self.cfg.layout().len),
            (slots.1 == 1) as u32,
            u(self.time_chunk),
        ]);
        let groups = match entry {
            "outer_partial" => [u(2 * (4 * h).div_ceil(OUTER_ROWS) + 1), u(self.chunks), 1],
            "finish" => [u(self.cfg.layout().len.div_ceil(64)), 1, 1],
            _ => {
                let wg = k.div_ceil(64);
                let x = wg.min(65535);
                [u(x), u(wg.div_ceil(x)), 1]
            }
        };
        let b = [
            &params,
            &self.phi,
            &self.cst.buf,
            &theta.buf,
            &grad.buf,
            &self.states.buf,
            &self.xs.buf,
            &self.gs.buf,
            &self.dz.buf,
            &self.partial.buf,
            &status.buf,
            &self.dphi.buf,
        ];
        let defines = format!("const H: u32 = {h}u; const D: u32 = {d}u;");
        ctx.dispatch_with(&LSTM, entry, &defines, &b, groups)
    }

    /// The forward step from state slot `slots.0` to `slots.1` (inference when `record` is false).
    pub fn forward(
        &self,
        ctx: &Context,
        theta: &DBuf,
        grad: &DBuf,
        status: &DBuf,
        t: usize,
        slots: (usize, usize),
        record: bool,
    ) -> Result<Dispatch> {
        self.dispatch(ctx, "forward", theta, grad, status, t, slots, record)
    }

    /// Reverse sweep + ∂L/∂φ reduction (into `self.dphi`). `grad` must hold g_T when they run.
    pub fn reverse(
        &self,
        ctx: &Context,
        theta: &DBuf,
        grad: &DBuf,
        status: &DBuf,
    ) -> Result<Vec<Dispatch>> {
        // time chunks [t_lo, t_hi) from the end; the outer-product partials of later chunks accumulate
        // (slots = (t_hi, accumulate) for these entries).
        let mut d = vec![];
        let mut t_hi = self.steps;
        while t_hi > 0 {
            let t_lo = t_hi.saturating_sub(self.time_chunk);
            let acc = (t_hi != self.steps) as usize;
            d.push(self.dispatch(ctx, "reverse", theta, grad, status, t_lo, (t_hi, 0), false)?);
            d.push(self.dispatch(
                ctx,
                "outer_partial",
                theta,
                grad,
                status,
                t_lo,
                (t_hi, acc),
                false,
            )?);
            t_hi = t_lo;
        }
        d.push(self.dispatch(ctx, "finish", theta, grad, status, 0, (0, 0), false)?);
        Ok(d)
    }
}

/// Meta-training on the device: one recorded unroll over a bound task, replayed every unroll.
pub struct L2lTrainer {
    pub bufs: LstmBuffers,
    pub weights: Vec<f64>,
    pub theta: DBuf,
    pub grad: DBuf,
    /// f_b(θ_t), [B][T+1].
    pub losses: DBuf,
    status: DBuf,
    unroll: Vec<Dispatch>,
}

/// What one unroll returns.
#[derive(Clone, Debug)]
pub struct UnrollResult {
    /// L = (1/B) Σ_b Σ_{t=1..T} w_t f_b(θ_t)
    pub meta_loss: f64,
    /// f_b(θ_t), [B][T+1]
    pub losses: Vec<f64>,
    pub dphi: Vec<f64>,
}

impl L2lTrainer {
    pub fn new(
        ctx: &Context,
        cfg: &LstmConfig,
        n: usize,
        batch: usize,
        steps: usize,
        weights: &[f64],
    ) -> Result<Self> {
        let bufs = LstmBuffers::new(ctx, cfg, n, batch, steps, weights, true)?;
        Ok(Self {
            bufs,
            weights: weights.to_vec(),
            theta: ctx.zeros("theta", n * batch)?,
            grad: ctx.zeros("grad", n * batch)?,
            losses: ctx.zeros("unroll losses", batch * (steps + 1))?,
            status: ctx.upload_u32("status", &vec![0; batch])?,
            unroll: vec![],
        })
    }

    /// Record the unroll for `task` (its dimension and batch must match) and start from its initial point with
    /// zero LSTM state.
    pub fn bind(&mut self, ctx: &Context, task: &dyn Task) -> Result<()> {
        let b = &self.bufs;
        if task.dim() != b.n || task.batch() != b.batch {
            bail!(
                "task is {}×{} but the trainer was built for n = {}, B = {}",
                task.batch(),
                task.dim(),
                b.n,
                b.batch
            );
        }
        let (n, steps) = (b.n, b.steps);
        let mut d = vec![];
        for t in 0..=steps {
            let out = ScalarOut {
                buf: &self.losses,
                stride: steps + 1,
                col: t,
            };
            d.extend(task.loss_and_grad(ctx, self.theta.view(n), self.grad.view(n), out)?);
            if t < steps {
                d.push(b.forward(
                    ctx,
                    &self.theta,
                    &self.grad,
                    &self.status,
                    t,
                    (t, t + 1),
                    true,
                )?);
            }
        }
        d.extend(b.reverse(ctx, &self.theta, &self.grad, &self.status)?);
        self.unroll = d;
        ctx.write(&self.theta, 0, &task.initial_point())?;
        b.set_state(ctx, None)
    }

    /// Start the next unroll from where the last one ended (θ and the LSTM state carry over).
    pub fn carry(&self, ctx: &Context) -> Result<()> {
        self.bufs.carry_state(ctx, self.bufs.steps)
    }

    /// Number of dispatches per unroll.
    pub fn dispatches_per_unroll(&self) -> usize {
        self.unroll.len()
    }

    /// Run one unroll at φ: forward sweep, reverse sweep, ∂L/∂φ; one readback.
    pub fn run(&self, ctx: &Context, phi: &[f64]) -> Result<UnrollResult> {
        if self.unroll.is_empty() {
            bail!("no task bound: call bind() first");
        }
        self.bufs.set_phi(ctx, phi)?;
        ctx.submit(&self.unroll)?;
        let mut r = ctx.read_many(&[&self.losses, &self.bufs.dphi])?;
        let dphi = r.pop().expect("two buffers");
        let losses = r.pop().expect("two buffers");
        let (bt, steps) = (self.bufs.batch, self.bufs.steps);
        let mut meta_loss = 0.0;
        for b in 0..bt {
            for t in 1..=steps {
                meta_loss += self.weights[t - 1] * losses[b * (steps + 1) + t];
            }
        }
        Ok(UnrollResult {
            meta_loss: meta_loss / bt as f64,
            losses,
            dphi,
        })
    }
}
