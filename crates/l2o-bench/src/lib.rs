//! # l2o-bench: the measurements behind `l2o bench` and `l2o autotune`
//!
//! Each benchmark runs the device path and its f64 CPU reference side by side, in the same process, on the same
//! inputs, and reports both (ratios from one run): [`bench`](mod@bench) the streaming kernels (dot, Gram, lincomb, the
//! L-BFGS two-loop), [`meta_bench`] L2L meta-training throughput and GFLOP/s, [`mlp_bench`] the MNIST MLP's
//! forward and backward, [`hlstm_bench`] the Hilbert LSTM, [`policy_bench`] L-BFGS-π, [`dist_bench`] the overhead of distributed meta-training
//! (under mpirun). [`autotune`] times every
//! kernel variant on an adapter and caches the fastest. Not a dependency of the library crates: users of l2o do
//! not build it.
//!
//! **Depends on** l2o-engine, l2o-tasks, l2o-optim and l2o-meta; only the CLI and the benches depend on it.

pub mod autotune;
pub mod bench;
pub mod dist_bench;
pub mod hlstm_bench;
pub mod host_bench;
pub mod lbfgs_bench;
pub mod meta_bench;
pub mod mlp_bench;
pub mod policy_bench;
