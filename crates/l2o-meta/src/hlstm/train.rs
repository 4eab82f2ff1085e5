//! The Hilbert LSTM as a [`LearnedOptimizer`] (docs/hlstm.md §4): truncated BPTT on the device
//! ([`crate::hlstm::device::HlstmTrainer`]), driven by the shared loop [`crate::train::train`].
//!
//! An epoch draws a fresh batch of B training problems (the epoch's seed), runs `horizon` steps in unrolls of T
//! (`unroll`), carrying θ, the memory pairs, c, h and the scalar state across unrolls, and applies one
//! meta-update per unroll (Adam or ADADELTA on φ, the meta-gradient optionally clipped to a norm). The
//! meta-loss is Σ_t ℓ(f(θ_t)) with ℓ the identity or the floored log (`HlstmTraining::loss`).
//!
//! Validation judges a φ at the budget: the mean over fixed validation problems of log10(f_K / f_0) after
//! K = horizon steps (one gradient evaluation per step). The initial φ is validated before the first epoch and
//! is the best φ until a trained one beats it, so training never returns something worse than its
//! initialisation on validation — and `best_epoch == 0` says plainly that no trained φ did better.

use anyhow::{Result, bail};
use l2o_engine::Context;
use l2o_optim::{Optimizer, RunOptions, Trace, run};
use l2o_tasks::Task;

use crate::hlstm::device::{HlstmOptimizer, HlstmTrainer};
use crate::hlstm::{HlstmConfig, HlstmTraining};
use crate::learned::{self, About, LearnedOptimizer, TrainDefaults, UnrollTrainer};
use crate::state::{TrainConfig, TrainState};

/// log10(f_k / f_0) of every problem of a trace after k steps (floored at 1e-20; a non-finite f gives +∞).
pub fn log_progress(tr: &Trace, k: usize) -> Vec<f64> {
    (0..tr.batch)
        .map(|b| {
            let (f0, f) = (tr.f[0][b], tr.f[k.min(tr.steps())][b]);
            if f.is_finite() && f0.is_finite() && f0 > 0.0 {
                (f / f0).max(1e-20).log10()
            } else {
                f64::INFINITY
            }
        })
        .collect()
}

/// Mean of log10(f_K / f_0) over the problems of `task` after `steps` HLSTM steps with φ.
pub fn evaluate_hlstm(
    ctx: &Context,
    cfg: &HlstmConfig,
    phi: &[f64],
    task: &dyn Task,
    steps: usize,
) -> Result<f64> {
    let tr = run(
        ctx,
        task,
        &mut HlstmOptimizer::new(*cfg, phi.to_vec())?,
        &RunOptions::fixed(steps),
        &mut |_| {},
    )?;
    let v = log_progress(&tr, steps);
    Ok(v.iter().sum::<f64>() / v.len() as f64)
}

/// A fresh HLSTM training state: φ = the cell's initialisation ([`HlstmConfig::init`]) from `train.seed`.
pub fn new_hlstm_state(
    cfg: HlstmConfig,
    training: HlstmTraining,
    train: TrainConfig,
) -> Result<TrainState> {
    learned::new_state(&Hlstm { cfg, training }, train)
}

/// The Hilbert LSTM with its training options, as a [`LearnedOptimizer`].
#[derive(Clone, Copy, Debug)]
pub struct Hlstm {
    pub cfg: HlstmConfig,
    pub training: HlstmTraining,
}

learned::carried_unroll_trainer!(HlstmTrainer);

/// Horizon 50 with a meta-update per step, Adam (docs/hlstm.md §4).
const ABOUT: About = About {
    name: "the Hilbert LSTM",
    short_name: "HLSTM",
    flag: "hlstm",
    defaults: TrainDefaults {
        horizon: 50,
        unroll: 1,
        meta_optimizer: "adam",
        meta_lr: 1e-3,
    },
};

impl LearnedOptimizer for Hlstm {
    fn about(&self) -> &'static About {
        &ABOUT
    }
    fn check_resume(&self, state: &TrainState) -> Result<()> {
        anyhow::ensure!(
            state.hlstm == Some(self.cfg),
            "checkpoint holds the HLSTM {:?}, but the command asks for {:?}",
            state.hlstm,
            self.cfg
        );
        Ok(())
    }
    /// The score is mean log10(f_K/f_0): shown as 10^score.
    fn score_shown(&self, score: f64) -> (f64, &'static str) {
        (10f64.powf(score), "validation: 10^mean log10(f_K/f_0)")
    }
    fn log_meta_loss(&self) -> bool {
        matches!(self.training.loss, crate::hlstm::MetaLoss::Log { .. })
    }
    fn check(&self) -> Result<()> {
        self.cfg.validate()?;
        if let Some(c) = self.training.clip
            && !(c > 0.0 && c.is_finite())
        {
            bail!("the meta-gradient clip must be a positive number, got {c}");
        }
        Ok(())
    }
    fn init(&self, seed: u64) -> Vec<f64> {
        self.cfg.init(seed)
    }
    fn install(&self, state: &mut TrainState) {
        state.hlstm = Some(self.cfg);
        state.hlstm_training = Some(self.training);
    }
    fn trainer(
        &self,
        ctx: &Context,
        n: usize,
        batch: usize,
        steps: usize,
    ) -> Result<Box<dyn UnrollTrainer>> {
        let weights = vec![1.0; steps];
        Ok(Box::new(HlstmTrainer::new(
            ctx,
            &self.cfg,
            n,
            batch,
            &weights,
            &self.training,
        )?))
    }
    fn score(&self, ctx: &Context, phi: &[f64], task: &dyn Task, steps: usize) -> Result<f64> {
        evaluate_hlstm(ctx, &self.cfg, phi, task, steps)
    }
    fn validates_initial(&self) -> bool {
        true
    }
    /// The meta-gradient clipped to norm `training.clip` when set.
    fn condition(&self, dphi: &mut [f64]) {
        if let Some(c) = self.training.clip {
            let norm = dphi.iter().map(|g| g * g).sum::<f64>().sqrt();
            if norm > c {
                dphi.iter_mut().for_each(|g| *g *= c / norm);
            }
        }
    }
    fn optimizer(&self, phi: Vec<f64>) -> Result<Box<dyn Optimizer>> {
        Ok(Box::new(HlstmOptimizer::new(self.cfg, phi)?))
    }
}
