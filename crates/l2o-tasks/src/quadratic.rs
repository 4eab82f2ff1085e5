//! Random quadratics (Andrychowicz et al. 2016, §3.1).

use anyhow::{Context as _, Result, bail};
use l2o_engine::{Context, DBuf, Dispatch, ScalarOut, View, dot, grid_x};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::{TASKS, Task, TaskParams, check_dims, check_fits, check_views, grid, normal};

/// f_b(θ) = ‖W_b θ − y_b‖², ∇f_b(θ) = 2 W_bᵀ (W_b θ − y_b), with W_b ∈ R^{n×n} and y_b ∈ R^n per problem.
///
/// [`Quadratic::sample`] draws W, y and θ_0 with i.i.d. N(0, 1) entries. W takes B·n² device elements, which
/// must fit `max_storage_buffer_binding_size` (128 MiB on lavapipe: n = 1000 fits B ≤ 33 in f32).
///
/// Kernels: the residual r = Wθ − y (one thread per (row, problem)) into a scratch buffer, the gradient 2Wᵀr
/// (one thread per (column, problem)), then f = ⟨r, r⟩ with the engine's dot product; for n ≤ [`SMALL_N`] one
/// thread per problem does all three in one dispatch (the L2L quadratics: on the software adapter the three
/// dispatches of 128 small workgroups cost 20× the arithmetic).
/// Largest n for the one-dispatch, thread-per-problem kernel.
pub const SMALL_N: usize = 32;

pub struct Quadratic {
    n: usize,
    batch: usize,
    w: Vec<f64>,
    y: Vec<f64>,
    theta0: Vec<f64>,
    w_buf: DBuf,
    y_buf: DBuf,
    /// Residual scratch, B × n.
    r: DBuf,
    /// Bound to the unused second scratch slot.
    unused: DBuf,
}

impl Quadratic {
    /// Draw W (B·n², row-major per problem), y (B·n), then θ_0 (B·n), all N(0, 1), from `seed`.
    pub fn sample(ctx: &Context, n: usize, batch: usize, seed: u64) -> Result<Self> {
        check_dims("quadratic", n, batch)?;
        check_fits(
            ctx,
            &format!("quadratic task (n = {n}, batch = {batch}): W (batch × n × n)"),
            &[batch, n, n],
        )?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut w = Vec::with_capacity(batch * n * n);
        let mut y = Vec::with_capacity(batch * n);
        for _ in 0..batch {
            w.extend((0..n * n).map(|_| normal(&mut rng)));
            y.extend((0..n).map(|_| normal(&mut rng)));
        }
        let theta0 = (0..batch * n).map(|_| normal(&mut rng)).collect();
        Self::from_parts(ctx, n, batch, w, y, theta0)
    }

    /// Ill-conditioned quadratics f_b(θ) = ‖W_b(θ − θ*_b)‖² (the HLSTM study, docs/hlstm.md §5): W = D, or
    /// W = D Qᵀ with a random orthogonal Q when `rotated`, where D = diag(d), d_i² = κ^{u_i} with u_0 = 0,
    /// u_{n−1} = 1 and the other u_i uniform on [0, 1], so that WᵀW has condition number exactly κ, drawn
    /// log-uniformly from [`kappa.0`, `kappa.1`] per problem; θ* and θ_0 are N(0, 1). The unrotated family is
    /// axis-aligned (the best case for coordinatewise methods); the rotated one has the same spectra in a random
    /// basis. The minimum is f = 0.
    pub fn conditioned(
        ctx: &Context,
        n: usize,
        batch: usize,
        seed: u64,
        kappa: (f64, f64),
        rotated: bool,
    ) -> Result<Self> {
        use rand::Rng;
        check_dims("quadratic", n, batch)?;
        check_fits(
            ctx,
            &format!("conditioned quadratic task (n = {n}, batch = {batch}): W (batch × n × n)"),
            &[batch, n, n],
        )?;
        if !(kappa.0 >= 1.0 && kappa.1 >= kappa.0 && kappa.1.is_finite()) {
            bail!("conditioned quadratic: condition range {kappa:?} must satisfy 1 ≤ lo ≤ hi < ∞");
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut w = vec![0.0; batch * n * n];
        let mut y = Vec::with_capacity(batch * n);
        for b in 0..batch {
            let k = (kappa.0.ln() + rng.random::<f64>() * (kappa.1 / kappa.0).ln()).exp();
            let d: Vec<f64> = (0..n)
                .map(|i| {
                    let u = if i == 0 {
                        0.0
                    } else if i == n - 1 {
                        1.0
                    } else {
                        rng.random::<f64>()
                    };
                    k.powf(u).sqrt()
                })
                .collect();
            let wb = &mut w[b * n * n..(b + 1) * n * n];
            if rotated {
                let q = random_orthogonal(&mut rng, n);
                for i in 0..n {
                    for j in 0..n {
                        wb[i * n + j] = d[i] * q[j * n + i];
                    }
                }
            } else {
                for i in 0..n {
                    wb[i * n + i] = d[i];
                }
            }
            let xs: Vec<f64> = (0..n).map(|_| normal(&mut rng)).collect();
            y.extend((0..n).map(|i| (0..n).map(|j| wb[i * n + j] * xs[j]).sum::<f64>()));
        }
        let theta0 = (0..batch * n).map(|_| normal(&mut rng)).collect();
        Self::from_parts(ctx, n, batch, w, y, theta0)
    }

    /// A task with known data: `w` is B × n × n (row-major per problem), `y` and `theta0` are B × n.
    pub fn from_parts(
        ctx: &Context,
        n: usize,
        batch: usize,
        w: Vec<f64>,
        y: Vec<f64>,
        theta0: Vec<f64>,
    ) -> Result<Self> {
        check_dims("quadratic", n, batch)?;
        check_fits(
            ctx,
            &format!("quadratic task (n = {n}, batch = {batch}): W (batch × n × n)"),
            &[batch, n, n],
        )?;
        if w.len() != batch * n * n {
            bail!(
                "quadratic: W has {} values, expected batch·n² = {}·{n}² = {}",
                w.len(),
                batch,
                batch * n * n
            );
        }
        if y.len() != batch * n || theta0.len() != batch * n {
            bail!(
                "quadratic: y has {} and theta0 {} values, expected batch·n = {}",
                y.len(),
                theta0.len(),
                batch * n
            );
        }
        if let Some(i) = theta0.iter().position(|x| !x.is_finite()) {
            bail!("quadratic: theta0[{i}] = {} is not finite", theta0[i]);
        }
        let shape = format!("quadratic task (n = {n}, batch = {batch})");
        let w_buf = ctx
            .upload("quadratic W", &w)
            .with_context(|| format!("{shape}: uploading W"))?;
        let y_buf = ctx
            .upload("quadratic y", &y)
            .with_context(|| format!("{shape}: uploading y"))?;
        let r = ctx
            .zeros("quadratic residual", batch * n)
            .with_context(|| shape.clone())?;
        let unused = ctx.zeros("quadratic unused", 1)?;
        Ok(Self {
            n,
            batch,
            w,
            y,
            theta0,
            w_buf,
            y_buf,
            r,
            unused,
        })
    }

    /// W, B × n × n row-major per problem.
    pub fn w(&self) -> &[f64] {
        &self.w
    }

    /// y, B × n.
    pub fn y(&self) -> &[f64] {
        &self.y
    }
}

impl Task for Quadratic {
    fn name(&self) -> String {
        "quadratic".into()
    }

    fn dim(&self) -> usize {
        self.n
    }

    fn batch(&self) -> usize {
        self.batch
    }

    fn loss_and_grad(
        &self,
        ctx: &Context,
        theta: View,
        grad: View,
        out: ScalarOut,
    ) -> Result<Vec<Dispatch>> {
        let (n, b) = (self.n, self.batch);
        check_views("quadratic", &theta, &grad, n, b)?;
        // n ≤ SMALL_N: one thread per problem, one dispatch (the loss goes straight to the output column)
        let small = n <= SMALL_N;
        let (col, stride, last) = if small {
            out.check(b, 1)?;
            (out.col, out.stride, &out.buf.buf)
        } else {
            (0, n, &self.unused.buf)
        };
        let p = ctx.params_of(&TaskParams::new(n, b, &theta, &grad, col, stride));
        let binds = [
            &p,
            &theta.buf.buf,
            &grad.buf.buf,
            &self.w_buf.buf,
            &self.y_buf.buf,
            &self.y_buf.buf,
            &self.r.buf,
            last,
        ];
        if small {
            return Ok(vec![ctx.dispatch(
                &TASKS,
                "quad_small",
                &binds,
                [grid_x(b.div_ceil(64)), 1, 1],
            )?]);
        }
        let mut d = vec![
            ctx.dispatch(&TASKS, "quad_residual", &binds, grid(n, b))?,
            ctx.dispatch(&TASKS, "quad_grad", &binds, grid(n, b))?,
        ];
        d.extend(dot(ctx, n, b, self.r.view(n), self.r.view(n), out, None)?);
        Ok(d)
    }

    fn initial_point(&self) -> Vec<f64> {
        self.theta0.clone()
    }

    fn oracle_loss_grad(&self, b: usize, theta: &[f64]) -> (f64, Vec<f64>) {
        let n = self.n;
        let w = &self.w[b * n * n..(b + 1) * n * n];
        let y = &self.y[b * n..(b + 1) * n];
        let r: Vec<f64> = (0..n)
            .map(|i| (0..n).map(|j| w[i * n + j] * theta[j]).sum::<f64>() - y[i])
            .collect();
        let f = r.iter().map(|v| v * v).sum();
        let g = (0..n)
            .map(|j| 2.0 * (0..n).map(|i| w[i * n + j] * r[i]).sum::<f64>())
            .collect();
        (f, g)
    }
}

/// A Haar-random orthogonal n×n matrix (row-major): modified Gram–Schmidt on a Gaussian matrix, columns q_j.
pub fn random_orthogonal(rng: &mut StdRng, n: usize) -> Vec<f64> {
    let a: Vec<f64> = (0..n * n).map(|_| normal(rng)).collect();
    let mut cols: Vec<Vec<f64>> = Vec::with_capacity(n);
    for j in 0..n {
        let mut v: Vec<f64> = (0..n).map(|i| a[i * n + j]).collect();
        for u in &cols {
            let d: f64 = u.iter().zip(&v).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(u).for_each(|(x, y)| *x -= d * y);
        }
        let nv = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.iter_mut().for_each(|x| *x /= nv);
        cols.push(v);
    }
    (0..n * n).map(|ij| cols[ij % n][ij / n]).collect()
}
