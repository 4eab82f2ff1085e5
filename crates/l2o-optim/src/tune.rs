//! Learning-rate tuner: grid search on a log grid ({1, 3} × 10^j by default) over a training distribution of
//! tasks, choosing the rate with the best mean final loss (a rate whose runs diverge scores +∞). Later issues
//! reuse it to tune the baselines of learned optimizers fairly.

use anyhow::{Result, bail};
use l2o_engine::Context;
use l2o_tasks::Task;

use crate::driver::{RunOptions, run};
use crate::first_order::{FirstOrder, Kind};

/// {1, 3} × 10^j for j in lo..=hi, ascending.
pub fn log_grid(lo: i32, hi: i32) -> Vec<f64> {
    // Parsed from text so the values are the decimal numbers a user would type (1e-5, not 1.0000000000000001e-5).
    (lo..=hi)
        .flat_map(|j| [1, 3].map(|a| format!("{a}e{j}").parse().expect("valid float")))
        .collect()
}

#[derive(Clone, Debug)]
pub struct TuneResult {
    pub kind: Kind,
    pub best_lr: f64,
    /// (learning rate, mean final loss over all problems; +∞ when any diverged)
    pub table: Vec<(f64, f64)>,
}

/// Try every rate of `grid` on the same training task(s) for `steps` steps and keep the best mean final loss.
pub fn tune(
    ctx: &Context,
    tasks: &[&dyn Task],
    kind: Kind,
    grid: &[f64],
    steps: usize,
) -> Result<TuneResult> {
    if grid.is_empty() || tasks.is_empty() {
        bail!("tune: empty grid or no training task");
    }
    let table = grid
        .iter()
        .map(|&lr| Ok((lr, score(ctx, tasks, kind, lr, steps)?)))
        .collect::<Result<Vec<_>>>()?;
    pick(kind, table)
}

/// The score of one rate: the mean final loss over every problem of `tasks` after `steps` steps of `kind`
/// with rate `lr` (+∞ when any diverged).
pub fn score(ctx: &Context, tasks: &[&dyn Task], kind: Kind, lr: f64, steps: usize) -> Result<f64> {
    let mut total = 0.0;
    let mut count = 0usize;
    for task in tasks {
        let mut opt = FirstOrder::new(kind, lr);
        let t = run(ctx, *task, &mut opt, &RunOptions::fixed(steps), &mut |_| {})?;
        let last = &t.f[t.steps()];
        if last.iter().any(|v| !v.is_finite()) {
            total = f64::INFINITY;
        } else {
            total += last.iter().sum::<f64>();
        }
        count += last.len();
    }
    Ok(total / count as f64)
}

/// The best rate of a table of (rate, [`score`]): the lowest finite score, the first of equal ones.
pub fn pick(kind: Kind, table: Vec<(f64, f64)>) -> Result<TuneResult> {
    let best = table
        .iter()
        .filter(|(_, l)| l.is_finite())
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let Some(&(best_lr, _)) = best else {
        bail!(
            "tune: every learning rate in the grid diverged for {:?}; try a lower grid",
            kind
        );
    };
    Ok(TuneResult {
        kind,
        best_lr,
        table,
    })
}
