//! The L-BFGS-π step-size policy (seed 003 §5) as a [`LearnedOptimizer`]: truncated BPTT on the device
//! ([`crate::policy::device::PolicyTrainer`]), driven by the shared loop [`crate::train::train`].
//!
//! The outer objective of one outer step is F(φ) = (1/B) Σ_b Σ_{k=1..K} w_k f_b(x_k), w_k = 1, over K inner
//! L-BFGS-π steps (`unroll` = K, seed: 50) from an empty memory; T = `horizon`/K outer steps (seed: 8) form an
//! episode, each starting at the previous x_K (x0 ← x_K), and a problem whose ‖g‖ fell below 1e-10 restarts
//! from its initial point. One meta-update per outer step, ADADELTA with learning rate 1 by default (seed).
//!
//! An epoch here is one episode on a batch of B training problems drawn with the epoch's seed (for MNIST:
//! B networks, each with its own x0 and its own fixed set of training images); the seed's epoch over 60 fixed
//! tasks is 60/B of ours. Validation runs the device L-BFGS-π with φ on fixed validation problems for the
//! horizon and keeps the best φ by the mean of ln f over problems and steps ([`evaluate_policy`]).

use std::path::Path;

use anyhow::{Result, bail};
use l2o_engine::Context;
use l2o_optim::step_policy::PolicyConfig;
use l2o_optim::{Lbfgs, Optimizer, RunOptions, run};
use l2o_tasks::Task;

use crate::learned::{self, About, LearnedOptimizer, TrainDefaults, Unroll, UnrollTrainer};
use crate::policy::device::PolicyTrainer;
use crate::state::{TrainConfig, TrainState};

/// A fresh policy training state: φ initialised from `seed`.
pub fn new_policy_state(policy: PolicyConfig, train: TrainConfig) -> Result<TrainState> {
    learned::new_state(&Policy(policy), train)
}

/// Validation score of L-BFGS-π with φ on the device: the mean over problems and steps 1..=steps of ln f(x_k)
/// (f floored at 1e-300; a non-finite f scores +∞). Not the arithmetic mean: L-BFGS with a step in [e^τm, 1] and
/// no line search can spike (on MNIST f reached 1e12 for a few steps before recovering), and one spike would
/// dominate an arithmetic mean.
pub fn evaluate_policy(
    ctx: &Context,
    cfg: &PolicyConfig,
    phi: &[f64],
    task: &dyn Task,
    steps: usize,
) -> Result<f64> {
    let tr = run(
        ctx,
        task,
        &mut Lbfgs::with_policy(*cfg, phi.to_vec())?,
        &RunOptions::fixed(steps),
        &mut |_| {},
    )?;
    let mut s = 0.0;
    for row in &tr.f[1..] {
        for &f in row {
            s += if f.is_finite() {
                f.max(1e-300).ln()
            } else {
                f64::INFINITY
            };
        }
    }
    Ok(s / (steps * task.batch()) as f64)
}

/// L-BFGS-π's step-size policy as a [`LearnedOptimizer`]: an unroll is one outer step of K inner L-BFGS-π
/// steps.
#[derive(Clone, Copy, Debug)]
pub struct Policy(pub PolicyConfig);

/// [`PolicyTrainer`] with the bound problems' initial points, from which a problem that converged (or
/// diverged) in an outer step starts again.
struct PolicyShard {
    dev: PolicyTrainer,
    x0: Vec<f64>,
    n: usize,
    steps: usize,
}

impl UnrollTrainer for PolicyShard {
    fn bind(&mut self, ctx: &Context, task: &dyn Task) -> Result<()> {
        self.dev.bind(ctx, task)?;
        self.x0 = task.initial_point();
        self.n = task.dim();
        Ok(())
    }

    /// One outer step (each continues from the previous x_K).
    fn unroll(&mut self, ctx: &Context, _u: usize, phi: &[f64]) -> Result<Unroll> {
        let r = self.dev.run(ctx, phi)?;
        let (n, k) = (self.n, self.steps);
        // a problem that converged (or diverged) starts again from its initial point
        for (b, g) in r.gnorm.iter().enumerate() {
            let lost = r.losses[b * (k + 1) + k];
            if !(*g >= 1e-10) || !lost.is_finite() {
                self.dev.set_x(ctx, b, &self.x0[b * n..(b + 1) * n])?;
            }
        }
        Ok(Unroll {
            meta_loss: r.meta_loss,
            dphi: r.dphi,
        })
    }
}

/// Seed 003: K = 50 inner steps per outer step, 8 outer steps, ADADELTA with learning rate 1.
const ABOUT: About = About {
    name: "L-BFGS-π",
    short_name: "L-BFGS-π",
    flag: "lbfgs-policy",
    defaults: TrainDefaults {
        horizon: 400,
        unroll: 50,
        meta_optimizer: "adadelta",
        meta_lr: 1.0,
    },
};

impl LearnedOptimizer for Policy {
    fn about(&self) -> &'static About {
        &ABOUT
    }
    fn check_resume(&self, state: &TrainState) -> Result<()> {
        anyhow::ensure!(
            state.policy == Some(self.0),
            "checkpoint holds the policy {:?}, but the command asks for {:?}",
            state.policy,
            self.0
        );
        Ok(())
    }
    /// The score is the mean of ln f: shown as exp(score).
    fn score_shown(&self, score: f64) -> (f64, &'static str) {
        (score.exp(), "validation: exp(mean ln f) over the horizon")
    }
    fn unroll_name(&self) -> &'static str {
        "inner steps per outer step"
    }
    fn check(&self) -> Result<()> {
        self.0.validate()
    }
    fn init(&self, seed: u64) -> Vec<f64> {
        self.0.init(seed)
    }
    fn install(&self, state: &mut TrainState) {
        state.policy = Some(self.0);
    }
    fn trainer(
        &self,
        ctx: &Context,
        n: usize,
        batch: usize,
        steps: usize,
    ) -> Result<Box<dyn UnrollTrainer>> {
        let weights = vec![1.0; steps];
        Ok(Box::new(PolicyShard {
            dev: PolicyTrainer::new(ctx, &self.0, n, batch, &weights)?,
            x0: vec![],
            n,
            steps,
        }))
    }
    fn score(&self, ctx: &Context, phi: &[f64], task: &dyn Task, steps: usize) -> Result<f64> {
        evaluate_policy(ctx, &self.0, phi, task, steps)
    }
    fn optimizer(&self, phi: Vec<f64>) -> Result<Box<dyn Optimizer>> {
        Ok(Box::new(Lbfgs::with_policy(self.0, phi)?))
    }
}

/// L-BFGS-π with the best φ of a checkpoint written by `l2o train --optimizer lbfgs-policy`, ready for
/// [`l2o_optim::run`] or any driver (an error names the file when it is missing, corrupt or holds an LSTM).
pub fn policy_optimizer(path: &Path) -> Result<Lbfgs> {
    let st = crate::checkpoint::load(path)?;
    let Some(pc) = st.policy else {
        bail!(
            "{} holds {}, not an L-BFGS-π policy (use l2o_meta::load_optimizer for any checkpoint)",
            path.display(),
            if st.hlstm.is_some() {
                "a Hilbert LSTM"
            } else {
                "an L2L LSTM"
            }
        );
    };
    Lbfgs::with_policy(pc, st.best_phi)
}
