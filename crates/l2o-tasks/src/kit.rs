//! The kit for writing a [`Task`] of your own: the checks every built-in task makes, its kernel-parameter
//! struct and dispatch grid, and [`check_task`] — the device against the f64 oracle and the oracle's gradient
//! against central finite differences — for your task's tests. `docs/writing-a-task.md` walks through a whole
//! task with them.

use anyhow::{Result, bail};
use l2o_engine::{Context, ScalarOut, View, grid_x};

use crate::Task;

/// Fails unless n ≥ 1 and B ≥ 1 (call first in a task's constructor).
pub fn check_dims(task: &str, n: usize, batch: usize) -> Result<()> {
    if n == 0 {
        bail!("{task}: dimension n must be at least 1 (got n = 0)");
    }
    if batch == 0 {
        bail!("{task}: batch must be at least 1 (got batch = 0)");
    }
    Ok(())
}

/// Fails (before anything is allocated on the host) unless a buffer of Π `factors` Real elements fits the
/// device's storage-binding and buffer limits and u32 indexing.
pub fn check_fits(ctx: &Context, what: &str, factors: &[usize]) -> Result<()> {
    let elems = factors
        .iter()
        .try_fold(1u64, |a, &f| a.checked_mul(f as u64));
    let size = ctx.precision().size() as u64;
    let bytes = elems.and_then(|e| e.checked_mul(size));
    let lim = ctx
        .limits
        .max_storage_buffer_binding_size
        .min(ctx.limits.max_buffer_size);
    match (elems, bytes) {
        (Some(e), Some(b)) if b <= lim && e <= u32::MAX as u64 => Ok(()),
        _ => {
            let shown = bytes.map_or("more than 2^64".to_string(), |b| {
                format!("{b} ({:.1} MiB)", b as f64 / 1048576.0)
            });
            bail!(
                "{what} needs {shown} bytes in {} but this device's max_storage_buffer_binding_size is {} bytes \
                 ({:.1} MiB): use a smaller batch or dimension, or a GPU with larger limits",
                ctx.precision(),
                ctx.limits.max_storage_buffer_binding_size,
                ctx.limits.max_storage_buffer_binding_size as f64 / 1048576.0
            )
        }
    }
}

/// Call at the top of `loss_and_grad`: the θ and ∇f views must cover B × n, and may share a buffer only if they
/// touch disjoint elements. (The built-in kernels bind θ `read_write` for that reason: WGSL forbids binding one
/// buffer both read-only and read-write in one dispatch, and an optimizer may keep θ and ∇f as slots of one
/// \[B\]\[k\]\[n\] buffer.)
pub fn check_views(task: &str, theta: &View, grad: &View, n: usize, batch: usize) -> Result<()> {
    theta.check(&format!("{task}: theta"), n, batch)?;
    grad.check(&format!("{task}: grad"), n, batch)?;
    if theta.buf.id == grad.buf.id {
        let mut iv: Vec<(usize, u8)> = (0..batch)
            .flat_map(|b| {
                [
                    (theta.offset + b * theta.stride, 0u8),
                    (grad.offset + b * grad.stride, 1u8),
                ]
            })
            .collect();
        iv.sort_unstable();
        iv.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        // Overlap between a θ row and a ∇f row, or between rows of ∇f (a stride-0 broadcast θ is fine).
        let clash = iv
            .windows(2)
            .any(|w| w[1].0 < w[0].0 + n && (w[0].1 != w[1].1 || w[0].1 == 1));
        if clash {
            bail!(
                "{task}: theta and grad overlap in the same buffer (offsets {} / {}, strides {} / {})",
                theta.offset,
                grad.offset,
                theta.stride,
                grad.stride
            );
        }
    }
    Ok(())
}

/// The kernel parameters of `shaders/tasks.wgsl`'s `Params` struct, as a `#[repr(C)]` value whose layout is the
/// WGSL struct's (eight `u32`): pass it to [`Context::params_of`]. A task with other parameters declares its own
/// `#[repr(C)] #[derive(Pod, Zeroable)]` struct the same way, field for field with its WGSL struct (u32 / f32
/// fields, padded to a multiple of 16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct TaskParams {
    pub n: u32,
    pub batch: u32,
    pub theta_off: u32,
    pub theta_stride: u32,
    pub grad_off: u32,
    pub grad_stride: u32,
    /// Task-specific (samples per problem for the logistic task).
    pub m: u32,
    /// Row stride of the task's scratch buffer.
    pub s_stride: u32,
}

impl TaskParams {
    pub fn new(
        n: usize,
        batch: usize,
        theta: &View,
        grad: &View,
        m: usize,
        s_stride: usize,
    ) -> Self {
        let u = |x: usize| x as u32;
        Self {
            n: u(n),
            batch: u(batch),
            theta_off: u(theta.offset),
            theta_stride: u(theta.stride),
            grad_off: u(grad.offset),
            grad_stride: u(grad.stride),
            m: u(m),
            s_stride: u(s_stride),
        }
    }
}

/// The dispatch grid for `count` rows per problem with 64 threads a workgroup: [x-workgroups, B, 1], with the x
/// count capped at the device limit of 65,535 ([`grid_x`]) — a kernel over more rows loops with a grid stride
/// (`for (var i = gid.x; i < n; i += nwg.x * 64u)`).
pub fn grid(count: usize, batch: usize) -> [u32; 3] {
    [grid_x(count.div_ceil(64)), batch as u32, 1]
}

/// What [`check_task`] evaluates.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Points per problem: θ_0, then θ_0 + `spread`·N(0, 1) perturbations.
    pub points: usize,
    pub spread: f64,
    /// Seed of the perturbations.
    pub seed: u64,
    /// Problems whose gradient is checked by finite differences (the first ones), and coordinates per problem
    /// (evenly spaced; all of them when n is smaller).
    pub fd_problems: usize,
    pub fd_coordinates: usize,
    /// Central-difference step, relative: h_i = fd_step · max(1, |θ_i|).
    pub fd_step: f64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            points: 3,
            spread: 0.5,
            seed: 1,
            fd_problems: 2,
            fd_coordinates: 16,
            fd_step: 1e-5,
        }
    }
}

/// The worst errors [`check_task`] found. Loss errors are relative to |f_b|; gradient errors to max_i |∇f_b,i|
/// of the same problem and point.
#[derive(Clone, Debug)]
pub struct TaskCheck {
    pub task: String,
    pub n: usize,
    pub batch: usize,
    pub precision: l2o_engine::Precision,
    pub points: usize,
    /// Device loss against the oracle loss.
    pub loss_err: f64,
    /// Device gradient against the oracle gradient.
    pub grad_err: f64,
    /// Oracle gradient against central differences of the oracle loss.
    pub fd_err: f64,
}

impl TaskCheck {
    /// Error unless the device is within `device_tol` of the oracle (loss and gradient) and the oracle gradient
    /// within `fd_tol` of finite differences; the message has the whole report.
    pub fn within(&self, device_tol: f64, fd_tol: f64) -> Result<()> {
        if self.loss_err <= device_tol && self.grad_err <= device_tol && self.fd_err <= fd_tol {
            return Ok(());
        }
        bail!(
            "{self} — over the tolerances (device {device_tol:.1e}, finite differences {fd_tol:.1e})"
        )
    }
}

impl std::fmt::Display for TaskCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} n={} B={} {} ({} points): device vs oracle loss {:.2e}, gradient {:.2e}; oracle gradient vs finite \
             differences {:.2e}",
            self.task,
            self.n,
            self.batch,
            self.precision,
            self.points,
            self.loss_err,
            self.grad_err,
            self.fd_err
        )
    }
}

/// Check a task on the device: at θ_0 and `opts.points − 1` perturbed points, its recorded `loss_and_grad`
/// against `oracle_loss_grad` for every problem, and the oracle gradient against central differences of the
/// oracle loss on a few problems and coordinates. Returns the worst errors; assert on them with
/// [`TaskCheck::within`]. For tasks whose evaluations differ call to call (fresh minibatches), check a
/// full-batch configuration.
pub fn check_task(ctx: &Context, task: &dyn Task, opts: &CheckOptions) -> Result<TaskCheck> {
    use rand::{Rng, SeedableRng};
    let (n, b) = (task.dim(), task.batch());
    let theta0 = task.initial_point();
    if theta0.len() != n * b {
        bail!(
            "{}: initial_point() has {} values, expected B × n = {}",
            task.name(),
            theta0.len(),
            n * b
        );
    }
    let th = ctx.upload("check_task theta", &theta0)?;
    let g = ctx.zeros("check_task grad", n * b)?;
    let f = ctx.zeros("check_task loss", b)?;
    let out = ScalarOut {
        buf: &f,
        stride: 1,
        col: 0,
    };
    let d = task.loss_and_grad(ctx, th.view(n), g.view(n), out)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let mut report = TaskCheck {
        task: task.name(),
        n,
        batch: b,
        precision: ctx.precision(),
        points: opts.points.max(1),
        loss_err: 0.0,
        grad_err: 0.0,
        fd_err: 0.0,
    };
    let rel_max = |a: &[f64], want: &[f64]| {
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
        a.iter()
            .zip(want)
            .fold(0.0f64, |m, (x, y)| m.max((x - y).abs() / scale))
    };
    for k in 0..report.points {
        let theta: Vec<f64> = if k == 0 {
            theta0.clone()
        } else {
            theta0
                .iter()
                .map(|t| t + opts.spread * rng.sample::<f64, _>(rand_distr::StandardNormal))
                .collect()
        };
        // the oracle sees θ as the device holds it (rounded to the device precision)
        let p = ctx.precision();
        let theta = p.decode(&p.encode(&theta));
        task.reset(ctx)?;
        ctx.write(&th, 0, &theta)?;
        ctx.submit(&d)?;
        let (fd, gd) = (ctx.read(&f)?, ctx.read(&g)?);
        for pb in 0..b {
            let x = &theta[pb * n..(pb + 1) * n];
            let (fo, go) = task.oracle_loss_grad(pb, x);
            if !fd[pb].is_finite() || gd[pb * n..(pb + 1) * n].iter().any(|v| !v.is_finite()) {
                bail!(
                    "{}: problem {pb}, point {k}: the device returned a non-finite loss or gradient",
                    task.name()
                );
            }
            report.loss_err = report
                .loss_err
                .max((fd[pb] - fo).abs() / fo.abs().max(1e-300));
            report.grad_err = report.grad_err.max(rel_max(&gd[pb * n..(pb + 1) * n], &go));
            if pb < opts.fd_problems {
                let step = (n / opts.fd_coordinates.max(1)).max(1);
                let mut fdg = vec![];
                let mut og = vec![];
                for i in (0..n).step_by(step).take(opts.fd_coordinates.max(1)) {
                    let h = opts.fd_step * x[i].abs().max(1.0);
                    let (mut xp, mut xm) = (x.to_vec(), x.to_vec());
                    xp[i] += h;
                    xm[i] -= h;
                    fdg.push(
                        (task.oracle_loss_grad(pb, &xp).0 - task.oracle_loss_grad(pb, &xm).0)
                            / (2.0 * h),
                    );
                    og.push(go[i]);
                }
                // relative to the whole gradient's scale, as for the device
                let scale = go.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
                let e = fdg
                    .iter()
                    .zip(&og)
                    .fold(0.0f64, |m, (a, c)| m.max((a - c).abs() / scale));
                report.fd_err = report.fd_err.max(e);
            }
        }
    }
    Ok(report)
}
