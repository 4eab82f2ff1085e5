//! The registry: the learned optimizers this build knows, by name ([`by_name`], the CLI's `--optimizer` and
//! Python's `l2o.train`) and by what a training state (or checkpoint) holds ([`of_state`]). It lives outside the
//! trait module ([`crate::learned`]) so that the trait does not import the optimizers that implement it.

use anyhow::{Result, bail};

use crate::learned::LearnedOptimizer;
use crate::state::TrainState;

/// The learned optimizer a training state (or checkpoint) holds.
pub fn of_state(state: &TrainState) -> Box<dyn LearnedOptimizer> {
    match (state.policy, state.hlstm) {
        (Some(p), _) => Box::new(crate::policy::train::Policy(p)),
        (None, Some(cfg)) => Box::new(crate::hlstm::train::Hlstm {
            cfg,
            training: state.hlstm_training.unwrap_or_default(),
        }),
        (None, None) => Box::new(crate::l2l::train::L2l(state.lstm)),
    }
}

/// Error unless `state` holds `lo` — the same kind of learned optimizer with the same configuration — so that
/// a run can resume it.
pub fn check_resume(lo: &dyn LearnedOptimizer, state: &TrainState) -> Result<()> {
    let held = of_state(state);
    if held.about().flag != lo.about().flag {
        bail!(
            "the checkpoint holds {}: resume it with --optimizer {}",
            held.about().name,
            held.about().flag
        );
    }
    lo.check_resume(state)
}

/// The architecture options of every learned optimizer, by the names the CLI's flags and the Python package's
/// keywords use; [`Default`] is what they default to.
#[derive(Clone, Debug)]
pub struct LearnedOptions {
    /// L2L: LSTM hidden units per layer; gradient preprocessing p (0: raw gradient); output scale s.
    pub lstm_hidden: usize,
    pub preprocess: f64,
    pub scale: f64,
    /// L-BFGS-π and the Hilbert LSTM: memory m.
    pub memory: usize,
    /// L-BFGS-π: width n_h of its linear layers.
    pub policy_width: usize,
    /// Hilbert LSTM: cell structure (1 or 2), hidden units, meta-loss ("log" or "sum") and its floor, clip,
    /// and whether the meta-gradient follows the memory.
    pub cell: u32,
    pub hlstm_hidden: usize,
    pub meta_loss: String,
    pub loss_floor: f64,
    pub clip: Option<f64>,
    pub memory_grad: bool,
}

impl Default for LearnedOptions {
    fn default() -> Self {
        Self {
            lstm_hidden: 20,
            preprocess: 10.0,
            scale: 1.0,
            memory: 5,
            policy_width: 6,
            cell: 2,
            hlstm_hidden: 32,
            meta_loss: "log".into(),
            loss_floor: 1e-8,
            clip: None,
            memory_grad: true,
        }
    }
}

/// Names accepted by [`by_name`].
pub const LEARNED_NAMES: &[&str] = &["lstm", "lbfgs-policy", "hlstm"];

/// The learned optimizer `name` names (lstm, lbfgs-policy, hlstm), configured by `o`.
pub fn by_name(name: &str, o: &LearnedOptions) -> Result<Box<dyn LearnedOptimizer>> {
    use crate::hlstm::{HlstmConfig, HlstmTraining, MetaLoss};
    Ok(match name {
        "lstm" => Box::new(crate::l2l::train::L2l(crate::l2l::LstmConfig {
            hidden: o.lstm_hidden,
            preprocess: (o.preprocess > 0.0).then_some(o.preprocess),
            scale: o.scale,
        })),
        "lbfgs-policy" | "lbfgs-pi" => Box::new(crate::policy::train::Policy(
            l2o_optim::step_policy::PolicyConfig {
                nh: o.policy_width,
                m: o.memory,
                ..Default::default()
            },
        )),
        "hlstm" => Box::new(crate::hlstm::train::Hlstm {
            cfg: HlstmConfig {
                cell: o.cell,
                m: o.memory,
                hidden: o.hlstm_hidden,
                curvature_eps: None,
            },
            training: HlstmTraining {
                loss: match o.meta_loss.as_str() {
                    "log" => MetaLoss::Log {
                        floor: o.loss_floor,
                    },
                    "sum" => MetaLoss::Sum,
                    other => anyhow::bail!("meta-loss {other:?}: use log or sum"),
                },
                clip: o.clip,
                memory_grad: o.memory_grad,
            },
        }),
        other => anyhow::bail!(
            "unknown learned optimizer {other:?}: use {}",
            LEARNED_NAMES.join(", ")
        ),
    })
}
