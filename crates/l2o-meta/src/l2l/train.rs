//! The L2L LSTM as a [`LearnedOptimizer`]: φ from [`LstmConfig::init`], the device trainer
//! [`L2lTrainer`] (forward sweep with the stored trajectory, reverse sweep, ∂L/∂φ; seed 002 §2), validation by
//! the mean loss over the validation problems and steps, meta-batches in shards.

use anyhow::Result;
use l2o_engine::Context;
use l2o_optim::{Optimizer, RunOptions, run};
use l2o_tasks::Task;

use crate::l2l::device::L2lTrainer;
use crate::l2l::optimizer::LstmOptimizer;
use crate::l2l::{LstmConfig, unit_weights};
use crate::learned::{self, About, LearnedOptimizer, TrainDefaults, UnrollTrainer};
use crate::state::{TrainConfig, TrainState};

/// The coordinatewise LSTM optimizer of seed 002 with its architecture.
#[derive(Clone, Copy, Debug)]
pub struct L2l(pub LstmConfig);

/// A fresh L2L training state: φ initialised from `train.seed`.
pub fn new_state(lstm: LstmConfig, train: TrainConfig) -> Result<TrainState> {
    learned::new_state(&L2l(lstm), train)
}

/// Mean loss over the validation problems and steps 1..=horizon with φ.
pub fn evaluate(
    ctx: &Context,
    lstm: &LstmConfig,
    phi: &[f64],
    task: &dyn Task,
    horizon: usize,
) -> Result<f64> {
    mean_loss(
        ctx,
        &mut LstmOptimizer::new(*lstm, phi.to_vec())?,
        task,
        horizon,
    )
}

/// Mean loss of `opt` over the problems of `task` and steps 1..=steps.
pub fn mean_loss(
    ctx: &Context,
    opt: &mut dyn Optimizer,
    task: &dyn Task,
    steps: usize,
) -> Result<f64> {
    let tr = run(ctx, task, opt, &RunOptions::fixed(steps), &mut |_| {})?;
    let mut s = 0.0;
    for row in &tr.f[1..] {
        s += row.iter().sum::<f64>();
    }
    Ok(s / (steps * task.batch()) as f64)
}

learned::carried_unroll_trainer!(L2lTrainer);

/// Seed 002: horizon 100 in unrolls of 20, Adam.
const ABOUT: About = About {
    name: "the L2L LSTM",
    short_name: "L2L",
    flag: "lstm",
    defaults: TrainDefaults {
        horizon: 100,
        unroll: 20,
        meta_optimizer: "adam",
        meta_lr: 0.01,
    },
};

impl LearnedOptimizer for L2l {
    fn about(&self) -> &'static About {
        &ABOUT
    }
    fn check_resume(&self, state: &TrainState) -> Result<()> {
        crate::checkpoint::check_compatible(state, &self.0)
    }
    fn check(&self) -> Result<()> {
        self.0.validate()
    }
    fn init(&self, seed: u64) -> Vec<f64> {
        self.0.init(seed)
    }
    fn install(&self, state: &mut TrainState) {
        state.lstm = self.0;
    }
    fn trainer(
        &self,
        ctx: &Context,
        n: usize,
        batch: usize,
        steps: usize,
    ) -> Result<Box<dyn UnrollTrainer>> {
        let t = L2lTrainer::new(ctx, &self.0, n, batch, steps, &unit_weights(steps))?;
        log::info!("L2L kernels: {}", t.bufs.kernels.name());
        Ok(Box::new(t))
    }
    fn score(&self, ctx: &Context, phi: &[f64], task: &dyn Task, steps: usize) -> Result<f64> {
        evaluate(ctx, &self.0, phi, task, steps)
    }
    fn optimizer(&self, phi: Vec<f64>) -> Result<Box<dyn Optimizer>> {
        Ok(Box::new(LstmOptimizer::new(self.0, phi)?))
    }
}
