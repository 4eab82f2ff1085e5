//! Truncated-BPTT meta-training (seed 002 §2–3): each epoch samples a fresh batch of problems, runs the
//! optimizee for `horizon` steps in unrolls of T, carrying θ and the LSTM state across unrolls, with one
//! meta-update of φ per unroll from the hand-derived adjoint ([`crate::l2l::device::L2lTrainer`]). After every
//! `validate_every` epochs φ is evaluated on a fixed validation set and the best φ is kept (early stopping).
//! A non-finite meta-gradient is skipped and counted; too many in a row stop training with an error.

use std::path::Path;

use anyhow::{Result, bail};
use l2o_engine::Context;
use l2o_optim::{RunOptions, run};
use l2o_tasks::Task;

use crate::checkpoint;
use crate::l2l::device::L2lTrainer;
use crate::l2l::{LstmConfig, unit_weights};
use crate::l2l::optimizer::LstmOptimizer;
use crate::state::{EpochRecord, TrainConfig, TrainState};

/// A fresh training state: φ initialised from `seed`.
pub fn new_state(lstm: LstmConfig, train: TrainConfig) -> Result<TrainState> {
    lstm.validate()?;
    train.validate("unroll length")?;
    let phi = lstm.init(train.seed);
    Ok(TrainState {
        lstm,
        ..TrainState::start(train, phi)?
    })
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
    opt: &mut dyn l2o_optim::Optimizer,
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

/// Train until `state.epoch == state.train.epochs`, saving a checkpoint after every epoch when `ckpt` is set.
/// Calls `on_unroll` after each unroll and `on_epoch` after each epoch.
pub fn train(
    ctx: &Context,
    state: &mut TrainState,
    ckpt: Option<&Path>,
    on_unroll: &mut UnrollProgress,
    on_epoch: &mut dyn FnMut(&EpochRecord, &TrainState),
) -> Result<()> {
    let tc = state.train.clone();
    let weights = unit_weights(tc.unroll);
    let val_task = tc.validation_task(ctx)?;
    // (for MNIST the dimension follows from the network: take it from the task)
    // one trainer per shard of the meta-batch
    let mut devs = (0..tc.shards)
        .map(|_| {
            L2lTrainer::new(
                ctx,
                &state.lstm,
                val_task.dim(),
                tc.batch,
                tc.unroll,
                &weights,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(d) = devs.first() {
        log::info!("L2L kernels: {}", d.bufs.kernels.name());
    }
    let unrolls = tc.horizon / tc.unroll;
    while state.epoch < tc.epochs {
        let e = state.epoch;
        let tasks = (0..tc.shards)
            .map(|s| tc.shard_task(ctx, e, s))
            .collect::<Result<Vec<_>>>()?;
        for (dev, task) in devs.iter_mut().zip(&tasks) {
            dev.bind(ctx, task.as_ref())?;
        }
        let mut total = 0.0;
        let mut counted = 0;
        let mut skipped = 0;
        for u in 0..unrolls {
            let mut shard_results = Vec::with_capacity(devs.len());
            for dev in &devs {
                if u > 0 {
                    dev.carry(ctx)?;
                }
                shard_results.push(dev.run(ctx, &state.phi)?);
            }
            // The one place where an unroll's ∂L/∂φ becomes a meta-update: the mean over the shards, added in
            // shard order (every shard has the same number of problems).
            let r = crate::l2l::device::UnrollResult::mean(&shard_results);
            if apply_update(state, r.meta_loss, &r.dphi, e, u)? {
                total += r.meta_loss / tc.unroll as f64;
                counted += 1;
            } else {
                skipped += 1;
            }
            on_unroll(e, u, r.meta_loss / tc.unroll as f64);
        }
        let lstm = state.lstm;
        finish_epoch(
            state,
            e,
            total,
            counted,
            skipped,
            &mut |phi| evaluate(ctx, &lstm, phi, val_task.as_ref(), tc.horizon),
            ckpt,
            on_epoch,
        )?;
    }
    Ok(())
}
