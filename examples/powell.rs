//! Bring your own problem to the device: the extended Powell function (Moré, Garbow & Hillstrom 1981, problem
//! 13) as an l2o [`Task`] with its own WGSL kernel, checked against its f64 oracle and finite differences with
//! [`check_task`], then minimised by L-BFGS and by a trained Hilbert LSTM. This file is the code of
//! `docs/writing-a-task.md`, step by step; `tests/writing_a_task.rs` runs it in CI.
//!
//! `cargo run --release --example powell`

use anyhow::{Result, bail};
use l2o::engine::shaders::{Layout, ShaderFamily};
use l2o::engine::status::Status;
use l2o::engine::{Context, ContextOptions, DBuf, Dispatch, Precision, ScalarOut, View, sum};
use l2o::optim::{Lbfgs, LbfgsConfig, LineSearch, RunOptions, Trace, run};
use l2o::tasks::{
    CheckOptions, Task, TaskParams, check_dims, check_fits, check_task, check_views, grid,
};

// ---- 1. The kernel: one thread per block of four coordinates and problem -------------------------------------

/// f(x) = Σ_blocks (x1 + 10 x2)² + 5 (x3 − x4)² + (x2 − 2 x3)⁴ + 10 (x1 − x4)⁴ and its gradient. Each thread
/// writes the gradient of its block and the block's loss term; the terms are summed by the engine's
/// deterministic `sum` afterwards. `Real` is f32 or f64, the context's precision; `Params` is `TaskParams`
/// field for field.
const POWELL_WGSL: &str = r#"
struct Params {
    n: u32, batch: u32, theta_off: u32, theta_stride: u32,
    grad_off: u32, grad_stride: u32, m: u32, s_stride: u32,
}
@group(0) @binding(0) var<storage, read> p: Params;
@group(0) @binding(1) var<storage, read_write> theta: array<Real>;
@group(0) @binding(2) var<storage, read_write> grad: array<Real>;
@group(0) @binding(3) var<storage, read_write> terms: array<Real>;

@compute @workgroup_size(64)
fn powell(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = gid.y;
    let blocks = p.n / 4u;
    // grid-stride loop: the x grid is capped at 65,535 workgroups
    for (var i = gid.x; i < blocks; i = i + nwg.x * 64u) {
        let t = p.theta_off + b * p.theta_stride + 4u * i;
        let x1 = theta[t];
        let x2 = theta[t + 1u];
        let x3 = theta[t + 2u];
        let x4 = theta[t + 3u];
        let t1 = x1 + 10.0 * x2;
        let t2 = x3 - x4;
        let t3 = x2 - 2.0 * x3;
        let t4 = x1 - x4;
        let t3c = t3 * t3 * t3;
        let t4c = t4 * t4 * t4;
        let g = p.grad_off + b * p.grad_stride + 4u * i;
        grad[g] = 2.0 * t1 + 40.0 * t4c;
        grad[g + 1u] = 20.0 * t1 + 4.0 * t3c;
        grad[g + 2u] = 10.0 * t2 - 8.0 * t3c;
        grad[g + 3u] = -10.0 * t2 - 40.0 * t4c;
        terms[b * p.s_stride + i] = t1 * t1 + 5.0 * t2 * t2 + t3 * t3c + 10.0 * t4 * t4c;
    }
}
"#;

/// The kernel family: source, bindings in order (θ is bound read_write so that θ and ∇f may be slots of one
/// buffer), entry points. The engine compiles it once per precision and caches the pipeline by its contents,
/// so the name needs no care.
static POWELL: ShaderFamily = ShaderFamily {
    name: "powell",
    body: POWELL_WGSL,
    layout: &[
        Layout::Read,
        Layout::ReadWrite,
        Layout::ReadWrite,
        Layout::ReadWrite,
    ],
    entries: &["powell"],
    default_defines: "",
};

// ---- 2. The task: shapes, device buffers, the recorded dispatches, the f64 oracle ---------------------------

/// B extended-Powell problems of dimension n (a multiple of 4), all from the standard start (3, −1, 0, 1, …).
pub struct Powell {
    n: usize,
    batch: usize,
    /// One loss term per block and problem.
    terms: DBuf,
}

impl Powell {
    pub fn new(ctx: &Context, n: usize, batch: usize) -> Result<Self> {
        check_dims("powell", n, batch)?;
        if n % 4 != 0 {
            bail!("powell: n must be a multiple of 4 (got {n})");
        }
        check_fits(ctx, "powell θ", &[batch, n])?;
        Ok(Self {
            n,
            batch,
            terms: ctx.zeros("powell terms", batch * (n / 4))?,
        })
    }
}

impl Task for Powell {
    fn name(&self) -> String {
        "powell".into()
    }
    fn dim(&self) -> usize {
        self.n
    }
    fn batch(&self) -> usize {
        self.batch
    }

    /// Recorded once, replayed every step: the kernel, then the sum of each problem's terms into `out`.
    fn loss_and_grad(
        &self,
        ctx: &Context,
        theta: View,
        grad: View,
        out: ScalarOut,
    ) -> Result<Vec<Dispatch>> {
        let (n, b, blocks) = (self.n, self.batch, self.n / 4);
        check_views("powell", &theta, &grad, n, b)?;
        let params = ctx.params_of(&TaskParams::new(n, b, &theta, &grad, 0, blocks));
        let binds = [&params, theta.buffer(), grad.buffer(), &self.terms.buf];
        let mut d = vec![ctx.dispatch(&POWELL, "powell", &binds, grid(blocks, b))?];
        d.extend(sum(ctx, blocks, b, self.terms.view(blocks), out)?);
        Ok(d)
    }

    fn initial_point(&self) -> Vec<f64> {
        (0..self.batch * self.n)
            .map(|i| [3.0, -1.0, 0.0, 1.0][i % 4])
            .collect()
    }

    /// The f64 reference of one problem: the same formulas on the host.
    fn oracle_loss_grad(&self, _b: usize, x: &[f64]) -> (f64, Vec<f64>) {
        let mut f = 0.0;
        let mut g = vec![0.0; x.len()];
        for (i, c) in x.chunks_exact(4).enumerate() {
            let (t1, t2, t3, t4) = (
                c[0] + 10.0 * c[1],
                c[2] - c[3],
                c[1] - 2.0 * c[2],
                c[0] - c[3],
            );
            f += t1 * t1 + 5.0 * t2 * t2 + t3.powi(4) + 10.0 * t4.powi(4);
            g[4 * i] = 2.0 * t1 + 40.0 * t4.powi(3);
            g[4 * i + 1] = 20.0 * t1 + 4.0 * t3.powi(3);
            g[4 * i + 2] = 10.0 * t2 - 8.0 * t3.powi(3);
            g[4 * i + 3] = -10.0 * t2 - 40.0 * t4.powi(3);
        }
        (f, g)
    }
}

// ---- 3. Check it, then optimise it ----------------------------------------------------------------------

/// What the guide reports.
pub struct Report {
    pub precision: Precision,
    pub check: l2o::tasks::TaskCheck,
    /// L-BFGS (m = 5, strong Wolfe) to ‖∇f‖ < 1e-8: iterations, function evaluations, final f and ‖∇f‖ of
    /// problem 0.
    pub lbfgs: (usize, usize, f64, f64),
    /// The Hilbert LSTM of docs/results/hlstm/hlstm-cell2.l2o (trained on rotated quadratics, never on Powell), 100 steps:
    /// final f of problem 0, and f after 100 steps of constant-step L-BFGS (its initialisation) for comparison.
    pub hlstm: (f64, f64),
}

fn last(t: &Trace, b: usize) -> (usize, usize, f64, f64) {
    let k = t.steps();
    (
        t.iterations[k][b] as usize,
        t.final_evaluations[b] as usize,
        t.f[k][b],
        t.gnorm[k][b],
    )
}

pub fn run_guide() -> Result<Report> {
    // f64 where the adapter has it (lavapipe, most desktop GPUs), else f32
    let ctx = Context::new_best_precision(&ContextOptions::default())?;
    let precision = ctx.precision();
    let task = Powell::new(&ctx, 100, 8)?;

    // device vs oracle, oracle vs finite differences (f32 rounding allows ~1e-5; f64 1e-12)
    let check = check_task(&ctx, &task, &CheckOptions::default())?;
    let tol = match precision {
        Precision::F64 => 1e-12,
        Precision::F32 => 1e-5,
    };
    check.within(tol, 1e-6)?;

    // L-BFGS with strong Wolfe line search until ‖∇f‖ < 1e-8 (f64; 1e-4 in f32)
    let eps_g = if precision == Precision::F64 {
        1e-8
    } else {
        1e-4
    };
    let mut lbfgs = Lbfgs::new(LbfgsConfig {
        m: 5,
        line_search: LineSearch::wolfe(),
        ..LbfgsConfig::default()
    });
    let opts = RunOptions {
        steps: 300,
        eps_g,
        check_every: 10,
        lockstep: false,
    };
    let t = run(&ctx, &task, &mut lbfgs, &opts, &mut |_| {})?;
    let lb = last(&t, 0);
    if t.status_of(0) != Status::Converged {
        bail!("L-BFGS stopped with status {}", t.status_of(0));
    }

    // any trained learned optimizer from a checkpoint: here the Hilbert LSTM, dimension-independent
    let ckpt =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/results/hlstm/hlstm-cell2.l2o");
    let mut hlstm = l2o::meta::load_optimizer(&ckpt)?;
    let h = run(
        &ctx,
        &task,
        hlstm.as_mut(),
        &RunOptions::fixed(100),
        &mut |_| {},
    )?;
    let mut constant = Lbfgs::new(LbfgsConfig {
        m: 5,
        line_search: LineSearch::Constant,
        ..LbfgsConfig::default()
    });
    let c = run(
        &ctx,
        &task,
        &mut constant,
        &RunOptions::fixed(100),
        &mut |_| {},
    )?;
    Ok(Report {
        precision,
        check,
        lbfgs: lb,
        hlstm: (last(&h, 0).2, last(&c, 0).2),
    })
}

#[allow(dead_code)]
fn main() -> Result<()> {
    let r = run_guide()?;
    println!("{}", r.check);
    let (it, ev, f, g) = r.lbfgs;
    println!(
        "L-BFGS (m = 5, strong Wolfe, {}): {it} iterations, {ev} evaluations, f = {f:.3e}, ‖∇f‖ = {g:.2e}",
        r.precision
    );
    println!(
        "Hilbert LSTM (docs/results/hlstm/hlstm-cell2.l2o), 100 steps: f = {:.3e} (constant-step L-BFGS: {:.3e})",
        r.hlstm.0, r.hlstm.1
    );
    Ok(())
}
