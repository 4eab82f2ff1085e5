//! Meta-training of the Hilbert LSTM (docs/hlstm.md §4) by truncated BPTT on the device
//! ([`crate::hlstm::device::HlstmTrainer`]).
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

use std::path::Path;

use anyhow::{Result, bail};
use l2o_engine::Context;
use l2o_optim::{RunOptions, Trace, run};
use l2o_tasks::Task;

use crate::hlstm::{HlstmConfig, HlstmTraining};
use crate::hlstm::device::{HlstmOptimizer, HlstmTrainer};
use crate::state::{EpochRecord, TrainConfig, TrainState};
use crate::train::{UnrollProgress, apply_update, finish_epoch};

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
    cfg.validate()?;
    train.validate("unroll length")?;
    if let Some(c) = training.clip
        && !(c > 0.0 && c.is_finite())
    {
        bail!("the meta-gradient clip must be a positive number, got {c}");
    }
    let phi = cfg.init(train.seed);
    Ok(TrainState {
        hlstm: Some(cfg),
        hlstm_training: Some(training),
        ..TrainState::start(train, phi)?
    })
}

/// Train the HLSTM in `state` until `state.epoch == state.train.epochs` (module docs), saving a checkpoint after
/// every epoch when `ckpt` is set.
pub fn train_hlstm(
    ctx: &Context,
    state: &mut TrainState,
    ckpt: Option<&Path>,
    on_unroll: &mut UnrollProgress,
    on_epoch: &mut dyn FnMut(&EpochRecord, &TrainState),
) -> Result<()> {
    let Some(cfg) = state.hlstm else {
        bail!("this training state does not hold a Hilbert LSTM");
    };
    let ht = state.hlstm_training.unwrap_or_default();
    let tc = state.train.clone();
    if tc.shards != 1 {
        bail!(
            "shards of the meta-batch are implemented for L2L; train the Hilbert LSTM with --shards 1 and a larger --batch"
        );
    }
    let val_task = tc.validation_task(ctx)?;
    let mut validate = |phi: &[f64]| evaluate_hlstm(ctx, &cfg, phi, val_task.as_ref(), tc.horizon);
    if state.epoch == 0 && state.best_val.is_none() {
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
    let weights = vec![1.0; tc.unroll];
    let mut dev = HlstmTrainer::new(ctx, &cfg, val_task.dim(), tc.batch, &weights, &ht)?;
    let unrolls = tc.horizon / tc.unroll;
    while state.epoch < tc.epochs {
        let e = state.epoch;
        let task = tc.epoch_task(ctx, e)?;
        dev.bind(ctx, task.as_ref())?;
        let (mut total, mut counted, mut skipped) = (0.0, 0, 0);
        for u in 0..unrolls {
            if u > 0 {
                dev.carry(ctx)?;
            }
            let mut r = dev.run(ctx, &state.phi)?;
            if let Some(c) = ht.clip {
                let norm = r.dphi.iter().map(|g| g * g).sum::<f64>().sqrt();
                if norm > c {
                    r.dphi.iter_mut().for_each(|g| *g *= c / norm);
                }
            }
            if apply_update(state, r.meta_loss, &r.dphi, e, u)? {
                total += r.meta_loss / tc.unroll as f64;
                counted += 1;
            } else {
                skipped += 1;
            }
            on_unroll(e, u, r.meta_loss / tc.unroll as f64);
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
