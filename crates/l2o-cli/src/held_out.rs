//! The held-out problems of `l2o eval`, in shards: each rank of a distributed run builds and runs only the
//! shards [`l2o_meta::group::owned`] gives it, and every run's traces are gathered in shard order into the
//! trace of all the problems — so the table, CSVs and plots equal those of one process with the same shards.
//! The baselines' tuning runs are spread too ([`tune_spread`]): rank r runs every P-th rate of the grid.

use anyhow::{Context as _, Result, bail, ensure};
use l2o_engine::Context;
use l2o_meta::group;
use l2o_optim::tune::TuneResult;
use l2o_optim::{Optimizer, RunOptions, Trace, run};
use l2o_tasks::Task;

use crate::cluster;

/// This rank's shards of the held-out problems. A rank owning several shards builds each when it runs and
/// drops it after, so only one shard's buffers are on the device at a time: `--shards` is also how a large test set (the paper's
/// 1,000 MNIST networks) is run in pieces that fit the device's buffer limits.
pub struct HeldOut<'c> {
    ctx: &'c Context,
    shards: usize,
    total: usize,
    sizes: Vec<usize>,
    mine: std::ops::Range<usize>,
    dim: usize,
    build: Box<dyn Fn(usize, usize) -> Result<Box<dyn Task>> + 'c>,
    /// The built shard, kept when this rank owns just one (built once, not per run).
    kept: Option<Box<dyn Task>>,
}

impl<'c> HeldOut<'c> {
    /// `total` problems in `shards` shards of [`l2o_meta::state::split`] sizes; `build(s, b)` draws shard s of
    /// b problems (called for this rank's shards only, once per shard and run: it must be deterministic).
    pub fn new(
        ctx: &'c Context,
        shards: usize,
        total: usize,
        build: impl Fn(usize, usize) -> Result<Box<dyn Task>> + 'c,
    ) -> Result<Self> {
        let g = cluster::group();
        ensure!(shards > 0, "--shards must be positive");
        if total < shards {
            bail!(
                "{total} held-out problems cannot fill {shards} shards: raise --batch or lower --shards"
            );
        }
        group::check_shards(g.as_ref(), shards, "held-out problems")?;
        let sizes = l2o_meta::state::split(total, shards);
        let mine = group::owned(shards, g.rank(), g.size());
        let mut h = Self {
            ctx,
            shards,
            total,
            sizes,
            mine,
            dim: 0,
            build: Box::new(build),
            kept: None,
        };
        // the first shard is built up front: its dimension, and a shard too large for the device fails here
        let first = h.shard(h.mine.start)?;
        h.dim = first.dim();
        if h.mine.len() == 1 {
            h.kept = Some(first);
        }
        Ok(h)
    }

    fn shard(&self, s: usize) -> Result<Box<dyn Task>> {
        let b = self.sizes[s];
        (self.build)(s, b).with_context(|| {
            format!(
                "building held-out shard {s} of {} ({b} problems): if a device limit is exceeded, give more \
                 --shards so that each holds fewer problems (shards run one at a time)",
                self.shards
            )
        })
    }

    /// How many problems, as the tables say it: `128`, or `128 (in 4 shards)`.
    pub fn count(&self) -> String {
        if self.shards == 1 {
            self.total.to_string()
        } else {
            format!("{} (in {} shards)", self.total, self.shards)
        }
    }

    /// The problems' dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The length of a progress bar over [`HeldOut::run`] of `steps` steps: steps × this rank's shards.
    pub fn progress_len(&self, steps: usize) -> u64 {
        (steps * self.mine.len()) as u64
    }

    /// [`run`] `opt` on every shard of this rank, one after the other, then gather every shard's trace: the
    /// trace of all the problems, in shard order, on every rank. `progress(k)` counts steps over this rank's
    /// shards (up to [`HeldOut::progress_len`]).
    pub fn run(
        &self,
        opt: &mut dyn Optimizer,
        o: &RunOptions,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Trace> {
        let mut local = vec![];
        for (i, s) in self.mine.clone().enumerate() {
            let built;
            let task: &dyn Task = match &self.kept {
                Some(t) => t.as_ref(),
                None => {
                    built = self.shard(s)?;
                    built.as_ref()
                }
            };
            let base = i * o.steps;
            local.push(run(self.ctx, task, opt, o, &mut |k| progress(base + k))?);
        }
        let name = local[0].optimizer.clone();
        let packed: Vec<Vec<f64>> = local.iter().map(pack).collect();
        let all = group::gather_shards(cluster::group().as_ref(), self.shards, &packed)?;
        let parts = all
            .iter()
            .map(|p| unpack(&name, p))
            .collect::<Result<Vec<_>>>()?;
        Ok(concat(parts))
    }
}

/// A trace as numbers: [B, rows, n], then per row f, ‖∇f‖, status, iterations, evaluations (B each), then the
/// final evaluations (B) and θ (B·n). Counts and statuses are small integers, exact in f64.
fn pack(t: &Trace) -> Vec<f64> {
    let b = t.batch;
    let rows = t.f.len();
    let n = t.final_theta.len() / b.max(1);
    let mut v = vec![b as f64, rows as f64, n as f64];
    for k in 0..rows {
        v.extend_from_slice(&t.f[k]);
        v.extend_from_slice(&t.gnorm[k]);
        v.extend(t.status[k].iter().map(|&s| s as f64));
        v.extend(t.iterations[k].iter().map(|&c| c as f64));
        v.extend(t.evaluations[k].iter().map(|&c| c as f64));
    }
    v.extend(t.final_evaluations.iter().map(|&c| c as f64));
    v.extend_from_slice(&t.final_theta);
    v
}

fn unpack(name: &str, v: &[f64]) -> Result<Trace> {
    ensure!(v.len() >= 3, "a gathered trace is truncated");
    let (b, rows, n) = (v[0] as usize, v[1] as usize, v[2] as usize);
    ensure!(
        v.len() == 3 + rows * 5 * b + b + b * n,
        "a gathered trace has the wrong length"
    );
    let mut at = 3;
    let mut take = |len: usize| {
        let s = &v[at..at + len];
        at += len;
        s.to_vec()
    };
    let mut t = Trace::empty(name.to_string(), b);
    for _ in 0..rows {
        t.f.push(take(b));
        t.gnorm.push(take(b));
        t.status
            .push(take(b).into_iter().map(|s| s as u32).collect());
        t.iterations
            .push(take(b).into_iter().map(|c| c as u64).collect());
        t.evaluations
            .push(take(b).into_iter().map(|c| c as u64).collect());
    }
    t.final_evaluations = take(b).into_iter().map(|c| c as u64).collect();
    t.final_theta = take(b * n);
    Ok(t)
}

/// The traces of consecutive shards as one: problems appended in order (every trace has steps + 1 rows).
fn concat(parts: Vec<Trace>) -> Trace {
    let mut it = parts.into_iter();
    let mut t = it.next().expect("at least one shard");
    for p in it {
        t.batch += p.batch;
        for (a, b) in t.f.iter_mut().zip(p.f) {
            a.extend(b);
        }
        for (a, b) in t.gnorm.iter_mut().zip(p.gnorm) {
            a.extend(b);
        }
        for (a, b) in t.status.iter_mut().zip(p.status) {
            a.extend(b);
        }
        for (a, b) in t.iterations.iter_mut().zip(p.iterations) {
            a.extend(b);
        }
        for (a, b) in t.evaluations.iter_mut().zip(p.evaluations) {
            a.extend(b);
        }
        t.final_evaluations.extend(p.final_evaluations);
        t.final_theta.extend(p.final_theta);
    }
    t
}

/// [`l2o_optim::tune::tune`] with the grid spread over the ranks: rank r scores the rates r, r + P, …; the
/// scores are gathered in grid order and the best rate picked exactly as one process picks it.
pub fn tune_spread(
    ctx: &Context,
    task: &dyn Task,
    kind: l2o_optim::Kind,
    grid: &[f64],
    steps: usize,
) -> Result<TuneResult> {
    anyhow::ensure!(!grid.is_empty(), "tune: empty grid");
    let g = cluster::group();
    let (rank, size) = (g.rank(), g.size());
    let mine: Vec<f64> = grid
        .iter()
        .enumerate()
        .filter(|(i, _)| i % size == rank)
        .map(|(_, &lr)| l2o_optim::tune::score(ctx, &[task], kind, lr, steps))
        .collect::<Result<_>>()?;
    let all = g.all_gather(&mine)?;
    let table = (0..grid.len())
        .map(|i| (grid[i], all[i % size][i / size]))
        .collect();
    l2o_optim::tune::pick(kind, table)
}
