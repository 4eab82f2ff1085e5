//! `l2o train`: meta-train any learned optimizer through [`l2o_meta::learned::LearnedOptimizer`] and the shared
//! loop [`l2o_meta::train::train`], with a progress bar, train.csv, train.svg and kernels.txt.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, Result};
use l2o_meta::checkpoint;
use l2o_meta::learned::{self, LearnedOptimizer};
use l2o_meta::state::{TrainConfig, TrainState};
use l2o_meta::train::train_group;
use l2o_tasks::TaskOptions;

use crate::args::TrainArgs;
use crate::{DeviceArgs, bar, plot};

/// The learned optimizer `--optimizer` names, configured by the other flags.
fn learned_optimizer(a: &TrainArgs) -> Result<Box<dyn LearnedOptimizer>> {
    l2o_meta::kinds::by_name(
        &a.optimizer,
        &l2o_meta::kinds::LearnedOptions {
            lstm_hidden: a.lstm_hidden,
            preprocess: a.preprocess,
            scale: a.scale,
            memory: a.memory,
            policy_width: a.policy_width,
            cell: a.cell,
            hlstm_hidden: a.hlstm_hidden,
            meta_loss: a.meta_loss.clone(),
            loss_floor: a.loss_floor,
            clip: a.clip,
            memory_grad: !a.no_memory_grad,
        },
    )
}

/// train.csv from the whole history (rewritten after every epoch, so it survives an interrupted run).
fn write_history(state: &TrainState, path: &Path) -> Result<()> {
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("cannot write {}", path.display()))?;
    w.write_record([
        "epoch",
        "meta_loss_per_step",
        "validation_loss",
        "skipped_updates",
    ])?;
    for r in &state.history {
        let o = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x:e}"));
        w.write_record([
            r.epoch.to_string(),
            o(r.meta_loss),
            o(r.val_loss),
            r.skipped.to_string(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// The run's configuration: the command line, with the learned optimizer's defaults where it is silent.
fn train_config(a: &TrainArgs, lo: &dyn LearnedOptimizer) -> Result<TrainConfig> {
    let d = lo.about().defaults;
    Ok(TrainConfig {
        task: a.task.clone(),
        dim: a.dim,
        batch: a.batch,
        horizon: a.horizon.unwrap_or(d.horizon),
        unroll: a.unroll.unwrap_or(d.unroll),
        epochs: a.epochs,
        meta_optimizer: a
            .meta_optimizer
            .clone()
            .unwrap_or_else(|| d.meta_optimizer.into()),
        meta_lr: a.meta_lr.unwrap_or(d.meta_lr),
        meta_lr_final: a.meta_lr_final,
        seed: a.seed,
        val_batch: a.val_batch,
        validate_every: a.validate_every,
        max_nonfinite: 10,
        // under mpirun one shard per rank unless --shards says otherwise
        shards: a.shards.unwrap_or(crate::cluster::group().size()),
        task_options: {
            // MNIST: the files' names and SHA-256 go into the checkpoint, never the folder they were read from
            let mut o = a.mlp.options(&TaskOptions::default())?;
            o.record_dataset(&a.task)?;
            o
        },
    })
}

/// The state to train: `--resume` (same learned optimizer and architecture; the epoch count may be raised) or
/// a fresh one.
fn initial_state(a: &TrainArgs, lo: &dyn LearnedOptimizer) -> Result<TrainState> {
    let Some(p) = &a.resume else {
        return learned::new_state(lo, train_config(a, lo)?);
    };
    let mut s = checkpoint::load(p)?;
    l2o_meta::kinds::check_resume(lo, &s).with_context(|| format!("resuming {}", p.display()))?;
    // the data folder is this process's (--data / L2O_DATA), never the checkpoint's
    s.train.task_options.data = a.mlp.data.as_ref().map(|d| d.display().to_string());
    if let Some(w) = s.train.task_options.reconcile_dataset(&s.train.task)?
        && crate::cluster::is_root()
    {
        eprintln!("warning: resuming {}: {w}", p.display());
    }
    if s.train.epochs < a.epochs {
        s.train.epochs = a.epochs;
    }
    if let Some(sh) = a.shards
        && sh != s.train.shards
    {
        anyhow::bail!(
            "{} was trained with --shards {}: resume with that (the shards define the meta-batch; the number of \
             ranks may change)",
            p.display(),
            s.train.shards
        );
    }
    if crate::cluster::is_root() {
        eprintln!(
            "resuming {} at epoch {} of {}",
            p.display(),
            s.epoch,
            s.train.epochs
        );
    }
    Ok(s)
}

/// train.svg: the training batch's meta-loss per step and the validation score, per epoch, on a loss axis.
fn plot_training(lo: &dyn LearnedOptimizer, state: &TrainState, path: &Path) -> Result<()> {
    let log_loss = lo.log_meta_loss();
    let meta = state.history.iter().filter_map(|r| {
        r.meta_loss.map(|m| {
            let v = if log_loss { m.exp() } else { m };
            (r.epoch as f64, v, v, v)
        })
    });
    let val = state.history.iter().filter_map(|r| {
        r.val_loss.map(|m| {
            let v = lo.score_shown(m).0;
            (r.epoch as f64, v, v, v)
        })
    });
    let meta_label = if log_loss {
        "exp(mean ln f) per step (training batch)"
    } else {
        "meta-loss per step (training batch)"
    };
    let curves = vec![
        (meta_label.to_string(), meta.collect()),
        (lo.score_shown(0.0).1.to_string(), val.collect()),
    ];
    let title = format!(
        "{} meta-training: {} B={}",
        lo.about().short_name,
        task_label(&state.train),
        state.train.batch
    );
    plot::xy_plot(&curves, &title, "epoch", "loss", path)
}

/// Meta-train with a progress bar; validation lines as they come; train.csv after every epoch.
fn run_training(
    ctx: &l2o_engine::Context,
    state: &mut TrainState,
    ckpt: &Path,
    csv_path: &Path,
) -> Result<f64> {
    let unrolls = state.train.horizon / state.train.unroll;
    let pb = bar(
        ((state.train.epochs - state.epoch) * unrolls) as u64,
        "meta-training".into(),
    );
    let mut last = f64::NAN;
    let group = crate::cluster::group();
    let root = group.is_root();
    if group.size() > 1 && root {
        let tc = &state.train;
        eprintln!(
            "distributed: {} ranks over {} shards of {} problems (meta-batch {}); φ is the same, bit for bit, as one \
             process with --shards {}",
            group.size(),
            tc.shards,
            tc.batch,
            tc.shards * tc.batch,
            tc.shards
        );
    }
    let tasks = state.train.clone();
    train_group(
        ctx,
        state,
        &tasks,
        group.as_ref(),
        // rank 0 writes the checkpoint (and the CSV, below)
        root.then_some(ckpt),
        &mut |e, _u, l| {
            last = l;
            pb.set_message(format!("epoch {} meta-loss {:.3e}", e + 1, l));
            pb.inc(1);
        },
        &mut |rec, st| {
            if !root {
                return;
            }
            if let Some(v) = rec.val_loss {
                let line = format!(
                    "epoch {:>4}: meta-loss/step {:.4e}  validation {:.4e}  (best {:.4e} at epoch {})",
                    rec.epoch,
                    rec.meta_loss.unwrap_or(f64::NAN),
                    v,
                    st.best_val.unwrap_or(f64::NAN),
                    st.best_epoch
                );
                if pb.is_hidden() {
                    eprintln!("{line}")
                } else {
                    pb.println(line)
                }
            }
            if let Err(e) = write_history(st, csv_path) {
                log::warn!("{e:#}");
            }
        },
    )?;
    pb.finish_and_clear();
    Ok(last)
}

pub fn train_cmd(dev: &DeviceArgs, a: &TrainArgs) -> Result<()> {
    let lo = learned_optimizer(a)?;
    let mut state = initial_state(a, lo.as_ref())?;
    let ctx = dev.open()?;
    let root = crate::cluster::is_root();
    if root {
        std::fs::create_dir_all(&a.out)
            .with_context(|| format!("cannot create {}", a.out.display()))?;
    }
    let (ckpt, csv_path) = (a.out.join("checkpoint.l2o"), a.out.join("train.csv"));
    let (t0, start_epoch) = (Instant::now(), state.epoch);
    let last = run_training(&ctx, &mut state, &ckpt, &csv_path)?;
    let secs = t0.elapsed().as_secs_f64();
    if !root {
        return Ok(());
    }
    write_history(&state, &csv_path)?;
    plot_training(lo.as_ref(), &state, &a.out.join("train.svg"))?;
    let best = (state.best_val.unwrap_or(f64::NAN), state.best_epoch);
    if state.epoch == start_epoch {
        // a resumed run with no epochs left: nothing trained, but --out still gets the checkpoint and plots
        checkpoint::save(&ckpt, &state)?;
        println!(
            "nothing to train: the checkpoint is at epoch {} of {} (raise --epochs to continue); best validation {:.4e} at epoch {}",
            state.epoch, state.train.epochs, best.0, best.1
        );
    } else {
        println!(
            "trained {} epochs ({} meta-updates, {} skipped) in {secs:.1} s; last meta-loss/step {last:.4e}; best validation {:.4e} at epoch {}",
            state.epoch, state.updates, state.skipped_total, best.0, best.1
        );
    }
    let cs = ctx.compile_stats();
    println!(
        "kernel builds: {} kernels, {:.1} s of compilation summed over threads ({:.1} s shader modules, {:.1} s pipelines); {}",
        cs.pipelines,
        cs.module_s + cs.pipeline_s,
        cs.module_s,
        cs.pipeline_s,
        ctx.pipeline_cache_report()
    );
    // the adapter and kernel variants that produced these numbers
    std::fs::write(
        a.out.join("kernels.txt"),
        format!(
            "adapter: {}\nprecision: {}\nkernels: {}\n",
            ctx.describe(),
            ctx.precision(),
            l2o::engine::variants::process_report()
        ),
    )?;
    println!(
        "wrote {} (latest φ and best φ), train.csv, train.svg, kernels.txt in {}",
        ckpt.display(),
        a.out.display()
    );
    Ok(())
}

/// The task of a training run as a plot title shows it: `quadratic n=10`, or for the MNIST MLP its hidden layers
/// (as `--hidden` takes them) and activation (its dimension is the parameter count, not `--dim`).
fn task_label(tc: &TrainConfig) -> String {
    if tc.task == "mnist" {
        let o = &tc.task_options;
        let hidden: Vec<String> = o.mlp_hidden.iter().map(usize::to_string).collect();
        format!("mnist MLP hidden {} {}", hidden.join(","), o.activation)
    } else {
        format!("{} n={}", tc.task, tc.dim)
    }
}
