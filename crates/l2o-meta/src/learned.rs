//! The abstraction every learned optimizer implements, so that one meta-training loop ([`crate::train::train`]),
//! one checkpoint format and one CLI serve all of them.
//!
//! A learned optimizer is a parametric update rule with parameters φ. To meta-train it we need, besides its
//! configuration: an initial φ, a **device trainer** that runs one truncated unroll of T optimizee steps on a
//! batch of problems — storing the trajectory — and returns the meta-loss L(φ) = (1/B) Σ_b Σ_t w_t ℓ(f_b(θ_t))
//! with its meta-gradient ∂L/∂φ from the hand-derived adjoint (seed 002 §2, ∇f treated as an input), a
//! **validation score** (lower is better) to keep the best φ, and the **trained optimizer** for the driver.
//! [`LearnedOptimizer`] is that contract; [`UnrollTrainer`] is the device trainer. Implementations:
//! [`crate::l2l::train::L2l`], [`crate::policy::train::Policy`], [`crate::hlstm::train::Hlstm`]; the
//! registry [`crate::kinds`] finds the one a name, a state or a checkpoint names.
//!
//! Adding a fourth learned optimizer means: a folder with its reference and adjoint, a device trainer
//! implementing [`UnrollTrainer`], an implementation of [`LearnedOptimizer`], a field in
//! [`crate::state::TrainState`] for its configuration (the checkpoint section), and one arm in
//! [`crate::kinds::of_state`] and in [`crate::kinds::by_name`].

use anyhow::Result;
use l2o_engine::Context;
use l2o_optim::Optimizer;
use l2o_tasks::Task;

use crate::state::{TrainConfig, TrainState};

/// What one unroll returns to the meta-training loop.
#[derive(Clone, Debug)]
pub struct Unroll {
    /// L = (1/B) Σ_b Σ_t w_t ℓ(f_b(θ_t)) over the unroll's steps.
    pub meta_loss: f64,
    /// ∂L/∂φ from the adjoint sweep.
    pub dphi: Vec<f64>,
}

impl Unroll {
    /// As one record of numbers, `[meta-loss, ∂L/∂φ…]` (what the ranks of a distributed run exchange).
    pub fn to_record(&self) -> Vec<f64> {
        let mut rec = Vec::with_capacity(self.dphi.len() + 1);
        rec.push(self.meta_loss);
        rec.extend_from_slice(&self.dphi);
        rec
    }

    /// The inverse of [`Unroll::to_record`].
    pub fn from_record(rec: &[f64]) -> Unroll {
        Unroll {
            meta_loss: rec[0],
            dphi: rec[1..].to_vec(),
        }
    }

    /// The result of the union of equally sized shards of the meta-batch: meta-loss and ∂L/∂φ averaged (summed
    /// in shard order, then divided; one shard is returned as it is).
    pub fn mean(mut shards: Vec<Unroll>) -> Unroll {
        if shards.len() == 1 {
            return shards.pop().expect("one shard");
        }
        let s = shards.len().max(1) as f64;
        let mut dphi = vec![0.0; shards.first().map_or(0, |r| r.dphi.len())];
        for r in &shards {
            dphi.iter_mut().zip(&r.dphi).for_each(|(a, b)| *a += b);
        }
        dphi.iter_mut().for_each(|a| *a /= s);
        Unroll {
            meta_loss: shards.iter().map(|r| r.meta_loss).sum::<f64>() / s,
            dphi,
        }
    }
}

/// The device meta-trainer of one learned optimizer for one shard of the meta-batch: `batch` problems of
/// dimension n, unrolls of a fixed number of steps, the trajectory kept on the device.
pub trait UnrollTrainer {
    /// Start an epoch on `task` (fresh problems): θ from its initial point, the optimizer's state reset.
    fn bind(&mut self, ctx: &Context, task: &dyn Task) -> Result<()>;
    /// Unroll `u` of the epoch with φ (for u > 0 continuing from where unroll u − 1 ended): forward sweep with
    /// the stored trajectory, then the adjoint; one host round trip.
    fn unroll(&mut self, ctx: &Context, u: usize, phi: &[f64]) -> Result<Unroll>;
}

/// Training settings of a learned optimizer when the command line does not set them (its seed's settings).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainDefaults {
    pub horizon: usize,
    pub unroll: usize,
    pub meta_optimizer: &'static str,
    pub meta_lr: f64,
}

/// [`UnrollTrainer`] for a device trainer with `bind(ctx, task)`, `carry(ctx)` (the next unroll continues from
/// where the last ended) and `run(ctx, φ)` returning a result with `meta_loss` and `dphi` — the L2L and Hilbert
/// LSTM trainers.
macro_rules! carried_unroll_trainer {
    ($t:ty) => {
        impl $crate::learned::UnrollTrainer for $t {
            fn bind(
                &mut self,
                ctx: &l2o_engine::Context,
                task: &dyn l2o_tasks::Task,
            ) -> anyhow::Result<()> {
                <$t>::bind(self, ctx, task)
            }

            fn unroll(
                &mut self,
                ctx: &l2o_engine::Context,
                u: usize,
                phi: &[f64],
            ) -> anyhow::Result<$crate::learned::Unroll> {
                if u > 0 {
                    self.carry(ctx)?;
                }
                let r = self.run(ctx, phi)?;
                Ok($crate::learned::Unroll {
                    meta_loss: r.meta_loss,
                    dphi: r.dphi,
                })
            }
        }
    };
}
pub(crate) use carried_unroll_trainer;

/// What names a learned optimizer, and how it is trained when the command line does not say.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct About {
    /// Its name in messages ("the L2L LSTM", …).
    pub name: &'static str,
    /// Its short name in titles ("L2L", "L-BFGS-π", "HLSTM").
    pub short_name: &'static str,
    /// The `l2o train --optimizer` value that trains it.
    pub flag: &'static str,
    /// Horizon, unroll, meta-optimizer and meta learning rate when not given.
    pub defaults: TrainDefaults,
}

/// A learned optimizer: what the meta-training loop, checkpoints and the CLI need to know about it.
pub trait LearnedOptimizer {
    /// Its names and training defaults.
    fn about(&self) -> &'static About;
    /// Error unless `state`, which holds this kind of learned optimizer (see [`crate::kinds::check_resume`]),
    /// holds it with this configuration (resuming must not change it).
    fn check_resume(&self, state: &TrainState) -> Result<()>;
    /// What [`TrainConfig::unroll`] counts for it (in configuration errors).
    fn unroll_name(&self) -> &'static str {
        "unroll length"
    }
    /// Check the configuration (an error says what to change).
    fn check(&self) -> Result<()>;
    /// The initial φ of a run with `seed`.
    fn init(&self, seed: u64) -> Vec<f64>;
    /// Store the configuration in a training state (its section of the checkpoint).
    fn install(&self, state: &mut TrainState);
    /// A device trainer for `batch` problems of dimension `n` and unrolls of `steps` steps.
    fn trainer(
        &self,
        ctx: &Context,
        n: usize,
        batch: usize,
        steps: usize,
    ) -> Result<Box<dyn UnrollTrainer>>;
    /// Validation score of φ on the problems of `task` over `steps` steps; lower is better. A mean over the
    /// problems (so the scores of shards combine by a weighted mean), as the meta-loss and ∂L/∂φ of an unroll
    /// are normalised per problem (so the shards of a meta-batch combine by [`Unroll::mean`]).
    fn score(&self, ctx: &Context, phi: &[f64], task: &dyn Task, steps: usize) -> Result<f64>;
    /// Whether the initial φ is validated before the first epoch, and stays the best φ until a trained one
    /// beats it (so training never returns something worse than its initialisation on validation).
    fn validates_initial(&self) -> bool {
        false
    }
    /// Transform a meta-gradient before the update (e.g. clip its norm).
    fn condition(&self, _dphi: &mut [f64]) {}
    /// The optimizer with parameters φ, for [`l2o_optim::run`] or any driver.
    fn optimizer(&self, phi: Vec<f64>) -> Result<Box<dyn Optimizer>>;
    /// A validation score as a value on a loss axis, and the curve's label (for training plots).
    fn score_shown(&self, score: f64) -> (f64, &'static str) {
        (score, "validation loss")
    }
    /// Whether the per-step meta-loss is a mean of ln f (plotted as exp of it).
    fn log_meta_loss(&self) -> bool {
        false
    }
}

/// Epoch 0 of a run of `lo`: configuration checked, φ initialised from `train.seed`, installed in the state.
pub fn new_state(lo: &dyn LearnedOptimizer, train: TrainConfig) -> Result<TrainState> {
    lo.check()?;
    train.validate(lo.unroll_name())?;
    let phi = lo.init(train.seed);
    let mut state = TrainState::start(train, phi)?;
    lo.install(&mut state);
    Ok(state)
}
