//! Head-to-head statistics of two optimizers run on the same problems (seed 003 §6, Table 1 and Fig. 5):
//! who reaches ‖∇f‖ < ε first, counted in iterations or in function evaluations, and the index
//! I_a = ln(f̂\[a\] / f̂\[π\]) of the best values f̂ = min_k f(x_k).

use crate::driver::Trace;

/// The first recorded step at which problem b has ‖∇f‖ < ε: (iterations, function evaluations) taken by then;
/// None if it never does.
pub fn first_reach(t: &Trace, b: usize, eps: f64) -> Option<(u64, u64)> {
    (0..t.gnorm.len())
        .find(|&k| t.gnorm[k][b] < eps)
        .map(|k| (t.iterations[k][b], t.evaluations[k][b]))
}

/// Percentages of problems on which `ours` wins (reaches ε with a strictly smaller count, or reaches it while
/// `other` never does) and ties (equal counts, or neither reaches ε) against `other`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WinTie {
    pub win: f64,
    pub tie: f64,
}

/// Win and tie percentages of `ours` against `other` at ε, counting iterations (`by_evals` = false) or
/// function evaluations (a line search spends several per iteration).
pub fn win_tie(ours: &Trace, other: &Trace, eps: f64, by_evals: bool) -> WinTie {
    let n = ours.batch.min(other.batch);
    let pick = |r: Option<(u64, u64)>| r.map(|(i, e)| if by_evals { e } else { i });
    let (mut win, mut tie) = (0usize, 0usize);
    for b in 0..n {
        match (
            pick(first_reach(ours, b, eps)),
            pick(first_reach(other, b, eps)),
        ) {
            (None, None) => tie += 1,
            (Some(_), None) => win += 1,
            (Some(a), Some(o)) if a < o => win += 1,
            (Some(a), Some(o)) if a == o => tie += 1,
            _ => {}
        }
    }
    let pct = |c: usize| 100.0 * c as f64 / n.max(1) as f64;
    WinTie {
        win: pct(win),
        tie: pct(tie),
    }
}

/// f̂_b = min over the recorded steps of the finite f(x_k) of problem b (+∞ if none is finite).
pub fn best_value(t: &Trace, b: usize) -> f64 {
    t.f.iter()
        .map(|row| row[b])
        .filter(|v| v.is_finite())
        .fold(f64::INFINITY, f64::min)
}

/// I_a = ln(f̂\[other\] / f̂\[ours\]) per problem (> 0: ours reached a lower value).
pub fn log_ratio_index(ours: &Trace, other: &Trace) -> Vec<f64> {
    (0..ours.batch.min(other.batch))
        .map(|b| (best_value(other, b) / best_value(ours, b)).ln())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trace of `batch` problems from per-problem ‖g‖ sequences (one iteration and `evals_per_it`
    /// evaluations per step) and f = ‖g‖.
    fn trace(g: &[Vec<f64>], evals_per_it: u64) -> Trace {
        let steps = g[0].len();
        let batch = g.len();
        let col = |f: &dyn Fn(usize, usize) -> f64| -> Vec<Vec<f64>> {
            (0..steps)
                .map(|k| (0..batch).map(|b| f(k, b)).collect())
                .collect()
        };
        Trace {
            optimizer: "t".into(),
            batch,
            f: col(&|k, b| g[b][k]),
            gnorm: col(&|k, b| g[b][k]),
            status: vec![vec![0; batch]; steps],
            iterations: (0..steps).map(|k| vec![k as u64; batch]).collect(),
            evaluations: (0..steps)
                .map(|k| vec![k as u64 * evals_per_it; batch])
                .collect(),
            final_evaluations: vec![0; batch],
            final_theta: vec![],
        }
    }

    #[test]
    fn wins_ties_and_losses_are_counted_per_problem() {
        // problem 0: ours reaches 1e-3 at step 2, other at 3 → win; problem 1: both at 1 → tie;
        // problem 2: neither → tie; problem 3: only other → loss
        let ours = trace(
            &[
                vec![1.0, 0.1, 1e-4, 1e-5],
                vec![1.0, 1e-4, 1e-5, 1e-6],
                vec![1.0, 1.0, 1.0, 1.0],
                vec![1.0, 1.0, 1.0, 1.0],
            ],
            1,
        );
        let other = trace(
            &[
                vec![1.0, 0.1, 0.01, 1e-4],
                vec![1.0, 1e-4, 1e-5, 1e-6],
                vec![1.0, 1.0, 1.0, 1.0],
                vec![1.0, 1e-4, 1e-5, 1e-6],
            ],
            1,
        );
        let wt = win_tie(&ours, &other, 1e-3, false);
        assert_eq!(
            wt,
            WinTie {
                win: 25.0,
                tie: 50.0
            }
        );
        // counted in evaluations, the other spends 3 per iteration: problem 1 becomes a win too
        let other3 = trace(
            &[
                vec![1.0, 0.1, 0.01, 1e-4],
                vec![1.0, 1e-4, 1e-5, 1e-6],
                vec![1.0, 1.0, 1.0, 1.0],
                vec![1.0, 1e-4, 1e-5, 1e-6],
            ],
            3,
        );
        assert_eq!(
            win_tie(&ours, &other3, 1e-3, true),
            WinTie {
                win: 50.0,
                tie: 25.0
            }
        );
        assert_eq!(first_reach(&ours, 0, 1e-3), Some((2, 2)));
        assert_eq!(first_reach(&ours, 2, 1e-3), None);
        let idx = log_ratio_index(&ours, &other);
        assert!((idx[0] - (1e-4f64 / 1e-5).ln()).abs() < 1e-12);
        assert!(idx[1].abs() < 1e-12);
        assert!(idx[3] < 0.0);
    }
}
