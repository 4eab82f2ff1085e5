//! Distributed meta-training overhead (`mpirun -np P l2o bench --meta`): for each learned optimizer, P ranks
//! meta-train P shards (one per rank: weak scaling, the work per rank fixed) through the real loop
//! ([`l2o_meta::train::train_group`]) with the collectives timed ([`Timed`]), and a bare all-gather of one
//! shard's (meta-loss, ∂L/∂φ) record timed on its own. Reports the epoch time, the time per unroll spent in
//! the collective (waiting for the slowest rank included) and the bare all-gather latency, on rank 0.

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::Result;
use l2o_engine::Context;
use l2o_meta::group::{self, Group, Timed};
use l2o_meta::kinds::{self, LearnedOptions};
use l2o_meta::learned;
use l2o_meta::state::TrainConfig;

#[derive(Clone, Debug)]
pub struct DistRow {
    pub optimizer: String,
    /// |φ|: the numbers of ∂L/∂φ every unroll gathers (per shard).
    pub phi_len: usize,
    pub ranks: usize,
    pub shards: usize,
    pub n: usize,
    /// Problems per shard.
    pub batch: usize,
    pub unrolls_per_epoch: usize,
    /// Median wall time of an epoch (the first, warm-up, and the last, with validation, not counted).
    pub epoch_s: f64,
    /// Time in the collective per unroll over the timed epochs (the gather of the shards' records; waiting for
    /// the slowest rank included).
    pub collective_s_per_unroll: f64,
    /// A bare all-gather of one shard record per rank (|φ| + 2 numbers each): the median of 200.
    pub gather_s: f64,
}

/// The three learned optimizers on small problems (a quick run; L-BFGS-π with K = 20 inner steps per outer
/// step instead of the seed's 50): (name, task, n, batch per shard, horizon, unroll).
const CASES: &[(&str, &str, usize, usize, usize, usize)] = &[
    ("lstm", "quadratic", 10, 32, 100, 20),
    ("lbfgs-policy", "quadratic", 10, 8, 40, 20),
    ("hlstm", "quadratic-cond-rotated", 10, 16, 20, 1),
];

/// Epochs per case: one warm-up, `timed`, one last (it validates).
pub fn run_dist_bench(
    ctx: &Context,
    g: &dyn Group,
    timed_epochs: usize,
    progress: &mut dyn FnMut(&DistRow),
) -> Result<Vec<DistRow>> {
    let mut rows = vec![];
    let epochs = timed_epochs.max(1) + 2;
    for &(name, task, n, batch, horizon, unroll) in CASES {
        let lo = kinds::by_name(name, &LearnedOptions::default())?;
        let d = lo.about().defaults;
        let tc = TrainConfig {
            task: task.into(),
            dim: n,
            batch,
            horizon,
            unroll,
            epochs,
            meta_optimizer: d.meta_optimizer.into(),
            meta_lr: d.meta_lr,
            meta_lr_final: None,
            seed: 1,
            val_batch: g.size(),
            validate_every: epochs,
            max_nonfinite: usize::MAX,
            task_options: Default::default(),
            shards: g.size(),
        };
        let mut state = learned::new_state(lo.as_ref(), tc.clone())?;
        let timed = Timed::new(g);
        let mut marks: Vec<(Instant, f64)> = vec![];
        l2o_meta::train::train_group(
            ctx,
            &mut state,
            &tc,
            &timed,
            None,
            &mut |_, _, _| {},
            &mut |rec, _| {
                if rec.epoch > 0 {
                    marks.push((Instant::now(), timed.totals().1));
                }
            },
        )?;
        // epochs 2..=epochs-1: between the marks of epoch 1 and of epoch `epochs - 1`
        let unrolls = horizon / unroll;
        let mut times: Vec<f64> = marks
            .windows(2)
            .take(timed_epochs.max(1))
            .map(|w| (w[1].0 - w[0].0).as_secs_f64())
            .collect();
        times.sort_by(f64::total_cmp);
        let coll = marks[timed_epochs.max(1)].1 - marks[0].1;
        // the bare collective: one record of |φ| + 1 numbers per rank (+ its length), 50 warm-up + 200 timed
        let rec = vec![0.0; state.phi.len() + 1];
        for _ in 0..50 {
            group::gather_shards(g, g.size(), std::slice::from_ref(&rec))?;
        }
        let mut each: Vec<f64> = (0..200)
            .map(|_| {
                let t = Instant::now();
                group::gather_shards(g, g.size(), std::slice::from_ref(&rec))
                    .map(|_| t.elapsed().as_secs_f64())
            })
            .collect::<Result<_>>()?;
        each.sort_by(f64::total_cmp);
        let row = DistRow {
            optimizer: lo.about().short_name.into(),
            phi_len: state.phi.len(),
            ranks: g.size(),
            shards: g.size(),
            n,
            batch,
            unrolls_per_epoch: unrolls,
            epoch_s: times[times.len() / 2],
            collective_s_per_unroll: coll / (timed_epochs.max(1) * unrolls) as f64,
            gather_s: each[each.len() / 2],
        };
        progress(&row);
        rows.push(row);
    }
    Ok(rows)
}

/// The rows as a Markdown table.
pub fn dist_markdown(rows: &[DistRow], adapter: &str) -> String {
    let mut s = format!(
        "Adapter: `{adapter}` on every rank. Weak scaling: P ranks, one shard of B problems each; epoch = median \
         wall time of the timed epochs; collective = time per unroll in the gather of the shards' (meta-loss, \
         ∂L/∂φ) records (waiting for the slowest rank included) and the per-epoch φ digest check; bare all-gather \
         = one record of |φ| + 1 numbers per rank, nothing else running (median of 200).\n\n\
         | learned optimizer | \\|φ\\| | ranks | n | B per shard | unrolls/epoch | epoch (s) | collective per unroll (ms) | share of epoch | bare all-gather (µs) |\n\
         |:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.3} | {:.3} | {:.1} % | {:.1} |",
            r.optimizer,
            r.phi_len,
            r.ranks,
            r.n,
            r.batch,
            r.unrolls_per_epoch,
            r.epoch_s,
            1e3 * r.collective_s_per_unroll,
            100.0 * r.collective_s_per_unroll * r.unrolls_per_epoch as f64 / r.epoch_s,
            1e6 * r.gather_s
        );
    }
    s
}
