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

/// Who reaches ‖∇f‖ < ε first on one problem, from `ours`'s side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Race {
    /// Ours reaches ε with a strictly smaller count, or reaches it while the other never does.
    Win,
    /// Equal counts, or neither reaches ε.
    Tie,
    Loss,
}

/// The per-problem [`Race`] of `ours` against `other` at ε, counting iterations (`by_evals` = false) or
/// function evaluations (a line search spends several per iteration).
pub fn races(ours: &Trace, other: &Trace, eps: f64, by_evals: bool) -> Vec<Race> {
    let pick = |r: Option<(u64, u64)>| r.map(|(i, e)| if by_evals { e } else { i });
    (0..ours.batch.min(other.batch))
        .map(|b| {
            match (
                pick(first_reach(ours, b, eps)),
                pick(first_reach(other, b, eps)),
            ) {
                (None, None) => Race::Tie,
                (Some(_), None) => Race::Win,
                (Some(a), Some(o)) if a < o => Race::Win,
                (Some(a), Some(o)) if a == o => Race::Tie,
                _ => Race::Loss,
            }
        })
        .collect()
}

/// Win and tie percentages of `ours` against `other` at ε (see [`races`]).
pub fn win_tie(ours: &Trace, other: &Trace, eps: f64, by_evals: bool) -> WinTie {
    WinTie::of(&races(ours, other, eps, by_evals))
}

impl WinTie {
    /// The percentages of wins and ties among `races`.
    pub fn of(races: &[Race]) -> Self {
        let pct = |r: Race| 100.0 * races.iter().filter(|&&x| x == r).count() as f64 / races.len().max(1) as f64;
        WinTie {
            win: pct(Race::Win),
            tie: pct(Race::Tie),
        }
    }
}

/// Percentile-bootstrap confidence intervals of the win and tie percentages over problems: `reps` resamples
/// of the problems with replacement (seeded: the same races give the same intervals), the (1 − level)/2 and
/// (1 + level)/2 quantiles of each percentage. Returns (low, high) with low.win ≤ win ≤ high.win and likewise
/// for ties — the interval a reader needs before calling a difference to a published percentage real.
pub fn win_tie_interval(races: &[Race], level: f64, reps: usize, seed: u64) -> (WinTie, WinTie) {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let n = races.len();
    if n == 0 || reps == 0 {
        let w = WinTie::of(races);
        return (w, w);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut wins, mut ties) = (Vec::with_capacity(reps), Vec::with_capacity(reps));
    for _ in 0..reps {
        let (mut w, mut t) = (0usize, 0usize);
        for _ in 0..n {
            match races[rng.random_range(0..n)] {
                Race::Win => w += 1,
                Race::Tie => t += 1,
                Race::Loss => {}
            }
        }
        wins.push(100.0 * w as f64 / n as f64);
        ties.push(100.0 * t as f64 / n as f64);
    }
    let q = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        let i = ((p * (reps - 1) as f64).round() as usize).min(reps - 1);
        v[i]
    };
    let (lo, hi) = ((1.0 - level) / 2.0, (1.0 + level) / 2.0);
    (
        WinTie {
            win: q(&mut wins, lo),
            tie: q(&mut ties, lo),
        },
        WinTie {
            win: q(&mut wins, hi),
            tie: q(&mut ties, hi),
        },
    )
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
        assert_eq!(
            races(&ours, &other, 1e-3, false),
            [Race::Win, Race::Tie, Race::Tie, Race::Loss]
        );
        assert_eq!(first_reach(&ours, 0, 1e-3), Some((2, 2)));
        assert_eq!(first_reach(&ours, 2, 1e-3), None);
        let idx = log_ratio_index(&ours, &other);
        assert!((idx[0] - (1e-4f64 / 1e-5).ln()).abs() < 1e-12);
        assert!(idx[1].abs() < 1e-12);
        assert!(idx[3] < 0.0);
    }

    /// The bootstrap interval contains the observed percentage, is the same for the same seed, narrows as the
    /// number of problems grows (≈ ±1.96·√(p(1−p)/n): ±9.8 points at n = 100, ±3.1 at n = 1000 for p = 0.5),
    /// and is a single point when every problem has the same outcome.
    #[test]
    fn bootstrap_intervals_cover_the_observed_share_and_shrink_with_n() {
        let half = |n: usize| -> Vec<Race> {
            (0..n)
                .map(|i| if i % 2 == 0 { Race::Win } else { Race::Loss })
                .collect()
        };
        let width = |n: usize| {
            let (lo, hi) = win_tie_interval(&half(n), 0.95, 2000, 7);
            assert!(lo.win <= 50.0 && 50.0 <= hi.win, "n = {n}: [{}, {}]", lo.win, hi.win);
            assert_eq!((lo.tie, hi.tie), (0.0, 0.0));
            hi.win - lo.win
        };
        let (w100, w1000) = (width(100), width(1000));
        assert!((15.0..25.0).contains(&w100), "n = 100: width {w100}");
        assert!((4.5..8.0).contains(&w1000), "n = 1000: width {w1000}");
        assert_eq!(
            win_tie_interval(&half(100), 0.95, 500, 3),
            win_tie_interval(&half(100), 0.95, 500, 3)
        );
        let all = vec![Race::Tie; 40];
        let (lo, hi) = win_tie_interval(&all, 0.95, 500, 1);
        assert_eq!((lo.win, hi.win, lo.tie, hi.tie), (0.0, 0.0, 100.0, 100.0));
    }
}
