//! The command-line arguments of `l2o train` and `l2o eval` (clap structs), shared by every learned optimizer.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use l2o_tasks::TaskOptions;

use crate::list;

/// Options of the MNIST MLP task (`--task mnist`).
#[derive(Args, Clone)]
pub struct MlpArgs {
    /// MNIST MLP: units of each hidden layer, comma separated (e.g. 20 or 20,20)
    #[arg(long)]
    pub(crate) hidden: Option<String>,
    /// MNIST MLP: sigmoid, relu or tanh
    #[arg(long)]
    pub(crate) activation: Option<String>,
    /// MNIST MLP: images per evaluation
    #[arg(long)]
    pub(crate) minibatch: Option<usize>,
    /// MNIST MLP: the same images every evaluation instead of fresh minibatches
    #[arg(long)]
    pub(crate) full_batch: bool,
    /// Directory of the MNIST IDX files (default: L2O_DATA, else ~/.local/share/l2o/mnist; never stored in checkpoints)
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
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
    pub(crate) optimizer: String,
    /// Training problems: a task (quadratic, quadratic-cond, quadratic-cond-rotated, rosenbrock, logistic, mnist)
    /// or several joined by '+' (a mixture: each batch split into one block per family)
    #[arg(long, default_value = "quadratic")]
    pub(crate) task: String,
    #[arg(long, default_value_t = 10)]
    pub(crate) dim: usize,
    /// Problems per meta-iteration
    #[arg(long, default_value_t = 32)]
    pub(crate) batch: usize,
    /// Optimizee steps per meta-iteration [lstm: 100; lbfgs-policy: 400 = T·K, T = 8 outer steps; hlstm: 50]
    #[arg(long)]
    pub(crate) horizon: Option<usize>,
    /// Unroll length of truncated BPTT, one meta-update per unroll [lstm: T = 20; lbfgs-policy: K = 50 inner
    /// steps per outer step; hlstm: 1, one greedy step per meta-update]
    #[arg(long)]
    pub(crate) unroll: Option<usize>,
    /// Meta-iterations (each on a fresh batch of problems)
    #[arg(long, default_value_t = 400)]
    pub(crate) epochs: usize,
    /// adam or adadelta [lstm, hlstm: adam; lbfgs-policy: adadelta]
    #[arg(long)]
    pub(crate) meta_optimizer: Option<String>,
    /// Meta learning rate [lstm: 0.01; lbfgs-policy: 1; hlstm: 0.001]
    #[arg(long)]
    pub(crate) meta_lr: Option<f64>,
    /// Decay the meta learning rate along a half cosine from --meta-lr (first epoch) to this value (last
    /// epoch); without it the rate is constant
    #[arg(long)]
    pub(crate) meta_lr_final: Option<f64>,
    /// lbfgs-policy, hlstm: memory m (pairs (s, y))
    #[arg(long, default_value_t = 5)]
    pub(crate) memory: usize,
    /// hlstm: cell structure 1 (Gram features only; starts as the Barzilai–Borwein step) or 2 (plus the L-BFGS
    /// direction with a residual around it; starts as L-BFGS with step 1)
    #[arg(long, default_value_t = 2)]
    pub(crate) cell: u32,
    /// hlstm: hidden units of the scalar network
    #[arg(long = "hlstm-hidden", default_value_t = 32)]
    pub(crate) hlstm_hidden: usize,
    /// hlstm: meta-loss Σ_t ℓ(f_t) with ℓ = log (ln max(f, floor·f_0)) or sum (f)
    #[arg(long, default_value = "log")]
    pub(crate) meta_loss: String,
    /// hlstm: the floor of the log meta-loss, relative to f at the start of the run
    #[arg(long, default_value_t = 1e-8)]
    pub(crate) loss_floor: f64,
    /// hlstm: clip each meta-gradient to this Euclidean norm
    #[arg(long)]
    pub(crate) clip: Option<f64>,
    /// hlstm: stop the meta-gradient at the memory (s_i, c, h): each step is differentiated for the memory it
    /// saw and reaches the meta-loss only through θ
    #[arg(long)]
    pub(crate) no_memory_grad: bool,
    /// lbfgs-policy: width n_h of the policy's two linear layers
    #[arg(long, default_value_t = 6)]
    pub(crate) policy_width: usize,
    /// LSTM hidden units per layer
    #[arg(long = "lstm-hidden", default_value_t = 20)]
    pub(crate) lstm_hidden: usize,
    #[command(flatten)]
    pub(crate) mlp: MlpArgs,
    /// Gradient preprocessing parameter p (seed: 10); 0 feeds the raw gradient
    #[arg(long, default_value_t = 10.0)]
    pub(crate) preprocess: f64,
    /// Output scale s: θ ← θ + s·LSTM(∇)
    #[arg(long, default_value_t = 1.0)]
    pub(crate) scale: f64,
    #[arg(long, default_value_t = 128)]
    pub(crate) val_batch: usize,
    #[arg(long, default_value_t = 10)]
    pub(crate) validate_every: usize,
    /// Average each meta-update over this many independent batches of --batch problems, each on its own device
    /// trainer (meta-batch = shards × batch; a trainer's trajectory must fit one buffer binding); the ranks of
    /// a distributed run own whole shards, and φ depends on the shards, never on the ranks [default: 1, under
    /// mpirun the number of ranks]
    #[arg(long)]
    pub(crate) shards: Option<usize>,
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Continue from this checkpoint (same architecture; the epoch count may be raised with --epochs)
    #[arg(long)]
    pub(crate) resume: Option<PathBuf>,
    #[arg(long, default_value = "out/train")]
    pub(crate) out: PathBuf,
}

#[derive(Args, Clone)]
pub struct EvalArgs {
    // (read by every evaluation in eval/)
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
    /// Number of held-out test problems [default: 128; with --protocol paper: 1000]
    #[arg(long)]
    pub(crate) batch: Option<usize>,
    /// L-BFGS-π on MNIST: the test protocol of Egidio et al. 2021 §6 (Table 1): 1,000 test networks (the
    /// 10,000 test images in 10 groups of 1,000, 100 starting points x0 per group), up to K = 800 iterations
    /// or ‖∇f‖ < 1e-8, ε = 1e-3, 1e-4, 1e-5 — each unless given (e.g. `--batch 100` for a tenth of it); the
    /// networks run in shards of 10, each shard a fresh split of the test images into the 10 groups
    #[arg(long, value_enum)]
    pub(crate) protocol: Option<Protocol>,
    /// Draw the held-out problems in this many shards (each from its own seed; shard 0 of 1 is the
    /// single-process set); the ranks of a distributed run own whole shards, and the table depends on the
    /// shards, never on the ranks. Shards run one at a time, so more shards also fit a large test set into
    /// the device's buffer limits [default: 1, under mpirun the number of ranks; with --protocol paper one
    /// shard per 10 networks, at least the number of ranks]
    #[arg(long)]
    pub(crate) shards: Option<usize>,
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

/// A published evaluation protocol (`l2o eval --protocol`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Egidio et al. 2021 §6, Table 1: L-BFGS-π on the MNIST 1×20 MLP.
    Paper,
}

/// The paper protocol's numbers (Egidio et al. 2021 §6): test networks (10 groups × 100 x0), iterations K,
/// images per network (full batch).
pub const PAPER_TEST_NETWORKS: usize = 1000;
pub const PAPER_TEST_STEPS: usize = 800;
pub const PAPER_IMAGES: usize = 1000;
/// Test networks per shard under `--protocol paper`: one x0 on each of the 10 groups of 1,000 test images
/// (network b of a shard on group b; each shard draws its own split). 100 networks in one shard are over
/// lavapipe's 128 MiB binding (the first layer's partial sums: 598 MiB in f64); 10 fit every adapter.
pub const PAPER_SHARD_NETWORKS: usize = 10;

impl EvalArgs {
    /// Held-out problems: `--batch`, else 1,000 under `--protocol paper`, else 128.
    pub(crate) fn batch(&self) -> usize {
        self.batch.unwrap_or(match self.protocol {
            Some(Protocol::Paper) => PAPER_TEST_NETWORKS,
            None => 128,
        })
    }

    /// The training problems the baselines are tuned on: the distribution the learned optimizer was trained on
    /// (first epoch's seed, MNIST's training images), `--tune-batch` of them at dimension `dim` — never the
    /// test problems.
    pub(crate) fn tuning_task(
        &self,
        ctx: &l2o_engine::Context,
        st: &l2o_meta::state::TrainState,
        task: &str,
        dim: usize,
        opts: &TaskOptions,
    ) -> Result<Box<dyn l2o_tasks::Task>> {
        let batch = self.tune_batch.unwrap_or(self.batch());
        let seed = l2o_meta::state::epoch_seed(st.train.seed, 0);
        l2o_tasks::build_task(ctx, task, dim, opts, batch, seed, false)
    }

    /// The held-out problems this rank runs: `--batch` of them at dimension `dim`, in `--shards` shards from
    /// seeds never used in training or validation (and MNIST's test images); this rank's shards only.
    pub(crate) fn test_task<'c>(
        &self,
        ctx: &'c l2o_engine::Context,
        st: &l2o_meta::state::TrainState,
        task: &str,
        dim: usize,
        opts: &TaskOptions,
    ) -> Result<crate::held_out::HeldOut<'c>> {
        let ranks = crate::cluster::group().size();
        let shards = self.shards.unwrap_or(match self.protocol {
            Some(Protocol::Paper) => self.batch().div_ceil(PAPER_SHARD_NETWORKS).max(ranks),
            None => ranks,
        });
        let (train_seed, task, opts) = (st.train.seed, task.to_string(), opts.clone());
        crate::held_out::HeldOut::new(ctx, shards, self.batch(), move |s, b| {
            let seed = l2o_meta::state::test_shard_seed(train_seed, s);
            l2o_tasks::build_task(ctx, &task, dim, &opts, b, seed, true)
        })
    }
}
