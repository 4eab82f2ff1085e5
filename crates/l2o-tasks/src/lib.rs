//! # l2o-tasks: optimizees
//!
//! A [`Task`] is a batch of B independent problems of dimension n: `loss_and_grad` records device dispatches
//! that write f_b(θ_b) into a per-problem scalar column and ∇f_b(θ_b) into a gradient buffer, for all B at once,
//! and `oracle_loss_grad` is the f64 CPU reference of the same function.

use anyhow::Result;
use l2o_engine::{Context, Dispatch, ScalarOut, View};

pub trait Task {
    /// Short name, e.g. "quadratic".
    fn name(&self) -> String;
    /// Dimension n of every problem.
    fn dim(&self) -> usize;
    /// Number of problems B.
    fn batch(&self) -> usize;
    /// Record dispatches computing f_b(θ_b) → out.buf[b·out.stride + out.col] and ∇f_b(θ_b) → grad, for all b.
    /// `theta` and `grad` are views of B × n. The dispatches can be replayed every step.
    fn loss_and_grad(&self, ctx: &Context, theta: View, grad: View, out: ScalarOut) -> Result<Vec<Dispatch>>;
    /// The starting point θ_0 of every problem, B × n row-major (drawn with the task's seed).
    fn initial_point(&self) -> Vec<f64>;
    /// f64 CPU reference: (f_b(θ), ∇f_b(θ)) for problem b.
    fn oracle_loss_grad(&self, b: usize, theta: &[f64]) -> (f64, Vec<f64>);
}
