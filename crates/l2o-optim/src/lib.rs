//! # l2o-optim: optimizers
//!
//! Every optimizer steps B problems on the device with a per-problem status (running / converged /
//! diverged / line search failed; a problem that stops running is frozen and reported). Pieces, as in argmin:
//! the [`driver`] (state, run loop, trace), hand-designed [`first_order`] methods, [`lbfgs`] with its separate
//! line searches, and the learning-rate [`tune`]r that later issues reuse to tune baselines fairly.
//!
//! **Depends on** l2o-engine and l2o-tasks; never on l2o-meta (learned optimizers plug into its driver
//! from above, through the [`Optimizer`] trait).

pub mod compare;
pub mod driver;
pub mod first_order;
pub mod lbfgs;
pub mod lbfgs_fused;
pub mod step_policy;
pub mod stepper;
pub mod tune;
pub mod vector_free;

pub use driver::{Optimizer, RunOptions, State, Summary, Trace, run, status_counts, summarize};
pub use first_order::{FirstOrder, Hyper, Kind};
pub use lbfgs::{Direction, Lbfgs, LbfgsConfig, LineSearch};
pub use stepper::Stepper;

/// Names accepted by [`make_optimizer`].
pub const OPTIMIZERS: &[&str] = &[
    "sgd", "momentum", "nesterov", "rmsprop", "adam", "adagrad", "lbfgs",
];

/// Parse a first-order method name.
pub fn parse_kind(name: &str) -> Option<Kind> {
    Some(match name {
        "sgd" => Kind::Sgd,
        "momentum" | "heavy-ball" | "heavy_ball" => Kind::HeavyBall,
        "nesterov" => Kind::Nesterov,
        "rmsprop" => Kind::RmsProp,
        "adam" => Kind::Adam,
        "adagrad" => Kind::AdaGrad,
        _ => return None,
    })
}

/// Build an optimizer by name; `lr` overrides a first-order method's default learning rate.
pub fn make_optimizer(
    name: &str,
    lr: Option<f64>,
    lbfgs: LbfgsConfig,
) -> anyhow::Result<Box<dyn Optimizer>> {
    if name == "lbfgs" || name == "l-bfgs" {
        return Ok(Box::new(Lbfgs::new(lbfgs)));
    }
    let kind = parse_kind(name).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown optimizer {name:?}: use one of {}",
            OPTIMIZERS.join(", ")
        )
    })?;
    let lr = lr.unwrap_or(kind.default_lr());
    if !(lr > 0.0 && lr.is_finite()) {
        anyhow::bail!("learning rate must be a positive number, got {lr}");
    }
    Ok(Box::new(FirstOrder::new(kind, lr)))
}
