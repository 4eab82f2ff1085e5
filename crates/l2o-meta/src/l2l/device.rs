//! The L2L forward sweep, stored trajectory and reverse sweep on the device.
//!
//! An unroll of T steps is one pre-recorded list of dispatches, replayed every unroll (φ lives in a uniform
//! buffer rewritten between unrolls): for t = 0..T: the task's loss and gradient at θ_t, then the LSTM forward
//! step (recording x_t, g_t and the new state); the loss at θ_T; the reverse sweep and the ∂L/∂φ reduction;
//! the fixed-order final sum into ∂L/∂φ. One readback per unroll brings back the per-step losses and ∂L/∂φ
//! together: one host round trip per unroll.
//!
//! Two kernel sets compute the same equations ([`LstmKernels`]): the generated straight-line kernels of
//! [`crate::l2l::kernels`] (default where φ fits workgroup memory; the reverse sweep and the reduction are two
//! dispatches per step, so the adjoint rows of one step are all the sweep stores) and the loop-form kernels of
//! `shaders/lstm.wgsl` (f64, large H: one thread per coordinate walks t = T−1…0 in time chunks whose adjoint
//! rows fit one binding, then an outer-product reduction per chunk).

use anyhow::{Result, bail};
use l2o_engine::shaders::{LSTM, LSTM_GEN};
use l2o_engine::{Context, DBuf, Dispatch, ScalarOut, wgpu};
use l2o_tasks::Task;

use crate::l2l::kernels::{self, Entry, LstmVariant};
use crate::l2l::{CoordState, LstmConfig};

/// Rows of ∂L/∂z per outer-product tile of the loop-form kernels (the shader's RT).
const OUTER_ROWS: usize = 8;

/// Which L2L kernels run. Both compute the same equations, tested against the same f64 reference; they group
/// the ∂L/∂φ sums differently, so their f32 results differ in the last bits — a run uses one set throughout,
/// and [`LstmKernels::name`] is printed by `l2o train` and `l2o bench`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LstmKernels {
    /// `shaders/lstm.wgsl`: loops over private arrays, φ in the uniform block (any precision and H ≤ 32).
    Loop,
    /// [`crate::l2l::kernels`]: straight-line, φ in workgroup memory (needs P·sizeof(Real) of it).
    Unrolled(LstmVariant),
}

impl LstmKernels {
    pub fn name(&self) -> String {
        match self {
            LstmKernels::Loop => "loop".into(),
            LstmKernels::Unrolled(v) => v.name(),
        }
    }

    /// Parse `loop` or `unrolled-wg<W>-b<B>-s<S>` (the names [`LstmKernels::name`] prints).
    pub fn parse(s: &str) -> Result<Self> {
        if s == "loop" {
            return Ok(LstmKernels::Loop);
        }
        let bad = || {
            anyhow::anyhow!(
                "unknown L2L kernel set {s:?}: use loop or unrolled-wg<W>-b<B>-s<S> (e.g. unrolled-wg128-b64-s2)"
            )
        };
        let rest = s.strip_prefix("unrolled-wg").ok_or_else(bad)?;
        let (wg, rest) = rest.split_once("-b").ok_or_else(bad)?;
        let (block, steps) = rest.split_once("-s").ok_or_else(bad)?;
        let num = |x: &str| x.parse::<usize>().map_err(|_| bad());
        let v = LstmVariant {
            wg: num(wg)?,
            block: num(block)?,
            steps: num(steps)?,
        };
        if !(1..=1024).contains(&v.wg)
            || !(1..=512).contains(&v.block)
            || !(1..=64).contains(&v.steps)
        {
            bail!(
                "L2L kernel set {s:?}: workgroup size must be in 1..=1024, block in 1..=512 and steps in 1..=64"
            );
        }
        Ok(LstmKernels::Unrolled(v))
    }

    /// Whether this set can run `cfg` on `ctx` (the unrolled kernels need φ in workgroup memory).
    pub fn fits(&self, ctx: &Context, cfg: &LstmConfig) -> bool {
        match self {
            LstmKernels::Loop => true,
            LstmKernels::Unrolled(v) => {
                let lim = ctx.limits.max_compute_workgroup_storage_size as usize;
                kernels::workgroup_bytes(cfg, v, ctx.precision().size()) <= lim
                    && v.wg as u32 <= ctx.limits.max_compute_invocations_per_workgroup
            }
        }
    }

    /// Whether this set compiles in seconds on `ctx`'s driver. Mesa's GL driver (llvmpipe behind wgpu's GL
    /// backend) spends minutes on the straight-line kernels (its coroutine-frame analysis is superlinear in
    /// their length), so GL defaults to the loop form; `L2O_KERNELS=lstm=unrolled-…` still selects them there.
    pub fn compiles_quickly(&self, ctx: &Context) -> bool {
        !(matches!(self, LstmKernels::Unrolled(_))
            && ctx.info.backend == l2o_engine::wgpu::Backend::Gl)
    }

    /// The set for this adapter and architecture: `L2O_KERNELS=lstm=<name>` (or the older `L2O_LSTM_KERNELS`)
    /// when set, else the autotune cache's choice (family `lstm`), else the unrolled kernels where φ fits
    /// workgroup memory (f32 up to H ≈ 25 on a 32 KiB adapter), else the loop form. The choice is recorded in
    /// [`Context::variant_report`] as `lstm[H… D…]`. On GL see [`LstmKernels::compiles_quickly`].
    pub fn choose(ctx: &Context, cfg: &LstmConfig) -> Result<Self> {
        use l2o_engine::variants::Source;
        let family = format!("lstm[H{} D{}]", cfg.hidden, cfg.input_dim());
        let legacy = std::env::var("L2O_LSTM_KERNELS")
            .ok()
            .filter(|s| !s.is_empty())
            .map(|s| (s, Source::Env));
        if let Some((spec, src)) = legacy.or_else(|| ctx.variant_hint("lstm")) {
            let k = Self::parse(&spec)?;
            if k.fits(ctx, cfg) {
                ctx.record_variant(&family, &k.name(), src);
                return Ok(k);
            }
            if src == Source::Env {
                bail!(
                    "L2O_KERNELS lstm={spec}: does not fit this adapter for H = {} in {} (φ must fit its {} bytes \
                     of workgroup memory); use loop",
                    cfg.hidden,
                    ctx.precision(),
                    ctx.limits.max_compute_workgroup_storage_size
                );
            }
        }
        let v = LstmKernels::Unrolled(LstmVariant {
            wg: 128,
            block: 64,
            steps: 2,
        });
        let k = if v.fits(ctx, cfg) && v.compiles_quickly(ctx) {
            v
        } else {
            LstmKernels::Loop
        };
        ctx.record_variant(&family, &k.name(), Source::Default);
        Ok(k)
    }
}

/// Bytes of the uniform buffer that holds φ (the shader's L2O_PHI_VEC4 × vec4).
pub const PHI_BYTES: usize = 65536;

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
    /// Rows of `partial` summed by `finish` (loop form: chunks of entries × 64 lanes; unrolled: blocks of
    /// coordinates).
    pub chunks: usize,
    pub chunk_len: usize,
    /// Steps per time chunk of the loop-form reverse sweep (all T when the adjoint rows fit one binding; 1 for
    /// the unrolled kernels, which store the adjoint rows of one step).
    pub time_chunk: usize,
    pub kernels: LstmKernels,
    /// The generated WGSL of each entry point of [`LstmKernels::Unrolled`] (empty for the loop form).
    srcs: Vec<String>,
}

/// Loop-form reduction plan: at most 16 chunks of the entries (t, k) of one time chunk, 64 lanes each taking
/// every 64th entry: (chunks, chunk_len).
fn loop_plan(k: usize, time_chunk: usize) -> (usize, usize) {
    let total = time_chunk.max(1) * k;
    let chunk_len = (64 * 64).max(total.div_ceil(16)).next_multiple_of(64);
    (total.div_ceil(chunk_len), chunk_len)
}

/// The compile-time constants of the loop-form kernels (`shaders/lstm.wgsl`) for hidden size h, input size d.
fn loop_defines(h: usize, d: usize) -> String {
    format!("const H: u32 = {h}u; const D: u32 = {d}u;")
}

impl LstmBuffers {
    /// Allocate for B problems × n coordinates and unrolls of `steps` (`steps` = 1 with `train` = false for
    /// inference: two state slots, no trajectory). `weights[t−1]` = w_t. The kernel set is
    /// [`LstmKernels::choose`]'s.
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
        let kernels = LstmKernels::choose(ctx, cfg)?;
        Self::with_kernels(ctx, cfg, n, batch, steps, weights, train, kernels)
    }

    /// [`LstmBuffers::new`] with a given kernel set (tests run every set; benchmarks compare them).
    #[allow(clippy::too_many_arguments)]
    pub fn with_kernels(
        ctx: &Context,
        cfg: &LstmConfig,
        n: usize,
        batch: usize,
        steps: usize,
        weights: &[f64],
        train: bool,
        kernels: LstmKernels,
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
        if !kernels.fits(ctx, cfg) {
            bail!(
                "L2L kernels {}: φ of H = {} does not fit this adapter's workgroup memory in {}",
                kernels.name(),
                cfg.hidden,
                ctx.precision()
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
        // Loop form: the reverse sweep runs in time chunks of tc steps whose ∂L/∂z rows (plus the carried λ's)
        // must fit one binding. Unrolled: one step's rows. The states of the whole unroll must fit too.
        let loop_rows = |tc: usize| tc * (8 * h + 1) + 4 * h + 1;
        let tc = match kernels {
            LstmKernels::Loop => (1..=steps)
                .rev()
                .find(|&tc| per(loop_rows(tc)) <= lim)
                .unwrap_or(0),
            LstmKernels::Unrolled(v) => {
                if per(kernels::dz_rows(h, v.steps)) <= lim {
                    1
                } else {
                    0
                }
            }
        };
        if train && (tc == 0 || per((steps + 1) * 4 * h) > lim) {
            bail!(
                "LSTM trajectory for T = {steps} steps × B = {batch} × n = {n}: the states of the unroll need \
                 {:.1} MiB and the adjoint rows of one step {:.1} MiB, but max_storage_buffer_binding_size is \
                 {:.1} MiB (memory is O(T·B·n·H)): shorten the unroll, or reduce the batch or the dimension",
                per((steps + 1) * 4 * h) as f64 / 1048576.0,
                per(loop_rows(1)) as f64 / 1048576.0,
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
        let (chunks, chunk_len, partial_rows, dz_len, srcs) = match &kernels {
            LstmKernels::Loop => {
                let (c, cl) = loop_plan(k, tc);
                (c, cl, c * 64, loop_rows(tc) * k, vec![])
            }
            LstmKernels::Unrolled(v) => {
                let blocks = k.div_ceil(v.block);
                let srcs = if train {
                    Entry::ALL
                        .iter()
                        .map(|&e| kernels::source(cfg, v, e))
                        .collect()
                } else {
                    vec![kernels::source(cfg, v, Entry::Forward)]
                };
                let rows = blocks * kernels::partial_per_block(cfg) / l.len + 1;
                (
                    blocks,
                    v.block,
                    rows,
                    kernels::dz_rows(h, v.steps) * k,
                    srcs,
                )
            }
        };
        // build this optimizer's kernels now and together (Context::prepare), not one at a time at first use
        match &kernels {
            LstmKernels::Loop => {
                let defines = loop_defines(h, d);
                let used: &[&'static str] = if train { LSTM.entries } else { &["forward"] };
                let entries: Vec<(&'static str, &str)> =
                    used.iter().map(|&e| (e, defines.as_str())).collect();
                ctx.prepare(&LSTM, &entries)?;
            }
            LstmKernels::Unrolled(_) => {
                let entries: Vec<(&'static str, &str)> = Entry::ALL
                    .iter()
                    .zip(&srcs)
                    .map(|(e, src): (&Entry, &String)| (e.name(), src.as_str()))
                    .collect();
                ctx.prepare(&LSTM_GEN, &entries)?;
            }
        }
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
            dz: ctx.zeros("lstm adjoint rows", if train { dz_len } else { 1 })?,
            partial: ctx.zeros(
                "lstm partials",
                if train { l.len * partial_rows } else { 1 },
            )?,
            dphi: ctx.zeros("lstm dphi", l.len)?,
            carry: ctx.zeros("lstm carried state", 4 * h * k)?,
            chunks,
            chunk_len,
            time_chunk: tc.max(1),
            kernels,
            srcs,
        })
    }

    /// Run the loop-form reverse sweep in time chunks of at most `tc` steps (by default the largest chunk whose
    /// adjoint rows fit one binding). Call before recording the reverse dispatches. The unrolled kernels always
    /// sweep one step at a time.
    pub fn set_time_chunk(&mut self, tc: usize) {
        if self.kernels == LstmKernels::Loop {
            self.time_chunk = tc.clamp(1, self.time_chunk);
            (self.chunks, self.chunk_len) = loop_plan(self.n * self.batch, self.time_chunk);
        }
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

    /// One dispatch. `t`, `slots` and `flag` fill the kernel parameters: the loop-form kernels read
    /// (t, slot_in, slot_out, accumulate = slot_out == 1); the generated ones (t, slot_in, slot_out,
    /// accumulate = `flag`).
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
        // dphi_step reduces the steps [t, t + slots.1); the group holding T − 1 runs first and overwrites
        let (accumulate, tc) = match entry {
            "dphi_step" => ((t + slots.1 != self.steps) as u32, slots.1),
            _ => ((slots.1 == 1) as u32, self.time_chunk),
        };
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
            accumulate,
            u(tc),
        ]);
        let per_coordinate = |threads: usize| l2o_engine::buffer::grid_flat(k.div_ceil(threads));
        let groups = match (entry, &self.kernels) {
            ("outer_partial", _) => [u(2 * (4 * h).div_ceil(OUTER_ROWS) + 1), u(self.chunks), 1],
            ("dphi_step", _) => [3, u(self.chunks), 1],
            ("finish", _) => [u(self.cfg.layout().len.div_ceil(64)), 1, 1],
            (_, LstmKernels::Unrolled(v)) => per_coordinate(v.wg),
            (_, LstmKernels::Loop) => per_coordinate(64),
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
        match &self.kernels {
            LstmKernels::Loop => {
                let defines = loop_defines(h, d);
                ctx.dispatch_with(&LSTM, entry, &defines, &b, groups)
            }
            LstmKernels::Unrolled(_) => {
                let i = Entry::ALL
                    .iter()
                    .position(|e| e.name() == entry)
                    .filter(|&i| i < self.srcs.len())
                    .ok_or_else(|| {
                        anyhow::anyhow!("L2L kernel {entry} was not generated (inference buffers?)")
                    })?;
                ctx.dispatch_with(&LSTM_GEN, entry, &self.srcs[i], &b, groups)
            }
        }
    }

    /// The forward step from state slot `slots.0` to `slots.1` (inference when `record` is false).
    #[allow(clippy::too_many_arguments)]
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
        let mut d = vec![];
        match self.kernels {
            LstmKernels::Unrolled(v) => {
                // t = T−1 … 0: each step's adjoint rows; after every S-th (t ≡ 0 mod S), the outer products of
                // those S steps into the block partials
                for t in (0..self.steps).rev() {
                    let rev =
                        self.dispatch(ctx, "reverse_step", theta, grad, status, t, (0, 0), false);
                    d.push(rev?);
                    if t % v.steps == 0 {
                        let cnt = v.steps.min(self.steps - t);
                        let red = self.dispatch(
                            ctx,
                            "dphi_step",
                            theta,
                            grad,
                            status,
                            t,
                            (0, cnt),
                            false,
                        );
                        d.push(red?);
                    }
                }
            }
            LstmKernels::Loop => {
                // time chunks [t_lo, t_hi) from the end; the outer-product partials of later chunks accumulate
                // (slots = (t_hi, accumulate) for these entries).
                let mut t_hi = self.steps;
                while t_hi > 0 {
                    let t_lo = t_hi.saturating_sub(self.time_chunk);
                    let acc = (t_hi != self.steps) as usize;
                    d.push(self.dispatch(
                        ctx,
                        "reverse",
                        theta,
                        grad,
                        status,
                        t_lo,
                        (t_hi, 0),
                        false,
                    )?);
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
            }
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
    /// f_b(θ_t), \[B\]\[T+1\].
    pub losses: DBuf,
    status: DBuf,
    unroll: Vec<Dispatch>,
}

/// What one unroll returns.
#[derive(Clone, Debug)]
pub struct UnrollResult {
    /// L = (1/B) Σ_b Σ_{t=1..T} w_t f_b(θ_t)
    pub meta_loss: f64,
    /// f_b(θ_t), \[B\]\[T+1\]
    pub losses: Vec<f64>,
    pub dphi: Vec<f64>,
}

impl UnrollResult {
    /// The result of the union of equally sized shards: meta-loss and ∂L/∂φ averaged as the training loop
    /// averages them ([`crate::learned::Unroll::mean`]), losses concatenated.
    pub fn mean(shards: &[UnrollResult]) -> UnrollResult {
        let m = crate::learned::Unroll::mean(
            shards
                .iter()
                .map(|r| crate::learned::Unroll {
                    meta_loss: r.meta_loss,
                    dphi: r.dphi.clone(),
                })
                .collect(),
        );
        UnrollResult {
            meta_loss: m.meta_loss,
            losses: shards
                .iter()
                .flat_map(|r| r.losses.iter().copied())
                .collect(),
            dphi: m.dphi,
        }
    }
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
        let kernels = LstmKernels::choose(ctx, cfg)?;
        Self::with_kernels(ctx, cfg, n, batch, steps, weights, kernels)
    }

    /// [`L2lTrainer::new`] with a given kernel set.
    pub fn with_kernels(
        ctx: &Context,
        cfg: &LstmConfig,
        n: usize,
        batch: usize,
        steps: usize,
        weights: &[f64],
        kernels: LstmKernels,
    ) -> Result<Self> {
        let bufs = LstmBuffers::with_kernels(ctx, cfg, n, batch, steps, weights, true, kernels)?;
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

    /// The recorded unroll (for profiling).
    pub fn dispatches(&self) -> &[Dispatch] {
        &self.unroll
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
