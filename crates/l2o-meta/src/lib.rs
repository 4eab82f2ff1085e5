//! # l2o-meta: learned optimizers
//!
//! The coordinatewise LSTM optimizer (L2L, seed 002) — [`lstm`] holds its equations, the f64 CPU reference of
//! forward and adjoint and the frozen-gradient surrogate; [`gpu`] runs the same forward sweep, stored
//! trajectory and reverse sweep on the device.

pub mod checkpoint;
pub mod gpu;
pub mod hlstm;
pub mod hlstm_gpu;
pub mod hlstm_train;
pub mod lstm;
pub mod metaopt;
pub mod optimizer;
pub mod policy;
pub mod policy_gpu;
pub mod policy_train;
pub mod state;
pub mod train;

pub use lstm::{LstmConfig, MAX_HIDDEN};
