//! The complete state of a meta-training run: everything a checkpoint stores so that `--resume` continues
//! exactly where an uninterrupted run would be.

use serde::{Deserialize, Serialize};

use crate::l2l::LstmConfig;
use crate::metaopt::MetaOptState;

/// Hyperparameters of meta-training (stored in the checkpoint header).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Optimizee task name (l2o_tasks::make_task) and its dimension / batch.
    pub task: String,
    pub dim: usize,
    pub batch: usize,
    /// Steps of the optimizee per meta-iteration (seed: 100) and unroll length T (seed: 20).
    pub horizon: usize,
    pub unroll: usize,
    /// Meta-iterations (epochs): each samples a fresh batch and runs horizon/unroll meta-updates.
    pub epochs: usize,
    /// Meta-optimizer: "adam" or "adadelta", with its learning rate.
    pub meta_optimizer: String,
    pub meta_lr: f64,
    /// Meta learning-rate schedule: None keeps `meta_lr` throughout; Some(final) decays it along a half cosine,
    /// epoch e of E using final + (meta_lr − final)·(1 + cos(π·e/(E − 1)))/2 (`meta_lr` in the first epoch,
    /// `final` in the last; [`TrainConfig::meta_lr_at`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_lr_final: Option<f64>,
    /// Base seed: epoch e trains on problems drawn with `epoch_seed(seed, e)`; validation uses its own seeds.
    pub seed: u64,
    /// Validation: this many problems (seed `validation_seed(seed)`), every `validate_every` epochs.
    pub val_batch: usize,
    pub validate_every: usize,
    /// Stop with an error after this many consecutive non-finite meta-gradients.
    pub max_nonfinite: usize,
    /// Options of the task (MNIST MLP architecture, minibatch, data directory).
    #[serde(default)]
    pub task_options: l2o_tasks::TaskOptions,
    /// Shards of the meta-batch: each meta-update averages the meta-gradients of `shards` independent batches
    /// of `batch` problems, each on its own device trainer, so the meta-batch (shards × batch problems) is not
    /// bounded by what one trainer's trajectory fits in a binding — and the unit of distribution: the ranks of
    /// a distributed run own whole shards (of the meta-batch and of the validation set, which is split into as
    /// many). φ depends on the shards, never on how many ranks run them. Shard 0 of epoch e is the batch an
    /// unsharded run draws.
    #[serde(default = "one")]
    pub shards: usize,
}

fn one() -> usize {
    1
}

impl TrainConfig {
    /// The meta learning rate of epoch `epoch` (0-based) under the schedule (see `meta_lr_final`).
    pub fn meta_lr_at(&self, epoch: usize) -> f64 {
        match self.meta_lr_final {
            None => self.meta_lr,
            Some(f) => {
                let x = if self.epochs > 1 {
                    epoch.min(self.epochs - 1) as f64 / (self.epochs - 1) as f64
                } else {
                    0.0
                };
                f + (self.meta_lr - f) * 0.5 * (1.0 + (std::f64::consts::PI * x).cos())
            }
        }
    }

    /// The checks every learned optimizer's training shares: the horizon is a positive multiple of the unroll
    /// (`unroll_name`: what one meta-update spans), and the dimension and batches are positive.
    pub fn validate(&self, unroll_name: &str) -> anyhow::Result<()> {
        if self.unroll == 0 || self.horizon == 0 || self.horizon % self.unroll != 0 {
            anyhow::bail!(
                "the horizon ({}) must be a positive multiple of the {unroll_name} ({})",
                self.horizon,
                self.unroll
            );
        }
        if self.dim == 0 || self.batch == 0 || self.val_batch == 0 || self.shards == 0 {
            anyhow::bail!("dimension, batch, shards and validation batch must be positive");
        }
        if let Some(f) = self.meta_lr_final
            && !(f > 0.0 && f.is_finite())
        {
            anyhow::bail!("the final meta learning rate {f} must be a positive finite number");
        }
        if self.val_batch < self.shards {
            anyhow::bail!(
                "the validation batch ({}) is split into the {} shards: give --val-batch {} or more",
                self.val_batch,
                self.shards,
                self.shards
            );
        }
        Ok(())
    }

    /// B problems of the training task drawn with `seed` (training images for MNIST).
    pub fn task(
        &self,
        ctx: &l2o_engine::Context,
        batch: usize,
        seed: u64,
    ) -> anyhow::Result<Box<dyn l2o_tasks::Task>> {
        l2o_tasks::build_task(
            ctx,
            &self.task,
            self.dim,
            &self.task_options,
            batch,
            seed,
            false,
        )
    }

    /// Shard v of `shards` of the fixed validation problems: [`split`]`(val_batch, shards)[v]` problems drawn
    /// with [`validation_shard_seed`] (shard 0 of 1 is the whole set).
    pub fn validation_shard(
        &self,
        ctx: &l2o_engine::Context,
        v: usize,
        shards: usize,
    ) -> anyhow::Result<Box<dyn l2o_tasks::Task>> {
        let b = split(self.val_batch, shards)[v];
        self.task(ctx, b, validation_shard_seed(self.seed, v))
    }

    /// The training problems of epoch e.
    pub fn epoch_task(
        &self,
        ctx: &l2o_engine::Context,
        e: usize,
    ) -> anyhow::Result<Box<dyn l2o_tasks::Task>> {
        self.shard_task(ctx, e, 0)
    }

    /// The training problems of shard s of epoch e (s = 0: [`TrainConfig::epoch_task`]).
    pub fn shard_task(
        &self,
        ctx: &l2o_engine::Context,
        e: usize,
        s: usize,
    ) -> anyhow::Result<Box<dyn l2o_tasks::Task>> {
        self.task(ctx, self.batch, shard_seed(self.seed, e, s))
    }
}

/// One line of the training log (and of the CSV).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    /// Mean over the epoch's unrolls of the meta-loss per step, (1/T)·L (None if every update was skipped).
    pub meta_loss: Option<f64>,
    /// Mean loss over the validation problems and the horizon (None when not validated this epoch).
    pub val_loss: Option<f64>,
    pub skipped: usize,
}

/// Everything that evolves during training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Architecture of the coordinatewise LSTM (ignored when `policy` is set).
    pub lstm: LstmConfig,
    /// L-BFGS-π: the checkpoint holds a step-size policy (φ is its parameter vector) instead of an LSTM.
    #[serde(default)]
    pub policy: Option<l2o_optim::step_policy::PolicyConfig>,
    /// Hilbert LSTM: the checkpoint holds an HLSTM (φ is its parameter vector).
    #[serde(default)]
    pub hlstm: Option<crate::hlstm::HlstmConfig>,
    /// Hilbert LSTM training options (meta-loss, meta-gradient clipping).
    #[serde(default)]
    pub hlstm_training: Option<crate::hlstm::HlstmTraining>,
    pub train: TrainConfig,
    /// Completed epochs; with `train.seed` this is the whole RNG state (epoch seeds are derived, not drawn).
    pub epoch: usize,
    /// Meta-updates applied so far.
    pub updates: usize,
    pub phi: Vec<f64>,
    pub best_phi: Vec<f64>,
    /// Best validation loss so far (None before the first validation).
    pub best_val: Option<f64>,
    pub best_epoch: usize,
    pub metaopt: MetaOptState,
    /// Non-finite meta-gradients skipped in total, and in a row right now.
    pub skipped_total: usize,
    pub skipped_in_row: usize,
    pub history: Vec<EpochRecord>,
}

impl TrainState {
    /// Epoch 0 of a run from φ: best φ = φ, nothing validated yet, a fresh meta-optimizer; no learned optimizer
    /// named yet (the caller sets `lstm`, `policy` or `hlstm`).
    pub fn start(train: TrainConfig, phi: Vec<f64>) -> anyhow::Result<Self> {
        let metaopt = MetaOptState::by_name(&train.meta_optimizer, phi.len(), train.meta_lr)?;
        Ok(Self {
            lstm: LstmConfig::default(),
            policy: None,
            hlstm: None,
            hlstm_training: None,
            train,
            epoch: 0,
            updates: 0,
            best_phi: phi.clone(),
            phi,
            best_val: None,
            best_epoch: 0,
            metaopt,
            skipped_total: 0,
            skipped_in_row: 0,
            history: vec![],
        })
    }
}

/// The seed of shard s of epoch e's training problems (shard 0: [`epoch_seed`]).
pub fn shard_seed(seed: u64, e: usize, s: usize) -> u64 {
    let seed = epoch_seed(seed, e);
    if s == 0 {
        seed
    } else {
        epoch_seed(seed ^ 0x5eed_5eed_5eed_5eed, s)
    }
}

/// Seed of the problems of epoch e (SplitMix64 of the pair, so epochs never share a seed with validation).
pub fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    splitmix(seed ^ splitmix(epoch as u64 + 1))
}

/// Seed of the validation problems.
pub fn validation_seed(seed: u64) -> u64 {
    splitmix(seed ^ 0x5eed_0f_7a1d_a7e5)
}

/// Seed of shard v of the validation problems (shard 0: [`validation_seed`]).
pub fn validation_shard_seed(seed: u64, v: usize) -> u64 {
    let s = validation_seed(seed);
    if v == 0 {
        s
    } else {
        splitmix(s ^ splitmix(v as u64))
    }
}

/// Seed of shard s of the held-out evaluation problems (shard 0: [`test_seed`]).
pub fn test_shard_seed(seed: u64, s: usize) -> u64 {
    let t = test_seed(seed);
    if s == 0 {
        t
    } else {
        splitmix(t ^ splitmix(s as u64))
    }
}

/// `total` split into `parts` sizes as even as possible, the larger first (they sum to `total`).
pub fn split(total: usize, parts: usize) -> Vec<usize> {
    let parts = parts.max(1);
    (0..parts)
        .map(|i| total / parts + usize::from(i < total % parts))
        .collect()
}

/// Seed of held-out evaluation problems (never used in training or validation).
pub fn test_seed(seed: u64) -> u64 {
    splitmix(seed ^ 0x7e57_0000_0000_0001)
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
