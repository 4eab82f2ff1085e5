//! The meta-training loop, one for every learned optimizer ([`crate::learned::LearnedOptimizer`]): truncated
//! BPTT as in seed 002 §2–3. Each epoch samples a fresh meta-batch of problems in `shards` shards (each on its
//! own device trainer), runs the optimizee for `horizon` steps in unrolls of T, carrying θ and the optimizer's
//! state across unrolls, with **one meta-update of φ per unroll** from the hand-derived adjoint —
//! [`meta_update`] is the single place where an unroll's ∂L/∂φ becomes an update. After every `validate_every`
//! epochs φ is scored on a fixed validation set (in as many shards) and the best φ is kept (early stopping); a
//! checkpoint is written after every epoch. A non-finite meta-gradient is skipped and counted; too many in a
//! row stop training with an error.
//!
//! Distributed ([`train_group`]): the ranks of a [`Group`] each own a block of the shards ([`group::owned`]),
//! run their sweeps locally, and gather every shard's (meta-loss, ∂L/∂φ) in shard order before
//! [`meta_update`], so every rank applies the same update — and φ is the same, bit for bit, for any number of
//! ranks with the same shards ([`crate::group`]); the ranks compare a digest of φ after every epoch.

use std::path::Path;

use anyhow::{Result, bail};
use l2o_engine::Context;
use l2o_tasks::{HostProblem, Task};

use crate::checkpoint;
use crate::group::{self, Group, Solo};
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
        let lr = state.train.meta_lr_at(epoch);
        state.metaopt.set_lr(lr);
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
    /// Shard `shard` of `shards` of the validation problems (the same every epoch; shard 0 of 1 is the whole
    /// validation set). The validation score is the mean of the shards' scores weighted by their batch sizes.
    fn validation(&self, ctx: &Context, shard: usize, shards: usize) -> Result<Box<dyn Task>>;
}

impl TaskSource for TrainConfig {
    fn training(&self, ctx: &Context, epoch: usize, shard: usize) -> Result<Box<dyn Task>> {
        self.shard_task(ctx, epoch, shard)
    }
    fn validation(&self, ctx: &Context, shard: usize, shards: usize) -> Result<Box<dyn Task>> {
        self.validation_shard(ctx, shard, shards)
    }
}

/// A problem of your own evaluated on the host ([`HostProblem`], with a sampler) as a task source: the batch of
/// shard s of epoch e is `sample(shard_seed(seed, e, s))`, validation shard v `sample(validation_shard_seed(seed,
/// v))` — the seeds l2o's own tasks use — each of the problem's batch size (set `train.val_batch` to the
/// shards times it).
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
    fn validation(&self, ctx: &Context, shard: usize, _shards: usize) -> Result<Box<dyn Task>> {
        let seed = crate::state::validation_shard_seed(self.seed, shard);
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
    train_group(ctx, state, tasks, &Solo, ckpt, on_unroll, on_epoch)
}

/// What every rank of a run must agree on before training: configuration, progress, φ, the meta-optimizer's
/// state and the device precision — as numbers to digest.
fn state_fingerprint(state: &TrainState, ctx: &Context) -> Vec<f64> {
    let mut v: Vec<f64> = format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{}|{}|{}|{}",
        state.train,
        state.lstm,
        state.policy,
        state.hlstm,
        state.hlstm_training,
        state.metaopt.name(),
        state.epoch,
        state.updates,
        ctx.precision()
    )
    .bytes()
    .map(f64::from)
    .collect();
    v.extend(&state.phi);
    v.extend(&state.best_phi);
    for (_, m) in state.metaopt.vectors() {
        v.extend(m);
    }
    v
}

/// The validation score of φ: each rank scores its validation shards, the scores are gathered in shard order
/// and averaged weighted by the shards' batch sizes (one shard: its score as it is).
fn validation_score(
    ctx: &Context,
    lo: &dyn LearnedOptimizer,
    g: &dyn Group,
    shards: &[Box<dyn Task>],
    total: usize,
    phi: &[f64],
    steps: usize,
) -> Result<f64> {
    let local = shards
        .iter()
        .map(|t| {
            Ok(vec![
                lo.score(ctx, phi, t.as_ref(), steps)?,
                t.batch() as f64,
            ])
        })
        .collect::<Result<Vec<_>>>()?;
    let all = group::gather_shards(g, total, &local)?;
    let n: f64 = all.iter().map(|r| r[1]).sum();
    Ok(all.iter().map(|r| r[0] * (r[1] / n)).sum())
}

/// [`train_on`] as one rank of `group`: this rank runs the shards [`group::owned`] gives it (of the meta-batch
/// and of the validation set) and the ranks gather every shard's result once per unroll, so each applies the
/// same meta-update; after every epoch they compare a digest of φ (an error names the ranks that differ).
/// Only the caller decides who writes: pass `ckpt` on one rank (rank 0) only.
#[allow(clippy::too_many_arguments)]
pub fn train_group(
    ctx: &Context,
    state: &mut TrainState,
    tasks: &dyn TaskSource,
    group: &dyn Group,
    ckpt: Option<&Path>,
    on_unroll: &mut UnrollProgress,
    on_epoch: &mut dyn FnMut(&EpochRecord, &TrainState),
) -> Result<()> {
    let lo = kinds::of_state(state);
    let tc = state.train.clone();
    group::check_shards(group, tc.shards, "meta-batch")?;
    // every rank must start from the same state and precision (the same command line and checkpoint)
    group::check_agree(
        group,
        "the run's configuration and state (give every rank the same arguments and checkpoint)",
        &checkpoint::phi_sha256(&state_fingerprint(state, ctx)),
    )?;
    let mine = group::owned(tc.shards, group.rank(), group.size());
    let val_tasks = mine
        .clone()
        .map(|v| tasks.validation(ctx, v, tc.shards))
        .collect::<Result<Vec<_>>>()?;
    let dim = val_tasks[0].dim();
    let mut validate = |phi: &[f64]| {
        validation_score(
            ctx,
            lo.as_ref(),
            group,
            &val_tasks,
            tc.shards,
            phi,
            tc.horizon,
        )
    };
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
    // one device trainer per owned shard of the meta-batch (for MNIST the dimension follows from the network:
    // take it from the task)
    let mut devs = mine
        .clone()
        .map(|_| lo.trainer(ctx, dim, tc.batch, tc.unroll))
        .collect::<Result<Vec<_>>>()?;
    let unrolls = tc.horizon / tc.unroll;
    while state.epoch < tc.epochs {
        let e = state.epoch;
        // the epoch's problems of the owned shards (shard 0 is the epoch's task), alive until the epoch ends
        let epoch_tasks = mine
            .clone()
            .map(|s| tasks.training(ctx, e, s))
            .collect::<Result<Vec<_>>>()?;
        for (dev, task) in devs.iter_mut().zip(&epoch_tasks) {
            dev.bind(ctx, task.as_ref())?;
        }
        let (mut total, mut counted, mut skipped) = (0.0, 0, 0);
        for u in 0..unrolls {
            let local = devs
                .iter_mut()
                .map(|dev| Ok(dev.unroll(ctx, u, &state.phi)?.to_record()))
                .collect::<Result<Vec<_>>>()?;
            let shards = group::gather_shards(group, tc.shards, &local)?
                .iter()
                .map(|rec| Unroll::from_record(rec))
                .collect();
            let (per_step, applied) = meta_update(state, lo.as_ref(), shards, e, u)?;
            if applied {
                total += per_step;
                counted += 1;
            } else {
                skipped += 1;
            }
            on_unroll(e, u, per_step);
        }
        group::check_agree(
            group,
            &format!("φ after epoch {}", e + 1),
            &checkpoint::phi_sha256(&state.phi),
        )?;
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
