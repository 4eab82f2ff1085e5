//! The baselines of `l2o eval`: first-order methods with their learning rate fixed (`--lr`) or tuned on training
//! problems, and L-BFGS with each line search — shared by the evaluations of every learned optimizer.

use anyhow::Result;
use l2o_optim::{FirstOrder, parse_kind};

/// `--lr adam=0.03,rmsprop=0.01` as (name, rate) pairs.
pub(crate) fn fixed_rates(spec: Option<&str>) -> Result<Vec<(String, f64)>> {
    let Some(spec) = spec else { return Ok(vec![]) };
    spec.split(',')
        .map(|kv| {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("--lr {kv:?}: expected NAME=RATE, e.g. adam=0.03")
            })?;
            let lr: f64 = v
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("--lr {kv:?}: {v:?} is not a number"))?;
            anyhow::ensure!(
                lr > 0.0 && lr.is_finite(),
                "--lr {kv:?}: the rate must be positive"
            );
            Ok((k.trim().to_string(), lr))
        })
        .collect()
}

/// The learning rate of baseline `name`: fixed by --lr, else tuned on `train_task` over `grid` (the grid's
/// runs spread over the ranks of a distributed run).
pub(crate) fn rate_for(
    ctx: &l2o_engine::Context,
    name: &str,
    kind: l2o_optim::Kind,
    fixed: &[(String, f64)],
    train_task: &dyn l2o_tasks::Task,
    grid: &[f64],
    steps: usize,
) -> Result<f64> {
    let root = crate::cluster::is_root();
    if let Some((_, lr)) = fixed.iter().find(|(k, _)| k == name) {
        if root {
            eprintln!("{name}: lr {lr} (fixed by --lr)");
        }
        return Ok(*lr);
    }
    // the grid spread over the ranks of a distributed run (the same table, and rate, as one process)
    let r = crate::held_out::tune_spread(ctx, train_task, kind, grid, steps)?;
    if root {
        eprintln!("tuned {name}: lr {} (grid {grid:?})", r.best_lr);
    }
    Ok(r.best_lr)
}

/// The competitors of an evaluation, by name: `lbfgs-armijo` (alias `lbfgs-btls`), `lbfgs-constant`
/// (`lbfgs-b`), `lbfgs-wolfe` with memory m, or a first-order method whose rate `--lr` fixes or the tuner picks
/// on training problems (`tune_on`, built once, on first need — never the test problems).
pub(crate) struct Competitors<'a> {
    pub ctx: &'a l2o_engine::Context,
    pub m: usize,
    pub lrs: Vec<(String, f64)>,
    pub grid: Vec<f64>,
    pub steps: usize,
    pub tune_on: Box<dyn Fn() -> Result<Box<dyn l2o_tasks::Task>> + 'a>,
    tuned_on: Option<Box<dyn l2o_tasks::Task>>,
}

impl<'a> Competitors<'a> {
    pub fn new(
        ctx: &'a l2o_engine::Context,
        m: usize,
        lrs: Vec<(String, f64)>,
        grid: Vec<f64>,
        steps: usize,
        tune_on: Box<dyn Fn() -> Result<Box<dyn l2o_tasks::Task>> + 'a>,
    ) -> Self {
        Self {
            ctx,
            m,
            lrs,
            grid,
            steps,
            tune_on,
            tuned_on: None,
        }
    }

    pub fn make(&mut self, name: &str) -> Result<Box<dyn l2o_optim::Optimizer>> {
        let ls = match name {
            "lbfgs-armijo" | "lbfgs-btls" => Some(l2o_optim::LineSearch::armijo()),
            "lbfgs-constant" | "lbfgs-b" => Some(l2o_optim::LineSearch::Constant),
            "lbfgs-wolfe" => Some(l2o_optim::LineSearch::wolfe()),
            _ => None,
        };
        if let Some(ls) = ls {
            return Ok(Box::new(l2o_optim::Lbfgs::new(l2o_optim::LbfgsConfig {
                m: self.m,
                line_search: ls,
                ..l2o_optim::LbfgsConfig::default()
            })));
        }
        let kind = kind_of(name)?;
        if self.tuned_on.is_none() && !self.lrs.iter().any(|(k, _)| k == name) {
            self.tuned_on = Some((self.tune_on)()?);
        }
        let lr = match &self.tuned_on {
            Some(t) => rate_for(
                self.ctx,
                name,
                kind,
                &self.lrs,
                t.as_ref(),
                &self.grid,
                self.steps,
            )?,
            // every rate fixed by --lr: no tuning task needed
            None => self
                .lrs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, lr)| *lr)
                .expect("a rate fixed by --lr"),
        };
        Ok(Box::new(FirstOrder::new(kind, lr)))
    }
}

pub(crate) fn kind_of(name: &str) -> Result<l2o_optim::Kind> {
    let n = if name == "nag" { "nesterov" } else { name };
    parse_kind(n).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown baseline {name:?}: use sgd, momentum, nesterov (nag), rmsprop, adam, adagrad"
        )
    })
}
