//! L-BFGS-π meta-gradient throughput (`l2o bench --policy`): seconds per outer step (K inner steps forward with
//! the trajectory record, the reverse sweep through policy, Gram features and two-loop, one readback) on the
//! device and on the f64 CPU reference (`l2o_meta::policy::{unroll, adjoint}`), measured side by side in one run
//! on random quadratics (the task's own cost is a few inner products, so the optimizer's work dominates).

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::Result;
use l2o_engine::Context;
use l2o_meta::policy::device::PolicyTrainer;
use l2o_meta::policy::fused::{self, Schedule};
use l2o_meta::policy::{self, PolicyConfig};
use l2o_tasks::make_task;

#[derive(Clone, Debug)]
pub struct PolicyBenchRow {
    pub n: usize,
    pub batch: usize,
    pub k: usize,
    /// "fused" or "vectors" ([`Schedule`]).
    pub schedule: &'static str,
    pub gpu_s: f64,
    pub cpu_s: f64,
    pub dispatches: usize,
}

/// Time `reps` outer steps of K = `k` inner steps (m = 5) for every (n, B) and schedule (fused where it can run,
/// and the vector path), after one warm-up step each; the CPU reference once per (n, B).
pub fn run_policy_bench(
    ctx: &Context,
    sizes: &[usize],
    batches: &[usize],
    k: usize,
    reps: usize,
) -> Result<Vec<PolicyBenchRow>> {
    let cfg = PolicyConfig::default();
    let phi = cfg.init(1);
    let weights = vec![1.0; k];
    let mut rows = vec![];
    for &n in sizes {
        for &batch in batches {
            let task = make_task(ctx, "quadratic", n, batch, 1)?;
            let mut timed = vec![];
            let mut schedules = vec![Schedule::Vectors];
            if fused::fits_loop_budget(ctx, n, cfg.m) {
                schedules.insert(0, Schedule::Fused);
            }
            for schedule in schedules {
                let mut tr = PolicyTrainer::with_schedule(ctx, &cfg, n, batch, &weights, schedule)?;
                tr.bind(ctx, task.as_ref())?;
                tr.run(ctx, &phi)?;
                let t0 = Instant::now();
                for _ in 0..reps {
                    tr.run(ctx, &phi)?; // continues from x_K with a fresh memory, as in training
                }
                let gpu_s = t0.elapsed().as_secs_f64() / reps as f64;
                let name = if schedule == Schedule::Fused {
                    "fused"
                } else {
                    "vectors"
                };
                timed.push((name, gpu_s, tr.dispatches_per_step()));
            }
            let x0 = task.initial_point();
            let lg = |b: usize, x: &[f64]| task.oracle_loss_grad(b, x);
            let t1 = Instant::now();
            let mut g = vec![0.0; phi.len()];
            for b in 0..batch {
                let r = policy::unroll(&cfg, &phi, &lg, b, &x0[b * n..(b + 1) * n], &weights, None);
                policy::adjoint(&cfg, &phi, &r, &weights, 1.0 / batch as f64, &mut g);
            }
            let cpu_s = t1.elapsed().as_secs_f64();
            for (schedule, gpu_s, dispatches) in timed {
                rows.push(PolicyBenchRow {
                    n,
                    batch,
                    k,
                    schedule,
                    gpu_s,
                    cpu_s,
                    dispatches,
                });
            }
        }
    }
    Ok(rows)
}

pub fn policy_markdown(rows: &[PolicyBenchRow], adapter: &str) -> String {
    let mut s = format!(
        "Adapter: `{adapter}`. One outer step of L-BFGS-π meta-training on B random quadratics f = ‖Wx − y‖² \
         (m = 5): K inner steps with the trajectory record, the reverse sweep, one readback. CPU: the f64 reference \
         unroll + adjoint of the same B problems, single thread. The quadratic's W·x costs n² per evaluation and \
         is part of both columns.\n\n\
         Schedules: fused (one thread per problem per step, `l2o_meta::policy::fused`) and vectors (the engine's \
         inner-product and combination kernels).\n\n\
         | n | B | K | schedule | device s / outer step | CPU f64 s / outer step | device/CPU speed | dispatches |\n\
         |--:|--:|--:|:--|--:|--:|--:|--:|\n"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.3} | {:.4} | {:.2e} | {} |",
            r.n,
            r.batch,
            r.k,
            r.schedule,
            r.gpu_s,
            r.cpu_s,
            r.cpu_s / r.gpu_s,
            r.dispatches
        );
    }
    s
}
