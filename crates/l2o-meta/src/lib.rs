//! # l2o-meta: learned optimizers
//!
//! The coordinatewise LSTM optimizer (L2L, seed 002) — [`lstm`] holds its equations, the f64 CPU reference of
//! forward and adjoint and the frozen-gradient surrogate; [`gpu`] runs the same forward sweep, stored
//! trajectory and reverse sweep on the device. The L-BFGS step-size policy (seed 003): [`policy`],
//! [`policy_gpu`], [`policy_train`]. The Hilbert LSTM (seed 000, docs/hlstm.md): [`hlstm`], [`hlstm_gpu`],
//! [`hlstm_train`]. [`load_optimizer`] turns any checkpoint into a driver optimizer.
//!
//! **Depends on** l2o-engine, l2o-tasks and l2o-optim (the driver and baselines it evaluates against); nothing
//! depends on it but the umbrella crate and the CLI.

pub mod checkpoint;
pub mod gpu;
pub mod hlstm;
pub mod hlstm_gpu;
pub mod hlstm_train;
pub mod lstm;
pub mod lstm_wgsl;
pub mod metaopt;
pub mod optimizer;
pub mod policy;
pub mod policy_gpu;
pub mod policy_train;
pub mod state;
pub mod train;

pub use lstm::{LstmConfig, MAX_HIDDEN};

/// Any learned optimizer from a checkpoint written by `l2o train` — the L2L LSTM, L-BFGS-π or the Hilbert LSTM,
/// whichever it holds — with its best φ, ready for [`l2o_optim::run`] or any driver.
pub fn load_optimizer(path: &std::path::Path) -> anyhow::Result<Box<dyn l2o_optim::Optimizer>> {
    let st = checkpoint::load(path)?;
    Ok(match (st.policy, st.hlstm) {
        (Some(pc), _) => Box::new(l2o_optim::Lbfgs::with_policy(pc, st.best_phi)?),
        (None, Some(hc)) => Box::new(hlstm_gpu::HlstmOptimizer::new(hc, st.best_phi)?),
        (None, None) => Box::new(optimizer::LstmOptimizer::new(st.lstm, st.best_phi)?),
    })
}
