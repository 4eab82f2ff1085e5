//! `l2o train` and `l2o eval`: meta-training the LSTM optimizer and evaluating a checkpoint against tuned
//! baselines on held-out problems.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use l2o_meta::checkpoint;
use l2o_meta::hlstm::{HlstmConfig, HlstmTraining, MetaLoss};
use l2o_meta::hlstm::train::Hlstm;
use l2o_meta::l2l::train::L2l;
use l2o_meta::learned::{self, LearnedOptimizer};
use l2o_meta::l2l::LstmConfig;
use l2o_meta::l2l::optimizer::LstmOptimizer;
use l2o_meta::policy::train::Policy;
use l2o_meta::state::{TrainConfig, epoch_seed, test_seed};
use l2o_meta::train::train;
use l2o_optim::step_policy::PolicyConfig;
use l2o_optim::tune::tune;
use l2o_optim::{FirstOrder, RunOptions, Trace, parse_kind, run, summarize};
use l2o_tasks::{TaskOptions, build_task};

use crate::{DeviceArgs, bar, list, parse_grid, plot, report};

/// Options of the MNIST MLP task (`--task mnist`).
#[derive(Args, Clone)]
pub struct MlpArgs {
    /// MNIST MLP: units of each hidden layer, comma separated (e.g. 20 or 20,20)
    #[arg(long)]
    hidden: Option<String>,
    /// MNIST MLP: sigmoid, relu or tanh
    #[arg(long)]
    activation: Option<String>,
    /// MNIST MLP: images per evaluation
    #[arg(long)]
    minibatch: Option<usize>,
    /// MNIST MLP: the same images every evaluation instead of fresh minibatches
    #[arg(long)]
    full_batch: bool,
    /// Directory of the MNIST IDX files (default: L2O_DATA, else ../shared/data/mnist)
    #[arg(long)]
    data: Option<PathBuf>,
}

impl MlpArgs {
    /// `base` with the options given on the command line replaced.
    pub(crate) fn options(&self, base: &TaskOptions) -> Result<TaskOptions> {
        let mut o = base.clone();
        if let Some(h) = &self.hidden {
            o.mlp_hidden = list(h, "hidden layer size")?;
        }
        if let Some(a) = &self.activation {
            l2o_tasks::Activation::parse(a)?;
            o.activation = a.clone();
        }
        if let Some(m) = self.minibatch {
            o.minibatch = m;
        }
        if self.full_batch {
            o.full_batch = true;
        }
        if let Some(d) = &self.data {
            o.data = Some(d.display().to_string());
        }
        Ok(o)
    }
}

#[derive(Args, Clone)]
pub struct TrainArgs {
    /// Learned optimizer to train: lstm (the coordinatewise L2L LSTM, seed 002), lbfgs-policy (the
    /// L-BFGS-π step-size policy, seed 003) or hlstm (the Hilbert LSTM, seed 000; docs/hlstm.md)
    #[arg(long, default_value = "lstm")]
    optimizer: String,
    #[arg(long, default_value = "quadratic")]
    task: String,
    #[arg(long, default_value_t = 10)]
    dim: usize,
    /// Problems per meta-iteration
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Optimizee steps per meta-iteration [lstm: 100; lbfgs-policy: 400 = T·K, T = 8 outer steps; hlstm: 50]
    #[arg(long)]
    horizon: Option<usize>,
    /// Unroll length of truncated BPTT, one meta-update per unroll [lstm: T = 20; lbfgs-policy: K = 50 inner
    /// steps per outer step; hlstm: 1, one greedy step per meta-update]
    #[arg(long)]
    unroll: Option<usize>,
    /// Meta-iterations (each on a fresh batch of problems)
    #[arg(long, default_value_t = 400)]
    epochs: usize,
    /// adam or adadelta [lstm, hlstm: adam; lbfgs-policy: adadelta]
    #[arg(long)]
    meta_optimizer: Option<String>,
    /// Meta learning rate [lstm: 0.01; lbfgs-policy: 1; hlstm: 0.001]
    #[arg(long)]
    meta_lr: Option<f64>,
    /// lbfgs-policy, hlstm: memory m (pairs (s, y))
    #[arg(long, default_value_t = 5)]
    memory: usize,
    /// hlstm: cell structure 1 (Gram features only; starts as the Barzilai–Borwein step) or 2 (plus the L-BFGS
    /// direction with a residual around it; starts as L-BFGS with step 1)
    #[arg(long, default_value_t = 2)]
    cell: u32,
    /// hlstm: hidden units of the scalar network
    #[arg(long = "hlstm-hidden", default_value_t = 32)]
    hlstm_hidden: usize,
    /// hlstm: meta-loss Σ_t ℓ(f_t) with ℓ = log (ln max(f, floor·f_0)) or sum (f)
    #[arg(long, default_value = "log")]
    meta_loss: String,
    /// hlstm: the floor of the log meta-loss, relative to f at the start of the run
    #[arg(long, default_value_t = 1e-8)]
    loss_floor: f64,
    /// hlstm: clip each meta-gradient to this Euclidean norm
    #[arg(long)]
    clip: Option<f64>,
    /// hlstm: stop the meta-gradient at the memory (s_i, c, h): each step is differentiated for the memory it
    /// saw and reaches the meta-loss only through θ
    #[arg(long)]
    no_memory_grad: bool,
    /// lbfgs-policy: width n_h of the policy's two linear layers
    #[arg(long, default_value_t = 6)]
    policy_width: usize,
    /// LSTM hidden units per layer
    #[arg(long = "lstm-hidden", default_value_t = 20)]
    lstm_hidden: usize,
    #[command(flatten)]
    mlp: MlpArgs,
    /// Gradient preprocessing parameter p (seed: 10); 0 feeds the raw gradient
    #[arg(long, default_value_t = 10.0)]
    preprocess: f64,
    /// Output scale s: θ ← θ + s·LSTM(∇)
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    #[arg(long, default_value_t = 128)]
    val_batch: usize,
    #[arg(long, default_value_t = 10)]
    validate_every: usize,
    /// L2L: average each meta-update over this many independent batches of --batch problems, each on its own
    /// device trainer (meta-batch = shards × batch; a trainer's trajectory must fit one buffer binding)
    #[arg(long, default_value_t = 1)]
    shards: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Continue from this checkpoint (same architecture; the epoch count may be raised with --epochs)
    #[arg(long)]
    resume: Option<PathBuf>,
    #[arg(long, default_value = "out/train")]
    out: PathBuf,
}

/// train.csv from the whole history (rewritten after every epoch, so it survives an interrupted run).
fn write_history(state: &l2o_meta::state::TrainState, path: &std::path::Path) -> Result<()> {
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

/// Which learned optimizer `l2o train` trains.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Learned {
    Lstm,
    Policy,
    Hlstm,
}

impl Learned {
    fn name(self) -> &'static str {
        match self {
            Learned::Lstm => "L2L",
            Learned::Policy => "L-BFGS-π",
            Learned::Hlstm => "HLSTM",
        }
    }
    fn held_by(s: &l2o_meta::state::TrainState) -> Self {
        match (&s.policy, &s.hlstm) {
            (Some(_), _) => Learned::Policy,
            (None, Some(_)) => Learned::Hlstm,
            (None, None) => Learned::Lstm,
        }
    }
    fn flag(self) -> &'static str {
        match self {
            Learned::Lstm => "lstm",
            Learned::Policy => "lbfgs-policy",
            Learned::Hlstm => "hlstm",
        }
    }
}

pub fn train_cmd(dev: &DeviceArgs, a: &TrainArgs) -> Result<()> {
    let kind = match a.optimizer.as_str() {
        "lstm" => Learned::Lstm,
        "lbfgs-policy" | "lbfgs-pi" => Learned::Policy,
        "hlstm" => Learned::Hlstm,
        other => bail!("unknown learned optimizer {other:?}: use lstm, lbfgs-policy or hlstm"),
    };
    let policy = PolicyConfig {
        nh: a.policy_width,
        m: a.memory,
        ..PolicyConfig::default()
    };
    let lstm = LstmConfig {
        hidden: a.lstm_hidden,
        preprocess: (a.preprocess > 0.0).then_some(a.preprocess),
        scale: a.scale,
    };
    let hcfg = HlstmConfig {
        cell: a.cell,
        m: a.memory,
        hidden: a.hlstm_hidden,
        curvature_eps: None,
    };
    let htrain = HlstmTraining {
        loss: match a.meta_loss.as_str() {
            "log" => MetaLoss::Log {
                floor: a.loss_floor,
            },
            "sum" => MetaLoss::Sum,
            other => bail!("--meta-loss {other:?}: use log or sum"),
        },
        clip: a.clip,
        memory_grad: !a.no_memory_grad,
    };
    let (horizon, unroll, metaopt, lr) = match kind {
        Learned::Lstm => (100, 20, "adam", 0.01),
        Learned::Policy => (400, 50, "adadelta", 1.0),
        Learned::Hlstm => (50, 1, "adam", 1e-3),
    };
    let tc = TrainConfig {
        task: a.task.clone(),
        dim: a.dim,
        batch: a.batch,
        horizon: a.horizon.unwrap_or(horizon),
        unroll: a.unroll.unwrap_or(unroll),
        epochs: a.epochs,
        meta_optimizer: a.meta_optimizer.clone().unwrap_or_else(|| metaopt.into()),
        meta_lr: a.meta_lr.unwrap_or(lr),
        seed: a.seed,
        val_batch: a.val_batch,
        validate_every: a.validate_every,
        max_nonfinite: 10,
        shards: a.shards,
        task_options: a.mlp.options(&TaskOptions::default())?,
    };
    let mut state = match &a.resume {
        Some(p) => {
            let mut s = checkpoint::load(p)?;
            let held = Learned::held_by(&s);
            if held != kind {
                bail!(
                    "{} holds an {}: resume it with --optimizer {}",
                    p.display(),
                    held.name(),
                    held.flag()
                );
            }
            match kind {
                Learned::Lstm => checkpoint::check_compatible(&s, &lstm)?,
                Learned::Policy => anyhow::ensure!(
                    s.policy == Some(policy),
                    "checkpoint holds the policy {:?}, but the command asks for {policy:?}",
                    s.policy
                ),
                Learned::Hlstm => anyhow::ensure!(
                    s.hlstm == Some(hcfg),
                    "checkpoint holds the HLSTM {:?}, but the command asks for {hcfg:?}",
                    s.hlstm
                ),
            }
            if s.train.epochs < a.epochs {
                s.train.epochs = a.epochs;
            }
            eprintln!(
                "resuming {} at epoch {} of {}",
                p.display(),
                s.epoch,
                s.train.epochs
            );
            s
        }
        None => {
            let lo: Box<dyn LearnedOptimizer> = match kind {
                Learned::Lstm => Box::new(L2l(lstm)),
                Learned::Policy => Box::new(Policy(policy)),
                Learned::Hlstm => Box::new(Hlstm {
                    cfg: hcfg,
                    training: htrain,
                }),
            };
            learned::new_state(lo.as_ref(), tc)?
        }
    };
    let ctx = dev.context()?;
    eprintln!("device: {} — {}", ctx.describe(), ctx.precision());
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let ckpt = a.out.join("checkpoint.l2o");
    let csv_path = a.out.join("train.csv");
    let unrolls = state.train.horizon / state.train.unroll;
    let pb = bar(
        ((state.train.epochs - state.epoch) * unrolls) as u64,
        "meta-training".into(),
    );
    let t0 = Instant::now();
    let start_epoch = state.epoch;
    let mut last = f64::NAN;
    train(
        &ctx,
        &mut state,
        Some(&ckpt),
        &mut |e, _u, l| {
            last = l;
            pb.set_message(format!("epoch {} meta-loss {:.3e}", e + 1, l));
            pb.inc(1);
        },
        &mut |rec, st| {
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
            if let Err(e) = write_history(st, &csv_path) {
                log::warn!("{e:#}");
            }
        },
    )?;
    pb.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    write_history(&state, &csv_path)?;
    // HLSTM: the log meta-loss (mean ln f) and the validation score (mean log10 f_K/f_0) are shown as the
    // corresponding losses / ratios on the log axis
    let log_loss = kind == Learned::Hlstm
        && matches!(
            state.hlstm_training,
            Some(HlstmTraining {
                loss: MetaLoss::Log { .. },
                ..
            })
        );
    // validation scores on a log scale: HLSTM mean log10(f_K/f_0), L-BFGS-π mean ln f (over problems and steps)
    let shown = |v: f64| match kind {
        Learned::Hlstm => 10f64.powf(v),
        Learned::Policy => v.exp(),
        Learned::Lstm => v,
    };
    let curves = vec![
        (
            if log_loss {
                "exp(mean ln f) per step (training batch)".to_string()
            } else {
                "meta-loss per step (training batch)".to_string()
            },
            state
                .history
                .iter()
                .filter_map(|r| {
                    r.meta_loss.map(|m| {
                        let v = if log_loss { m.exp() } else { m };
                        (r.epoch as f64, v, v, v)
                    })
                })
                .collect(),
        ),
        (
            match kind {
                Learned::Hlstm => "validation: 10^mean log10(f_K/f_0)",
                Learned::Policy => "validation: exp(mean ln f) over the horizon",
                Learned::Lstm => "validation loss",
            }
            .to_string(),
            state
                .history
                .iter()
                .filter_map(|r| {
                    r.val_loss.map(|m| {
                        let v = shown(m);
                        (r.epoch as f64, v, v, v)
                    })
                })
                .collect(),
        ),
    ];
    plot::xy_plot(
        &curves,
        &format!(
            "{} meta-training: {} B={}",
            kind.name(),
            task_label(&state.train),
            state.train.batch
        ),
        "epoch",
        "loss",
        &a.out.join("train.svg"),
    )?;
    if state.epoch == start_epoch {
        // a resumed run with no epochs left: nothing trained, but --out still gets the checkpoint and plots
        checkpoint::save(&ckpt, &state)?;
        println!(
            "nothing to train: the checkpoint is at epoch {} of {} (raise --epochs to continue); best validation {:.4e} at epoch {}",
            state.epoch,
            state.train.epochs,
            state.best_val.unwrap_or(f64::NAN),
            state.best_epoch
        );
    } else {
        println!(
            "trained {} epochs ({} meta-updates, {} skipped) in {secs:.1} s; last meta-loss/step {last:.4e}; best validation {:.4e} at epoch {}",
            state.epoch,
            state.updates,
            state.skipped_total,
            state.best_val.unwrap_or(f64::NAN),
            state.best_epoch
        );
    }
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

#[derive(Args, Clone)]
pub struct EvalArgs {
    // (fields are read by the L-BFGS-π evaluation in policy_eval.rs too)
    /// Checkpoint written by `l2o train` (its best φ is evaluated)
    #[arg(long)]
    pub(crate) checkpoint: PathBuf,
    /// Competitors: sgd, momentum, nesterov (nag), rmsprop, adam, adagrad (each tuned on the training
    /// distribution unless --lr fixes its rate) and, for L-BFGS-π checkpoints, lbfgs-armijo, lbfgs-constant,
    /// lbfgs-wolfe [LSTM: sgd,nesterov,rmsprop,adam; L-BFGS-π: adam,rmsprop,lbfgs-armijo,lbfgs-constant,lbfgs-wolfe]
    #[arg(long)]
    pub(crate) vs: Option<String>,
    /// Task and dimension of the test problems (default: the checkpoint's)
    #[arg(long)]
    pub(crate) task: Option<String>,
    #[arg(long)]
    pub(crate) dim: Option<usize>,
    /// Number of held-out test problems
    #[arg(long, default_value_t = 128)]
    pub(crate) batch: usize,
    /// Steps (default: the training horizon)
    #[arg(long)]
    pub(crate) steps: Option<usize>,
    #[command(flatten)]
    pub(crate) mlp: MlpArgs,
    /// Tuning grid {1,3}×10^j for the first-order baselines [LSTM: -4..0; L-BFGS-π: the seed's -3..-1;
    /// HLSTM: -6..1]
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) grid: Option<String>,
    /// Fixed learning rates instead of tuning, e.g. adam=0.03,rmsprop=0.01
    #[arg(long)]
    pub(crate) lr: Option<String>,
    /// L-BFGS-π: the tolerances ε of the "who reaches ‖∇f‖ < ε first" table
    #[arg(long, default_value = "1e-3,1e-4,1e-5")]
    pub(crate) eps: String,
    /// L-BFGS-π: a problem stops when ‖∇f‖ < eps-g (seed: 1e-8)
    #[arg(long, default_value_t = 1e-8)]
    pub(crate) eps_g: f64,
    /// Problems (networks) of the training batch the baselines are tuned on (default: --batch); fewer make
    /// tuning cheaper where one step is expensive (MNIST on a software adapter)
    #[arg(long)]
    pub(crate) tune_batch: Option<usize>,
    /// HLSTM: evaluate at each of these dimensions, without retraining (e.g. 5,10,100,1000)
    #[arg(long)]
    pub(crate) dims: Option<String>,
    /// HLSTM: budgets K of gradient evaluations at which log10(f_K/f_0) is reported (default: --steps)
    #[arg(long)]
    pub(crate) budgets: Option<String>,
    /// HLSTM: also run this L2L LSTM checkpoint (trained on the same problems)
    #[arg(long)]
    pub(crate) l2l: Option<PathBuf>,
    #[arg(long, default_value = "out/eval")]
    pub(crate) out: PathBuf,
}

/// `--lr adam=0.03,rmsprop=0.01` as (name, rate) pairs.
pub(crate) fn fixed_rates(spec: Option<&str>) -> Result<Vec<(String, f64)>> {
    let Some(spec) = spec else { return Ok(vec![]) };
    spec.split(',')
        .map(|kv| {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("--lr {kv:?}: expected NAME=RATE, e.g. adam=0.03")
            })?;
            let lr: f64 = v
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("--lr {kv:?}: {v:?} is not a number"))?;
            anyhow::ensure!(
                lr > 0.0 && lr.is_finite(),
                "--lr {kv:?}: the rate must be positive"
            );
            Ok((k.trim().to_string(), lr))
        })
        .collect()
}

/// The learning rate of baseline `name`: fixed by --lr, else tuned on `train_task` over `grid`.
pub(crate) fn rate_for(
    ctx: &l2o_engine::Context,
    name: &str,
    kind: l2o_optim::Kind,
    fixed: &[(String, f64)],
    train_task: &dyn l2o_tasks::Task,
    grid: &[f64],
    steps: usize,
) -> Result<f64> {
    if let Some((_, lr)) = fixed.iter().find(|(k, _)| k == name) {
        eprintln!("{name}: lr {lr} (fixed by --lr)");
        return Ok(*lr);
    }
    let r = tune(ctx, &[train_task], kind, grid, steps)?;
    eprintln!("tuned {name}: lr {} (grid {grid:?})", r.best_lr);
    Ok(r.best_lr)
}

/// The competitors of an evaluation, by name: `lbfgs-armijo` (alias `lbfgs-btls`), `lbfgs-constant`
/// (`lbfgs-b`), `lbfgs-wolfe` with memory m, or a first-order method whose rate `--lr` fixes or the tuner picks
/// on training problems (`tune_on`, built once, on first need — never the test problems).
pub(crate) struct Competitors<'a> {
    pub ctx: &'a l2o_engine::Context,
    pub m: usize,
    pub lrs: Vec<(String, f64)>,
    pub grid: Vec<f64>,
    pub steps: usize,
    pub tune_on: Box<dyn Fn() -> Result<Box<dyn l2o_tasks::Task>> + 'a>,
    tuned_on: Option<Box<dyn l2o_tasks::Task>>,
}

impl<'a> Competitors<'a> {
    pub fn new(
        ctx: &'a l2o_engine::Context,
        m: usize,
        lrs: Vec<(String, f64)>,
        grid: Vec<f64>,
        steps: usize,
        tune_on: Box<dyn Fn() -> Result<Box<dyn l2o_tasks::Task>> + 'a>,
    ) -> Self {
        Self {
            ctx,
            m,
            lrs,
            grid,
            steps,
            tune_on,
            tuned_on: None,
        }
    }

    pub fn make(&mut self, name: &str) -> Result<Box<dyn l2o_optim::Optimizer>> {
        let ls = match name {
            "lbfgs-armijo" | "lbfgs-btls" => Some(l2o_optim::LineSearch::armijo()),
            "lbfgs-constant" | "lbfgs-b" => Some(l2o_optim::LineSearch::Constant),
            "lbfgs-wolfe" => Some(l2o_optim::LineSearch::wolfe()),
            _ => None,
        };
        if let Some(ls) = ls {
            return Ok(Box::new(l2o_optim::Lbfgs::new(l2o_optim::LbfgsConfig {
                m: self.m,
                line_search: ls,
                ..l2o_optim::LbfgsConfig::default()
            })));
        }
        let kind = kind_of(name)?;
        if self.tuned_on.is_none() && !self.lrs.iter().any(|(k, _)| k == name) {
            self.tuned_on = Some((self.tune_on)()?);
        }
        let lr = match &self.tuned_on {
            Some(t) => rate_for(
                self.ctx,
                name,
                kind,
                &self.lrs,
                t.as_ref(),
                &self.grid,
                self.steps,
            )?,
            // every rate fixed by --lr: no tuning task needed
            None => self
                .lrs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, lr)| *lr)
                .expect("a rate fixed by --lr"),
        };
        Ok(Box::new(FirstOrder::new(kind, lr)))
    }
}

pub(crate) fn kind_of(name: &str) -> Result<l2o_optim::Kind> {
    let n = if name == "nag" { "nesterov" } else { name };
    parse_kind(n).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown baseline {name:?}: use sgd, momentum, nesterov (nag), rmsprop, adam, adagrad"
        )
    })
}

/// Per optimizer: final-step summary and the mean over all steps 1..=K of the mean loss.
fn table(traces: &[Trace]) -> String {
    let mut s = String::from(
        "| optimizer | final loss: mean | median | q1 | q3 | mean loss over all steps |\n|---|---|---|---|---|---|\n",
    );
    for t in traces {
        let k = t.steps();
        let f = summarize(&t.f[k]);
        let all = (1..=k).map(|i| summarize(&t.f[i]).mean).sum::<f64>() / k as f64;
        let _ = writeln!(
            s,
            "| {} | {:.4e} | {:.4e} | {:.4e} | {:.4e} | {:.4e} |",
            t.optimizer, f.mean, f.median, f.q1, f.q3, all
        );
    }
    s
}

pub fn eval_cmd(dev: &DeviceArgs, a: &EvalArgs) -> Result<()> {
    let st = checkpoint::load(&a.checkpoint)?;
    if let Some(pc) = st.policy {
        return crate::policy_eval::policy_eval(dev, a, &st, pc);
    }
    if let Some(hc) = st.hlstm {
        return crate::hlstm_eval::hlstm_eval(dev, a, &st, hc);
    }
    let task_name = a.task.clone().unwrap_or_else(|| st.train.task.clone());
    let dim = a.dim.unwrap_or(st.train.dim);
    let steps = a.steps.unwrap_or(st.train.horizon);
    let grid = parse_grid(a.grid.as_deref().unwrap_or("-4..0"))?;
    let lrs = fixed_rates(a.lr.as_deref())?;
    let vs = a.vs.as_deref().unwrap_or("sgd,nesterov,rmsprop,adam");
    let kinds: Vec<(String, l2o_optim::Kind)> = list::<String>(vs, "baseline")?
        .into_iter()
        .map(|n| kind_of(&n).map(|k| (n, k)))
        .collect::<Result<_>>()?;
    let ctx = dev.context()?;
    eprintln!("device: {} — {}", ctx.describe(), ctx.precision());
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    // Baselines are tuned on a training batch (the distribution the LSTM was trained on, first epoch's seed)
    // at the test dimension and horizon; the test problems come from a seed never used in training/validation.
    let opts = a.mlp.options(&st.train.task_options)?;
    let train_task = build_task(
        &ctx,
        &task_name,
        dim,
        &opts,
        a.tune_batch.unwrap_or(a.batch),
        epoch_seed(st.train.seed, 0),
        false,
    )?;
    // held-out problems: a seed never used in training or validation (and MNIST's test images)
    let test = build_task(
        &ctx,
        &task_name,
        dim,
        &opts,
        a.batch,
        test_seed(st.train.seed),
        true,
    )?;
    let o = RunOptions::fixed(steps);
    let mut traces = vec![];
    let pb = bar(steps as u64, "lstm".into());
    let mut lstm = LstmOptimizer::new(st.lstm, st.best_phi.clone())?;
    traces.push(run(&ctx, test.as_ref(), &mut lstm, &o, &mut |k| {
        pb.set_position(k as u64)
    })?);
    pb.finish_and_clear();
    let mut tuned = vec![];
    for (name, kind) in &kinds {
        let lr = rate_for(&ctx, name, *kind, &lrs, train_task.as_ref(), &grid, steps)?;
        tuned.push((name.clone(), lr));
        let mut opt = FirstOrder::new(*kind, lr);
        traces.push(run(&ctx, test.as_ref(), &mut opt, &o, &mut |_| {})?);
    }
    for t in &traces {
        report::write_csv(
            t,
            &a.out.join(format!("{}.csv", report::slug(&t.optimizer))),
        )?;
    }
    let md = table(&traces);
    let header = format!(
        "{} n={}, {} held-out problems, {steps} steps; LSTM = best φ of {} (epoch {}); baselines tuned on grid {:?} on a training batch of {}\n\n",
        task_name,
        test.dim(),
        a.batch,
        a.checkpoint.display(),
        st.best_epoch,
        grid,
        train_task.batch()
    );
    std::fs::write(a.out.join("eval.md"), format!("{header}{md}"))?;
    print!("{header}{md}");
    let lstm_t = &traces[0];
    let k = lstm_t.steps();
    let lstm_final = summarize(&lstm_t.f[k]).mean;
    let lstm_all = (1..=k).map(|i| summarize(&lstm_t.f[i]).mean).sum::<f64>();
    let beats = traces[1..].iter().all(|t| {
        summarize(&t.f[k]).mean > lstm_final
            && (1..=k).map(|i| summarize(&t.f[i]).mean).sum::<f64>() > lstm_all
    });
    println!(
        "LSTM ahead of every baseline on the final mean loss and the mean over all steps: {}",
        if beats { "yes" } else { "no" }
    );
    plot::loss_plot(
        &traces,
        &format!(
            "{task_name} n={}: LSTM vs tuned baselines ({} problems)",
            test.dim(),
            a.batch
        ),
        &a.out.join("loss.svg"),
    )?;
    eprintln!(
        "wrote eval.md, loss.svg and one CSV per optimizer in {}",
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
