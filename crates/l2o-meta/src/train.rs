//! The meta-training loop, one for every learned optimizer ([`crate::learned::LearnedOptimizer`]): truncated
//! BPTT as in seed 002 §2–3. Each epoch samples a fresh batch of problems (split into shards, each on its own
//! device trainer, where the optimizer allows it), runs the optimizee for `horizon` steps in unrolls of T,
//! carrying θ and the optimizer's state across unrolls, with **one meta-update of φ per unroll** from the
//! hand-derived adjoint — [`meta_update`] is the single place where an unroll's ∂L/∂φ becomes an update (the
//! distributed version reduces the shards' ∂L/∂φ across processes there). After every `validate_every` epochs φ
//! is scored on a fixed validation set and the best φ is kept (early stopping); a checkpoint is written after
//! every epoch. A non-finite meta-gradient is skipped and counted; too many in a row stop training with an
//! error.

use std::path::Path;

use anyhow::{Result, bail};
use l2o_engine::Context;
use l2o_tasks::{HostProblem, Task};

use crate::checkpoint;
use crate::kinds;
use crate::learned::{LearnedOptimizer, Unroll};
use crate::state::{EpochRecord, TrainConfig, TrainState};

/// Apply one meta-update from an unroll's meta-loss and ∂L/∂φ: a non-finite one is skipped and counted, and
/// `max_nonfinite` of them in a row stop training with an error. Returns whether the update was applied.
pub fn apply_update(
    state: &mut TrainState,
    meta_loss: f64,
    dphi: &[f64],
    epoch: usize,
    unroll: usize,
) -> Result<bool> {
    if meta_loss.is_finite() && dphi.iter().all(|g| g.is_finite()) {
        state.metaopt.step(&mut state.phi, dphi)?;
        state.updates += 1;
        state.skipped_in_row = 0;
        return Ok(true);
    }
    state.skipped_total += 1;
    state.skipped_in_row += 1;
    log::warn!("epoch {epoch} unroll {unroll}: non-finite meta-gradient, update skipped");
    if state.skipped_in_row >= state.train.max_nonfinite {
        bail!(
            "{} non-finite meta-gradients in a row (epoch {epoch}): training diverged; lower the meta learning rate \
             (now {}), or resume from the last checkpoint",
            state.skipped_in_row,
            state.train.meta_lr
        );
    }
    Ok(false)
}

/// End of epoch e: validate when due (keeping the best φ), append the record, save the checkpoint, report.
/// `validate(φ)` is the mean validation loss; `total / counted` the epoch's mean meta-loss per step.
#[allow(clippy::too_many_arguments)]
pub fn finish_epoch(
    state: &mut TrainState,
    e: usize,
    total: f64,
    counted: usize,
    skipped: usize,
    validate: &mut dyn FnMut(&[f64]) -> Result<f64>,
    ckpt: Option<&Path>,
    on_epoch: &mut dyn FnMut(&EpochRecord, &TrainState),
) -> Result<()> {
    if state.phi.iter().any(|p| !p.is_finite()) {
        bail!("φ became non-finite at epoch {e}; lower the meta learning rate");
    }
    let tc = &state.train;
    let last = e + 1 == tc.epochs;
    let val_loss = if (e + 1) % tc.validate_every.max(1) == 0 || last {
        let v = validate(&state.phi)?;
        if state.best_val.is_none_or(|b| v < b) {
            state.best_val = Some(v);
            state.best_phi = state.phi.clone();
            state.best_epoch = e + 1;
        }
        Some(v)
    } else {
        None
    };
    let rec = EpochRecord {
        epoch: e + 1,
        meta_loss: (counted > 0).then(|| total / counted as f64),
        val_loss,
        skipped,
    };
    state.epoch += 1;
    state.history.push(rec.clone());
    if let Some(p) = ckpt {
        checkpoint::save(p, state)?;
    }
    on_epoch(&rec, state);
    Ok(())
}

/// Progress of one unroll: (epoch, unroll index, meta-loss per step).
pub type UnrollProgress<'a> = dyn FnMut(usize, usize, f64) + 'a;

/// The one point where the ∂L/∂φ of an unroll becomes a meta-update: the shards' results averaged in shard
/// order ([`Unroll::mean`]), conditioned by the optimizer (e.g. clipped), then applied or skipped by
/// [`apply_update`]. Returns the unroll's meta-loss per step when the update was applied.
pub fn meta_update(
    state: &mut TrainState,
    lo: &dyn LearnedOptimizer,
    shards: Vec<Unroll>,
    epoch: usize,
    unroll: usize,
) -> Result<(f64, bool)> {
    let mut r = Unroll::mean(shards);
    lo.condition(&mut r.dphi);
    let applied = apply_update(state, r.meta_loss, &r.dphi, epoch, unroll)?;
    Ok((r.meta_loss / state.train.unroll as f64, applied))
}

/// Where meta-training gets its problems: each epoch's training batch (per shard of the meta-batch) and the
/// fixed validation set. [`TrainConfig`] builds l2o's tasks by name; implement it to meta-train on a task of
/// your own (every training task must have the validation task's dimension and `train.batch` problems).
pub trait TaskSource {
    /// The training problems of shard `shard` of epoch `epoch` (fresh ones every epoch, from a seed derived
    /// from both, so runs are reproducible).
    fn training(&self, ctx: &Context, epoch: usize, shard: usize) -> Result<Box<dyn Task>>;
    /// The validation problems (the same every epoch).
    fn validation(&self, ctx: &Context) -> Result<Box<dyn Task>>;
}

impl TaskSource for TrainConfig {
    fn training(&self, ctx: &Context, epoch: usize, shard: usize) -> Result<Box<dyn Task>> {
        self.shard_task(ctx, epoch, shard)
    }
    fn validation(&self, ctx: &Context) -> Result<Box<dyn Task>> {
        self.validation_task(ctx)
    }
}

/// A problem of your own evaluated on the host ([`HostProblem`], with a sampler) as a task source: the batch of
/// shard s of epoch e is `sample(shard_seed(seed, e, s))`, the validation set `sample(validation_seed(seed))` —
/// the seeds l2o's own tasks use — each of the problem's batch size (set `train.val_batch` to it).
pub struct HostSource<'a> {
    pub problem: &'a HostProblem,
    /// The run's base seed (`TrainConfig::seed`).
    pub seed: u64,
}

impl TaskSource for HostSource<'_> {
    fn training(&self, ctx: &Context, epoch: usize, shard: usize) -> Result<Box<dyn Task>> {
        let seed = crate::state::shard_seed(self.seed, epoch, shard);
        Ok(Box::new(self.problem.task(ctx, seed)?))
    }
    fn validation(&self, ctx: &Context) -> Result<Box<dyn Task>> {
        let seed = crate::state::validation_seed(self.seed);
        Ok(Box::new(self.problem.task(ctx, seed)?))
    }
}

/// Train the learned optimizer held by `state` until `state.epoch == state.train.epochs` on the tasks its
/// configuration names, saving a checkpoint after every epoch when `ckpt` is set. Calls `on_unroll` after each
/// unroll and `on_epoch` after each epoch (and once before the first when the optimizer validates its initial
/// φ).
pub fn train(
    ctx: &Context,
    state: &mut TrainState,
    ckpt: Option<&Path>,
    on_unroll: &mut UnrollProgress,
    on_epoch: &mut dyn FnMut(&EpochRecord, &TrainState),
) -> Result<()> {
    let tc = state.train.clone();
    train_on(ctx, state, &tc, ckpt, on_unroll, on_epoch)
}

/// [`train`] on the problems of `tasks` (a task of your own; the configuration's task name is then only a
/// label).
pub fn train_on(
    ctx: &Context,
    state: &mut TrainState,
    tasks: &dyn TaskSource,
    ckpt: Option<&Path>,
    on_unroll: &mut UnrollProgress,
    on_epoch: &mut dyn FnMut(&EpochRecord, &TrainState),
) -> Result<()> {
    let lo = kinds::of_state(state);
    let tc = state.train.clone();
    if tc.shards != 1 && !lo.supports_shards() {
        bail!(
            "shards of the meta-batch are implemented for L2L; train {} with --shards 1 and a larger --batch",
            lo.about().name
        );
    }
    let val_task = tasks.validation(ctx)?;
    let mut validate = |phi: &[f64]| lo.score(ctx, phi, val_task.as_ref(), tc.horizon);
    if lo.validates_initial() && state.epoch == 0 && state.best_val.is_none() {
        let v = validate(&state.phi)?;
        state.best_val = Some(v);
        state.best_phi = state.phi.clone();
        state.best_epoch = 0;
        let rec = EpochRecord {
            epoch: 0,
            meta_loss: None,
            val_loss: Some(v),
            skipped: 0,
        };
        state.history.push(rec.clone());
        on_epoch(&rec, state);
    }
    // one device trainer per shard of the meta-batch (for MNIST the dimension follows from the network: take it
    // from the task)
    let mut devs = (0..tc.shards)
        .map(|_| lo.trainer(ctx, val_task.dim(), tc.batch, tc.unroll))
        .collect::<Result<Vec<_>>>()?;
    let unrolls = tc.horizon / tc.unroll;
    while state.epoch < tc.epochs {
        let e = state.epoch;
        // the epoch's problems (shard 0 is the epoch's task), alive until the epoch ends
        let epoch_tasks = (0..tc.shards)
            .map(|s| tasks.training(ctx, e, s))
            .collect::<Result<Vec<_>>>()?;
        for (dev, task) in devs.iter_mut().zip(&epoch_tasks) {
            dev.bind(ctx, task.as_ref())?;
        }
        let (mut total, mut counted, mut skipped) = (0.0, 0, 0);
        for u in 0..unrolls {
            let shards = devs
                .iter_mut()
                .map(|dev| dev.unroll(ctx, u, &state.phi))
                .collect::<Result<Vec<_>>>()?;
            let (per_step, applied) = meta_update(state, lo.as_ref(), shards, e, u)?;
            if applied {
                total += per_step;
                counted += 1;
            } else {
                skipped += 1;
            }
            on_unroll(e, u, per_step);
        }
        finish_epoch(
            state,
            e,
            total,
            counted,
            skipped,
            &mut validate,
            ckpt,
            on_epoch,
        )?;
    }
    Ok(())
}
