//! Batched L-BFGS throughput (`l2o bench --lbfgs`): B problems of the built-in extended Rosenbrock task run for
//! a fixed number of iterations (strong Wolfe, m = 5) with each direction ([`Direction::TwoLoop`],
//! [`Direction::Gram`]), against the f64 CPU reference of the same algorithm (`lbfgs::reference::run`, one
//! problem after the other, one thread), measured side by side in one run. Reported: problem-iterations per
//! second, kernel dispatches per iteration (counted by the context, the task's own included), and the device's
//! function evaluations. scipy's L-BFGS-B on the same problems is `scripts/scipy-lbfgs-bench.py`.

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::Result;
use l2o_engine::Context;
use l2o_optim::lbfgs::reference;
use l2o_optim::{Direction, Lbfgs, LbfgsConfig, LineSearch, RunOptions, run};
use l2o_tasks::make_task;

#[derive(Clone, Debug)]
pub struct LbfgsBenchRow {
    pub n: usize,
    pub batch: usize,
    pub steps: usize,
    pub direction: &'static str,
    pub gpu_s: f64,
    pub cpu_s: f64,
    /// Kernel dispatches per iteration (all B problems), the task's evaluations included.
    pub dispatches: f64,
    /// Function evaluations of all B problems on the device.
    pub evaluations: u64,
}

/// Time `steps` iterations of strong-Wolfe L-BFGS (m = 5) on `task` (seed 1) for every (n, B) and direction, after
/// one warm-up run (pipelines built).
pub fn run_lbfgs_bench(
    ctx: &Context,
    task_name: &str,
    sizes: &[usize],
    batches: &[usize],
    steps: usize,
) -> Result<Vec<LbfgsBenchRow>> {
    let mut rows = vec![];
    for &n in sizes {
        for &batch in batches {
            let task = make_task(ctx, task_name, n, batch, 1)?;
            let mut cpu_s = None;
            // (direction, lockstep): the fused rounds in lockstep and free-running (each problem at its own pace)
            let mut directions = vec![(Direction::TwoLoop, false), (Direction::Gram, false)];
            // the fused kernels walk n in one thread: not where the adapter's loop budget forbids it
            if l2o_optim::lbfgs_fused::fits_loop_budget(ctx, n, 5) {
                directions.extend([(Direction::Fused, true), (Direction::Fused, false)]);
            }
            for (direction, lockstep) in directions {
                let cfg = LbfgsConfig {
                    m: 5,
                    line_search: LineSearch::wolfe(),
                    direction,
                    ..LbfgsConfig::default()
                };
                let o = RunOptions {
                    lockstep,
                    ..RunOptions::fixed(steps)
                };
                run(
                    ctx,
                    task.as_ref(),
                    &mut Lbfgs::new(cfg),
                    &RunOptions::fixed(2),
                    &mut |_| {},
                )?;
                let d0 = ctx.dispatches();
                let t0 = Instant::now();
                let tr = run(ctx, task.as_ref(), &mut Lbfgs::new(cfg), &o, &mut |_| {})?;
                let gpu_s = t0.elapsed().as_secs_f64();
                let dispatches = (ctx.dispatches() - d0) as f64 / steps as f64;
                let cpu = match cpu_s {
                    Some(c) => c,
                    None => {
                        let x0 = task.initial_point();
                        let t1 = Instant::now();
                        for b in 0..batch {
                            std::hint::black_box(reference::run(
                                task.as_ref(),
                                b,
                                &x0[b * n..(b + 1) * n],
                                &cfg,
                                steps,
                                0.0,
                            ));
                        }
                        let c = t1.elapsed().as_secs_f64();
                        cpu_s = Some(c);
                        c
                    }
                };
                rows.push(LbfgsBenchRow {
                    n,
                    batch,
                    steps,
                    direction: match (direction, lockstep) {
                        (Direction::Fused, true) => "fused, lockstep",
                        (Direction::Fused, false) => "fused, free-running",
                        _ => direction.name(),
                    },
                    gpu_s,
                    cpu_s: cpu,
                    dispatches,
                    evaluations: tr.final_evaluations.iter().sum(),
                });
            }
        }
    }
    Ok(rows)
}

pub fn lbfgs_markdown(rows: &[LbfgsBenchRow], adapter: &str, task: &str) -> String {
    let mut s = format!(
        "Adapter: `{adapter}`. Batched L-BFGS (strong Wolfe, m = 5) on B problems of the `{task}` task for a fixed \
         number of iterations; CPU: the f64 reference of the same algorithm, one problem after the other, one \
         thread. Dispatches: kernel dispatches per iteration for all B problems (task evaluations included).\n\n\
         | n | B | iterations | direction | device s | problem-iterations/s | CPU f64 s | device/CPU speed | dispatches / iteration | evaluations |\n\
         |--:|--:|--:|:--|--:|--:|--:|--:|--:|--:|\n"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.3} | {:.0} | {:.3} | {:.2} | {:.1} | {} |",
            r.n,
            r.batch,
            r.steps,
            r.direction,
            r.gpu_s,
            (r.batch * r.steps) as f64 / r.gpu_s,
            r.cpu_s,
            r.cpu_s / r.gpu_s,
            r.dispatches,
            r.evaluations
        );
    }
    s
}
