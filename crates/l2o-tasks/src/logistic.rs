//! ℓ2-regularised binary logistic regression on synthetic data.

use anyhow::{Context as _, Result, bail};
use l2o_engine::{Context, DBuf, Dispatch, ScalarOut, View, sum};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::{TASKS, Task, TaskParams, check_dims, check_fits, check_views, grid, normal};

/// Default number of samples N per problem.
pub const DEFAULT_SAMPLES: usize = 100;
/// Default ridge coefficient λ.
pub const DEFAULT_LAMBDA: f64 = 1e-3;

/// Binary logistic regression, one synthetic data set per problem: N samples x_s ~ N(0, I_n), a true
/// w* ~ N(0, I_n), labels y_s = 1[x_s·w* + 0.5 ε_s > 0] with ε_s ~ N(0, 1). With z_s = x_s·θ,
///
/// f(θ) = (1/N) Σ_s [softplus(z_s) − y_s z_s] + (λ/2)‖θ‖²,   ∇f(θ) = (1/N) Σ_s (σ(z_s) − y_s) x_s + λθ,
///
/// softplus(z) = max(z, 0) + log(1 + e^{−|z|}) and σ(z) computed from e^{−|z|} too (no overflow; the kernel
/// uses the prelude's r_exp/r_log, correct in f64). θ_0 = 0.
///
/// Kernels: z_s, the loss term and σ(z_s) − y_s per (sample, problem); then the gradient and the ridge terms
/// (λ/2)θ_j² per (feature, problem); f = sum of the N + n terms (tree sum).
pub struct Logistic {
    n: usize,
    batch: usize,
    samples: usize,
    lambda: f64,
    /// Features, B × N × n (row-major per problem).
    x: Vec<f64>,
    /// Labels in {0, 1}, B × N.
    y: Vec<f64>,
    /// The w* that generated the labels, B × n.
    w_true: Vec<f64>,
    x_buf: DBuf,
    y_buf: DBuf,
    consts: DBuf,
    /// Loss terms, B × (N + n).
    terms: DBuf,
    /// (σ(z_s) − y_s)/N, B × N.
    coef: DBuf,
}

impl Logistic {
    /// N = 100 samples, λ = 1e-3.
    pub fn sample(ctx: &Context, n: usize, batch: usize, seed: u64) -> Result<Self> {
        Self::with_options(ctx, n, batch, DEFAULT_SAMPLES, DEFAULT_LAMBDA, seed)
    }

    /// Draw, per problem, w* (n), then the N samples (x_s, then ε_s) from `seed`.
    pub fn with_options(
        ctx: &Context,
        n: usize,
        batch: usize,
        samples: usize,
        lambda: f64,
        seed: u64,
    ) -> Result<Self> {
        check_dims("logistic", n, batch)?;
        if samples == 0 {
            bail!("logistic: the number of samples must be at least 1");
        }
        if !(lambda.is_finite() && lambda >= 0.0) {
            bail!("logistic: λ = {lambda} must be finite and ≥ 0");
        }
        let shape = format!("logistic task (n = {n}, batch = {batch}, samples = {samples})");
        check_fits(
            ctx,
            &format!("{shape}: X (batch × samples × n)"),
            &[batch, samples, n],
        )?;
        check_fits(
            ctx,
            &format!("{shape}: loss terms (batch × (samples + n))"),
            &[batch, samples + n],
        )?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut x = Vec::with_capacity(batch * samples * n);
        let mut y = Vec::with_capacity(batch * samples);
        let mut w_true = Vec::with_capacity(batch * n);
        for _ in 0..batch {
            let w: Vec<f64> = (0..n).map(|_| normal(&mut rng)).collect();
            for _ in 0..samples {
                let xs: Vec<f64> = (0..n).map(|_| normal(&mut rng)).collect();
                let margin =
                    xs.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() + 0.5 * normal(&mut rng);
                y.push(if margin > 0.0 { 1.0 } else { 0.0 });
                x.extend(xs);
            }
            w_true.extend(w);
        }
        let x_buf = ctx
            .upload("logistic X", &x)
            .with_context(|| format!("{shape}: uploading X"))?;
        let y_buf = ctx.upload("logistic labels", &y)?;
        let consts = ctx.upload("logistic lambda", &[lambda])?;
        let terms = ctx.zeros("logistic terms", batch * (samples + n))?;
        let coef = ctx.zeros("logistic coefficients", batch * samples)?;
        Ok(Self {
            n,
            batch,
            samples,
            lambda,
            x,
            y,
            w_true,
            x_buf,
            y_buf,
            consts,
            terms,
            coef,
        })
    }

    /// Number of samples N per problem.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// The ridge coefficient λ.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// Features, B × N × n.
    pub fn features(&self) -> &[f64] {
        &self.x
    }

    /// Labels in {0, 1}, B × N.
    pub fn labels(&self) -> &[f64] {
        &self.y
    }

    /// The generating weights w*, B × n.
    pub fn true_weights(&self) -> &[f64] {
        &self.w_true
    }
}

/// softplus(z) = log(1 + e^z), stable.
fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

/// σ(z) = 1/(1 + e^{−z}), stable.
fn sigmoid(z: f64) -> f64 {
    let e = (-z.abs()).exp();
    if z >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    }
}

impl Task for Logistic {
    fn name(&self) -> String {
        "logistic".into()
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
        let (n, b, m) = (self.n, self.batch, self.samples);
        check_views("logistic", &theta, &grad, n, b)?;
        let p = ctx.params_of(&TaskParams::new(n, b, &theta, &grad, m, m + n));
        let binds = [
            &p,
            &theta.buf.buf,
            &grad.buf.buf,
            &self.x_buf.buf,
            &self.y_buf.buf,
            &self.consts.buf,
            &self.terms.buf,
            &self.coef.buf,
        ];
        let mut d = vec![
            ctx.dispatch(&TASKS, "logit_z", &binds, grid(m, b))?,
            ctx.dispatch(&TASKS, "logit_grad", &binds, grid(n, b))?,
        ];
        d.extend(sum(ctx, m + n, b, self.terms.view(m + n), out)?);
        Ok(d)
    }

    fn initial_point(&self) -> Vec<f64> {
        vec![0.0; self.batch * self.n]
    }

    fn oracle_loss_grad(&self, b: usize, theta: &[f64]) -> (f64, Vec<f64>) {
        let (n, m) = (self.n, self.samples);
        let inv = 1.0 / m as f64;
        let mut f = 0.5 * self.lambda * theta.iter().map(|t| t * t).sum::<f64>();
        let mut g: Vec<f64> = theta.iter().map(|t| self.lambda * t).collect();
        for s in 0..m {
            let xs = &self.x[(b * m + s) * n..(b * m + s + 1) * n];
            let y = self.y[b * m + s];
            let z: f64 = xs.iter().zip(theta).map(|(a, t)| a * t).sum();
            f += inv * (softplus(z) - y * z);
            let c = inv * (sigmoid(z) - y);
            for (gj, xj) in g.iter_mut().zip(xs) {
                *gj += c * xj;
            }
        }
        (f, g)
    }
}
