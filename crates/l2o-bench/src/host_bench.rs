//! `l2o bench --host`: what a task evaluated on the host costs per evaluation against the built-in task it
//! copies. The host task is the built-in extended Rosenbrock's f64 oracle as a closure ([`l2o_tasks::HostTask`]),
//! run by SGD for a fixed number of steps next to the built-in kernel; the difference per evaluation, less the
//! closure's own time, is the host step's overhead (readback of θ, which waits for the device; upload of f and
//! ∇f; the gather/scatter kernels).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use l2o_engine::Context;
use l2o_tasks::{HostFn, HostProblem, Rosenbrock, Task};

use l2o_optim::{FirstOrder, Kind, RunOptions, run};

/// One size: seconds per evaluation of the built-in task, of the host task, and of the closure inside it.
#[derive(Clone, Debug)]
pub struct HostRow {
    pub n: usize,
    pub batch: usize,
    pub builtin_s: f64,
    pub host_s: f64,
    pub closure_s: f64,
}

impl HostRow {
    /// What the host step adds per evaluation beyond the built-in evaluation and the closure.
    pub fn overhead_s(&self) -> f64 {
        self.host_s - self.builtin_s - self.closure_s
    }
}

/// SGD for `steps` steps (one evaluation each) on both, best of `reps`, at every (n, B).
pub fn run_host_bench(
    ctx: &Context,
    sizes: &[usize],
    batches: &[usize],
    steps: usize,
    reps: usize,
) -> Result<Vec<HostRow>> {
    let mut rows = vec![];
    for &n in sizes {
        let n = n + n % 2; // Rosenbrock needs an even dimension
        for &b in batches {
            let builtin = Arc::new(Rosenbrock::sample(ctx, n, b, 1)?);
            let oracle = builtin.clone();
            let fun: HostFn = Arc::new(move |theta, f, g| {
                for p in 0..b {
                    let (fp, gp) = oracle.oracle_loss_grad(p, &theta[p * n..(p + 1) * n]);
                    f[p] = fp;
                    g[p * n..(p + 1) * n].copy_from_slice(&gp);
                }
                Ok(())
            });
            let problem = HostProblem::new("rosenbrock-host", n, b, fun)?;
            let host = problem.task_at(ctx, builtin.initial_point())?;
            let o = RunOptions::fixed(steps);
            let time = |task: &dyn Task| -> Result<f64> {
                let mut best = f64::INFINITY;
                for _ in 0..reps {
                    let t0 = Instant::now();
                    run(
                        ctx,
                        task,
                        &mut FirstOrder::new(Kind::Sgd, 1e-5),
                        &o,
                        &mut |_| {},
                    )?;
                    best = best.min(t0.elapsed().as_secs_f64());
                }
                Ok(best / (steps + 1) as f64)
            };
            time(builtin.as_ref())?; // warm-up: pipelines compiled
            let builtin_s = time(builtin.as_ref())?;
            let before = (
                problem.stats().closure_seconds(),
                problem.stats().evaluations(),
            );
            let host_s = time(&host)?;
            let evals = problem.stats().evaluations() - before.1;
            let closure_s = (problem.stats().closure_seconds() - before.0) / evals.max(1) as f64;
            rows.push(HostRow {
                n,
                batch: b,
                builtin_s,
                host_s,
                closure_s,
            });
        }
    }
    Ok(rows)
}

pub fn host_markdown(rows: &[HostRow], device: &str) -> String {
    let mut s = format!(
        "Host-callback task vs built-in (extended Rosenbrock, SGD, one evaluation per step) on {device}\n\n\
         | n | B | built-in ms/eval | host ms/eval | closure ms/eval | host-step overhead ms/eval | host / built-in |\n\
         |---|---|---|---|---|---|---|\n"
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2}× |\n",
            r.n,
            r.batch,
            r.builtin_s * 1e3,
            r.host_s * 1e3,
            r.closure_s * 1e3,
            r.overhead_s() * 1e3,
            r.host_s / r.builtin_s
        ));
    }
    s
}
