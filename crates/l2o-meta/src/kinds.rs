//! The learned optimizers this build knows, found by what a training state (or checkpoint) holds.

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
