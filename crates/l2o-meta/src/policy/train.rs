//! Meta-training of the L-BFGS-π step-size policy (seed 003 §5) by truncated BPTT on the device
//! ([`crate::policy::device::PolicyTrainer`]).
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
use l2o_optim::{Lbfgs, RunOptions, run};
use l2o_tasks::Task;

use crate::policy::device::PolicyTrainer;
use crate::state::{EpochRecord, TrainConfig, TrainState};
use crate::train::{UnrollProgress, apply_update, finish_epoch};

/// A fresh policy training state: φ initialised from `seed`.
pub fn new_policy_state(policy: PolicyConfig, train: TrainConfig) -> Result<TrainState> {
    policy.validate()?;
    train.validate("inner steps per outer step")?;
    let phi = policy.init(train.seed);
    Ok(TrainState {
        policy: Some(policy),
        ..TrainState::start(train, phi)?
    })
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

/// Train the policy in `state` until `state.epoch == state.train.epochs` (see the module docs), saving a
/// checkpoint after every epoch when `ckpt` is set.
pub fn train_policy(
    ctx: &Context,
    state: &mut TrainState,
    ckpt: Option<&Path>,
    on_outer: &mut UnrollProgress,
    on_epoch: &mut dyn FnMut(&EpochRecord, &TrainState),
) -> Result<()> {
    let Some(cfg) = state.policy else {
        bail!("this training state holds an LSTM, not an L-BFGS-π policy");
    };
    let tc = state.train.clone();
    if tc.shards != 1 {
        bail!(
            "shards of the meta-batch are implemented for L2L; train L-BFGS-π with --shards 1 and a larger --batch"
        );
    }
    let weights = vec![1.0; tc.unroll];
    let val_task = tc.validation_task(ctx)?;
    let mut dev = PolicyTrainer::new(ctx, &cfg, val_task.dim(), tc.batch, &weights)?;
    let outer = tc.horizon / tc.unroll;
    while state.epoch < tc.epochs {
        let e = state.epoch;
        let task = tc.epoch_task(ctx, e)?;
        dev.bind(ctx, task.as_ref())?;
        let x0 = task.initial_point();
        let n = task.dim();
        let (mut total, mut counted, mut skipped) = (0.0, 0, 0);
        for u in 0..outer {
            let r = dev.run(ctx, &state.phi)?;
            if apply_update(state, r.meta_loss, &r.dphi, e, u)? {
                total += r.meta_loss / tc.unroll as f64;
                counted += 1;
            } else {
                skipped += 1;
            }
            // a problem that converged (or diverged) starts again from its initial point
            for (b, g) in r.gnorm.iter().enumerate() {
                let lost = r.losses[b * (tc.unroll + 1) + tc.unroll];
                if !(*g >= 1e-10) || !lost.is_finite() {
                    dev.set_x(ctx, b, &x0[b * n..(b + 1) * n])?;
                }
            }
            on_outer(e, u, r.meta_loss / tc.unroll as f64);
        }
        finish_epoch(
            state,
            e,
            total,
            counted,
            skipped,
            &mut |phi| evaluate_policy(ctx, &cfg, phi, val_task.as_ref(), tc.horizon),
            ckpt,
            on_epoch,
        )?;
    }
    Ok(())
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
