//! Hand-designed first-order optimizers (SGD, heavy ball, Nesterov, RMSprop, Adam, AdaGrad): one elementwise
//! kernel of `shaders/maps.wgsl` per step (equations there), then the task's loss and gradient at the new θ.
//! [`FirstOrder::reference_step`] is the f64 CPU reference of the same update.

use anyhow::Result;
use l2o_engine::shaders::MAPS;
use l2o_engine::{Context, DBuf, Dispatch, cols, dot, grid_x};
use l2o_tasks::Task;

use crate::driver::{Optimizer, State};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sgd,
    HeavyBall,
    Nesterov,
    RmsProp,
    Adam,
    AdaGrad,
}

impl Kind {
    pub fn entry(self) -> &'static str {
        match self {
            Kind::Sgd => "sgd",
            Kind::HeavyBall => "heavy_ball",
            Kind::Nesterov => "nesterov",
            Kind::RmsProp => "rmsprop",
            Kind::Adam => "adam",
            Kind::AdaGrad => "adagrad",
        }
    }
    /// Selector of the `update` kernel in `shaders/maps.wgsl`.
    pub fn code(self) -> u32 {
        match self {
            Kind::Sgd => 0,
            Kind::HeavyBall => 1,
            Kind::Nesterov => 2,
            Kind::RmsProp => 3,
            Kind::Adam => 4,
            Kind::AdaGrad => 5,
        }
    }
    /// Default learning rate (before tuning).
    pub fn default_lr(self) -> f64 {
        match self {
            Kind::Sgd | Kind::HeavyBall | Kind::Nesterov => 0.01,
            Kind::RmsProp | Kind::Adam => 0.01,
            Kind::AdaGrad => 0.1,
        }
    }
}

/// Hyperparameters: lr, β1 (momentum μ for heavy ball / Nesterov), β2 (decay ρ for RMSprop), ε.
#[derive(Clone, Copy, Debug)]
pub struct Hyper {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

#[derive(Debug)]
pub struct FirstOrder {
    pub kind: Kind,
    pub hyper: Hyper,
    dispatches: Vec<Dispatch>,
    bufs: Vec<DBuf>,
}

const P1: usize = 4;
const P2: usize = 5;

impl FirstOrder {
    /// Usual defaults: momentum 0.9; RMSprop ρ = 0.9, ε = 1e-8; Adam (0.9, 0.999, 1e-8); AdaGrad ε = 1e-10.
    pub fn new(kind: Kind, lr: f64) -> Self {
        let hyper = match kind {
            Kind::Sgd => Hyper {
                lr,
                beta1: 0.0,
                beta2: 0.0,
                eps: 0.0,
            },
            Kind::HeavyBall | Kind::Nesterov => Hyper {
                lr,
                beta1: 0.9,
                beta2: 0.0,
                eps: 0.0,
            },
            Kind::RmsProp => Hyper {
                lr,
                beta1: 0.0,
                beta2: 0.9,
                eps: 1e-8,
            },
            Kind::Adam => Hyper {
                lr,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            Kind::AdaGrad => Hyper {
                lr,
                beta1: 0.0,
                beta2: 0.0,
                eps: 1e-10,
            },
        };
        Self {
            kind,
            hyper,
            dispatches: vec![],
            bufs: vec![],
        }
    }

    /// f64 CPU reference of one update of one problem (m, v: the optimizer's state, t: 1-based step).
    pub fn reference_step(
        &self,
        theta: &mut [f64],
        g: &[f64],
        m: &mut [f64],
        v: &mut [f64],
        t: usize,
    ) {
        let Hyper {
            lr,
            beta1: b1,
            beta2: b2,
            eps,
        } = self.hyper;
        for i in 0..theta.len() {
            let gi = g[i];
            match self.kind {
                Kind::Sgd => theta[i] -= lr * gi,
                Kind::HeavyBall => {
                    m[i] = b1 * m[i] + gi;
                    theta[i] -= lr * m[i];
                }
                Kind::Nesterov => {
                    m[i] = b1 * m[i] + gi;
                    theta[i] -= lr * (gi + b1 * m[i]);
                }
                Kind::RmsProp => {
                    v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                    theta[i] -= lr * gi / (v[i].sqrt() + eps);
                }
                Kind::Adam => {
                    m[i] = b1 * m[i] + (1.0 - b1) * gi;
                    v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                    let (c1, c2) = (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32));
                    theta[i] -= lr * (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
                }
                Kind::AdaGrad => {
                    v[i] += gi * gi;
                    theta[i] -= lr * gi / (v[i].sqrt() + eps);
                }
            }
        }
    }
}

/// Record one elementwise update of `kind` for B problems (θ, g, m, v: B × n; hyper = [lr, β1, β2, ε];
/// Adam's β1^t, β2^t in scalar columns 4 and 5, advanced first by `adam_powers`). Frozen problems are skipped.
#[allow(clippy::too_many_arguments)]
pub fn map_update(
    ctx: &Context,
    kind: Kind,
    n: usize,
    batch: usize,
    hyper: &DBuf,
    theta: &DBuf,
    grad: &DBuf,
    m: &DBuf,
    v: &DBuf,
    scal: &DBuf,
    scal_stride: usize,
    status: &DBuf,
) -> Result<Vec<Dispatch>> {
    theta.view(n).check("update: theta", n, batch)?;
    grad.view(n).check("update: grad", n, batch)?;
    if matches!(kind, Kind::HeavyBall | Kind::Nesterov | Kind::Adam) {
        m.view(n).check("update: m", n, batch)?;
    }
    if matches!(kind, Kind::RmsProp | Kind::Adam | Kind::AdaGrad) {
        v.view(n).check("update: v", n, batch)?;
    }
    anyhow::ensure!(
        scal_stride > P2 && scal.len >= batch * scal_stride,
        "update: scalar table too small"
    );
    anyhow::ensure!(
        hyper.len >= 4 && status.len >= batch,
        "update: hyper needs 4 values and status B"
    );
    let params = ctx.params(&[
        n as u32,
        batch as u32,
        n as u32,
        scal_stride as u32,
        P1 as u32,
        P2 as u32,
        kind.code(),
        0,
    ]);
    let binds = [
        &params,
        &hyper.buf,
        &theta.buf,
        &grad.buf,
        &m.buf,
        &v.buf,
        &scal.buf,
        &status.buf,
    ];
    let mut d = vec![];
    if kind == Kind::Adam {
        d.push(ctx.dispatch(
            &MAPS,
            "adam_powers",
            &binds,
            [batch.div_ceil(64) as u32, 1, 1],
        )?);
    }
    d.push(ctx.dispatch(
        &MAPS,
        "update",
        &binds,
        [grid_x(n.div_ceil(256)), batch as u32, 1],
    )?);
    Ok(d)
}

impl Optimizer for FirstOrder {
    fn name(&self) -> String {
        format!("{}(lr={})", self.kind.entry(), self.hyper.lr)
    }
    fn scalar_columns(&self) -> usize {
        6
    }
    fn initial_scalars(&self) -> Vec<(usize, f64)> {
        vec![(P1, 1.0), (P2, 1.0)]
    }
    fn init(&mut self, ctx: &Context, task: &dyn Task, st: &State) -> Result<()> {
        let (n, b) = (st.n, st.batch);
        let h = self.hyper;
        let hyper = ctx.upload("hyper", &[h.lr, h.beta1, h.beta2, h.eps])?;
        let mbuf = ctx.zeros(
            "m",
            if matches!(self.kind, Kind::HeavyBall | Kind::Nesterov | Kind::Adam) {
                b * n
            } else {
                1
            },
        )?;
        let vbuf = ctx.zeros(
            "v",
            if matches!(self.kind, Kind::RmsProp | Kind::Adam | Kind::AdaGrad) {
                b * n
            } else {
                1
            },
        )?;
        let mut d = map_update(
            ctx, self.kind, n, b, &hyper, &st.theta, &st.grad, &mbuf, &vbuf, &st.scal, st.stride,
            &st.status,
        )?;
        d.extend(task.loss_and_grad(ctx, st.theta.view(n), st.grad.view(n), st.out(cols::F))?);
        d.extend(dot(
            ctx,
            n,
            b,
            st.grad.view(n),
            st.grad.view(n),
            st.out(cols::G2),
            None,
        )?);
        self.dispatches = d;
        self.bufs = vec![hyper, mbuf, vbuf];
        Ok(())
    }
    fn step(&mut self, ctx: &Context, _task: &dyn Task, _st: &State, _k: usize) -> Result<()> {
        ctx.submit(&self.dispatches)
    }
}
