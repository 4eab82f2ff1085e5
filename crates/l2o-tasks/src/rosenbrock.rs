//! The extended Rosenbrock function.

use anyhow::{Result, bail};
use l2o_engine::{Context, DBuf, Dispatch, ScalarOut, View, sum};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::{TASKS, Task, TaskParams, check_dims, check_fits, check_views, grid, normal};

/// Extended Rosenbrock, n even:
///
/// f(x) = Σ_{i<n/2} 100 (x_{2i+1} − x_{2i}²)² + (1 − x_{2i})²,
/// ∂f/∂x_{2i} = −400 x_{2i} (x_{2i+1} − x_{2i}²) − 2 (1 − x_{2i}),  ∂f/∂x_{2i+1} = 200 (x_{2i+1} − x_{2i}²).
///
/// Minimum f = 0 at x = (1, …, 1). θ_0 is the classic (−1.2, 1) repeated; [`Rosenbrock::sample`] adds an
/// N(0, 0.1²) perturbation per coordinate (so the B problems differ), [`Rosenbrock::classic`] does not.
/// One kernel (thread per pair, per problem) writes the n/2 terms and the gradient; f = Σ terms (tree sum).
pub struct Rosenbrock {
    n: usize,
    batch: usize,
    theta0: Vec<f64>,
    /// Per-pair loss terms, B × n/2.
    terms: DBuf,
    /// Bound to the unused read slots (data, constants).
    no_data: DBuf,
    /// Bound to the unused second scratch slot.
    unused: DBuf,
}

/// Standard deviation of the θ_0 perturbation of [`Rosenbrock::sample`].
pub const PERTURBATION: f64 = 0.1;

impl Rosenbrock {
    /// θ_0 = (−1.2, 1, −1.2, 1, …) + N(0, 0.1²) i.i.d. per coordinate and problem, from `seed`.
    pub fn sample(ctx: &Context, n: usize, batch: usize, seed: u64) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        Self::build(ctx, n, batch, |_| PERTURBATION * normal(&mut rng))
    }

    /// θ_0 = (−1.2, 1, −1.2, 1, …) for every problem.
    pub fn classic(ctx: &Context, n: usize, batch: usize) -> Result<Self> {
        Self::build(ctx, n, batch, |_| 0.0)
    }

    fn build(
        ctx: &Context,
        n: usize,
        batch: usize,
        mut noise: impl FnMut(usize) -> f64,
    ) -> Result<Self> {
        check_dims("rosenbrock", n, batch)?;
        if !n.is_multiple_of(2) {
            bail!(
                "rosenbrock: the extended Rosenbrock function needs an even dimension (got n = {n})"
            );
        }
        check_fits(
            ctx,
            &format!("rosenbrock task (n = {n}, batch = {batch}): theta (batch × n)"),
            &[batch, n],
        )?;
        let theta0 = (0..batch * n)
            .map(|k| if k % 2 == 0 { -1.2 } else { 1.0 } + noise(k))
            .collect();
        let terms = ctx.zeros("rosenbrock terms", batch * n / 2)?;
        let no_data = ctx.zeros("rosenbrock no data", 1)?;
        let unused = ctx.zeros("rosenbrock unused", 1)?;
        Ok(Self {
            n,
            batch,
            theta0,
            terms,
            no_data,
            unused,
        })
    }
}

impl Task for Rosenbrock {
    fn name(&self) -> String {
        "rosenbrock".into()
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
        let (n, b, m) = (self.n, self.batch, self.n / 2);
        check_views("rosenbrock", &theta, &grad, n, b)?;
        let p = ctx.params_of(&TaskParams::new(n, b, &theta, &grad, m, m));
        let nd = &self.no_data.buf;
        let binds = [
            &p,
            &theta.buf.buf,
            &grad.buf.buf,
            nd,
            nd,
            nd,
            &self.terms.buf,
            &self.unused.buf,
        ];
        let mut d = vec![ctx.dispatch(&TASKS, "rosen", &binds, grid(m, b))?];
        d.extend(sum(ctx, m, b, self.terms.view(m), out)?);
        Ok(d)
    }

    fn initial_point(&self) -> Vec<f64> {
        self.theta0.clone()
    }

    fn oracle_loss_grad(&self, _b: usize, x: &[f64]) -> (f64, Vec<f64>) {
        let mut f = 0.0;
        let mut g = vec![0.0; self.n];
        for i in 0..self.n / 2 {
            let (x0, x1) = (x[2 * i], x[2 * i + 1]);
            let d = x1 - x0 * x0;
            let e = 1.0 - x0;
            f += 100.0 * d * d + e * e;
            g[2 * i] = -400.0 * x0 * d - 2.0 * e;
            g[2 * i + 1] = 200.0 * d;
        }
        (f, g)
    }
}
