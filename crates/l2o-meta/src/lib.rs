//! # l2o-meta: learned optimizers
//!
//! One folder per learned optimizer, each holding its equations and f64 reference (forward and hand-derived
//! adjoint together, in `mod.rs`), its device trainer and inference kernels' launcher (`device.rs`) and how it
//! plugs into meta-training (`train.rs`):
//! - [`l2l`] — the coordinatewise LSTM of Andrychowicz et al. 2016 (seed 002); [`l2l::kernels`] generates its
//!   straight-line WGSL, [`l2l::optimizer`] runs a trained one as a driver optimizer or a stepper for your
//!   parameters;
//! - [`policy`] — the L-BFGS step-size policy (seed 003, L-BFGS-π);
//! - [`hlstm`] — the Hilbert LSTM (seed 000, docs/hlstm.md).
//!
//! Beside them, shared by all three: [`train`] (the meta-training loop's pieces: one meta-update per unroll,
//! non-finite handling, validation and best φ, checkpoints), [`group`] (the ranks of a distributed run and the
//! fixed-order gather that keeps φ independent of their number), [`state`] (what a run is: configuration and
//! progress), [`checkpoint`] (the file format), [`metaopt`] (Adam and ADADELTA on φ). [`load_optimizer`]
//! turns any checkpoint into a driver optimizer.
//!
//! **Depends on** l2o-engine, l2o-tasks and l2o-optim (the driver and baselines it evaluates against); nothing
//! depends on it but the umbrella crate and the CLI.

pub mod checkpoint;
pub mod group;
pub mod hlstm;
pub mod kinds;
pub mod l2l;
pub mod learned;
pub mod metaopt;
pub mod policy;
pub mod state;
pub mod train;

pub use l2l::{LstmConfig, MAX_HIDDEN};

/// Any learned optimizer from a checkpoint written by `l2o train` — the L2L LSTM, L-BFGS-π or the Hilbert LSTM,
/// whichever it holds — with its best φ, ready for [`l2o_optim::run`] or any driver.
pub fn load_optimizer(path: &std::path::Path) -> anyhow::Result<Box<dyn l2o_optim::Optimizer>> {
    let st = checkpoint::load(path)?;
    kinds::of_state(&st).optimizer(st.best_phi)
}
