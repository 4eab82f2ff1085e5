//! Hilbert LSTM throughput (`l2o bench --hlstm`): seconds per optimizee step of meta-training (forward step with
//! the trajectory store, reverse step, the unroll's one readback, amortised over T = 10 steps) and of inference
//! (the driver optimizer's forward step), on the device and on the f64 CPU reference (`l2o_meta::hlstm`: unroll +
//! adjoint, single thread), side by side in one run, on extended Rosenbrock (whose cost is O(n), so the
//! optimizer's work dominates).

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::Result;
use l2o_engine::Context;
use l2o_meta::hlstm::device::{HlstmOptimizer, HlstmTrainer};
use l2o_meta::hlstm::{self, Carry, HlstmConfig, HlstmTraining, Replay};
use l2o_optim::{RunOptions, run};
use l2o_tasks::make_task;

#[derive(Clone, Debug)]
pub struct HlstmBenchRow {
    pub n: usize,
    pub batch: usize,
    pub cell: u32,
    /// Meta-training, seconds per optimizee step (device; CPU f64 reference).
    pub train_gpu: f64,
    pub train_cpu: f64,
    /// Inference, seconds per step (device driver run).
    pub step_gpu: f64,
    /// Kernel dispatches per optimizee step, meta-training (forward + reverse, the task's included) and
    /// inference (the task's and the driver's status kernels included).
    pub train_dispatches: f64,
    pub step_dispatches: f64,
}

/// Time `reps` unrolls of T = 10 (after a warm-up) and a 20-step inference run for every (n, B), both cells.
pub fn run_hlstm_bench(
    ctx: &Context,
    sizes: &[usize],
    batches: &[usize],
    reps: usize,
    on_skip: &mut dyn FnMut(usize, usize, &anyhow::Error),
) -> Result<Vec<HlstmBenchRow>> {
    let tt = 10;
    let weights = vec![1.0; tt];
    let training = HlstmTraining::default();
    let mut rows = vec![];
    for &n in sizes {
        let n = n + n % 2; // Rosenbrock needs even n
        for &batch in batches {
            for cell in [1u32, 2] {
                let cfg = HlstmConfig {
                    cell,
                    ..Default::default()
                };
                let phi = cfg.init(1);
                let task = make_task(ctx, "rosenbrock", n, batch, 1)?;
                let mut tr = match HlstmTrainer::new(ctx, &cfg, n, batch, &weights, &training) {
                    Ok(t) => t,
                    Err(e) => {
                        on_skip(n, batch, &e);
                        continue;
                    }
                };
                tr.bind(ctx, task.as_ref())?;
                // warm-up: every pipeline of the timed loop (the carry's too) built before the clock starts
                tr.run(ctx, &phi)?;
                tr.carry(ctx)?;
                tr.run(ctx, &phi)?;
                let d0 = ctx.dispatches();
                let t0 = Instant::now();
                for _ in 0..reps {
                    tr.carry(ctx)?;
                    tr.run(ctx, &phi)?;
                }
                let train_gpu = t0.elapsed().as_secs_f64() / (reps * tt) as f64;
                let train_dispatches = (ctx.dispatches() - d0) as f64 / (reps * tt) as f64;
                let x0 = task.initial_point();
                let lg = |b: usize, x: &[f64]| task.oracle_loss_grad(b, x);
                let eps_c = cfg.eps_c(ctx.precision());
                let t1 = Instant::now();
                let mut g = vec![0.0; phi.len()];
                for b in 0..batch {
                    let xb = &x0[b * n..(b + 1) * n];
                    let carry = Carry::fresh(&cfg, n, lg(b, xb).0);
                    let r = hlstm::unroll(
                        &cfg,
                        &phi,
                        &lg,
                        b,
                        xb,
                        &carry,
                        &weights,
                        training.loss,
                        eps_c,
                        Replay::Live,
                    );
                    hlstm::adjoint(
                        &cfg,
                        &phi,
                        &r,
                        &weights,
                        training.loss,
                        1.0 / batch as f64,
                        &mut g,
                        true,
                    );
                }
                let train_cpu = t1.elapsed().as_secs_f64() / tt as f64;
                let steps = 20;
                let o = RunOptions::fixed(steps);
                let mut opt = HlstmOptimizer::new(cfg, phi.clone())?;
                run(ctx, task.as_ref(), &mut opt, &o, &mut |_| {})?;
                let d2 = ctx.dispatches();
                let t2 = Instant::now();
                run(ctx, task.as_ref(), &mut opt, &o, &mut |_| {})?;
                let step_gpu = t2.elapsed().as_secs_f64() / steps as f64;
                let step_dispatches = (ctx.dispatches() - d2) as f64 / steps as f64;
                rows.push(HlstmBenchRow {
                    n,
                    batch,
                    cell,
                    train_gpu,
                    train_cpu,
                    step_gpu,
                    train_dispatches,
                    step_dispatches,
                });
            }
        }
    }
    Ok(rows)
}

pub fn hlstm_markdown(rows: &[HlstmBenchRow], adapter: &str) -> String {
    let mut s = format!(
        "Adapter: `{adapter}`. Hilbert LSTM (m = 5, 32 hidden units) on B extended-Rosenbrock problems. Meta-training: \
         seconds per optimizee step of an unroll of T = 10 (Gram, cell, combinations, task, reverse sweep; one \
         readback per unroll), device vs the f64 CPU reference (unroll + adjoint, single thread). Inference: \
         seconds per step of the driver optimizer (device; includes the task and the driver's status kernels). \
         Dispatches: kernel dispatches per optimizee step (all B problems, the task's included).\n\n\
         | n | B | cell | train: device s/step | train: CPU f64 s/step | device/CPU speed | inference: device s/step | device coordinate-steps/s (inference) | dispatches/step: train | inference |\n\
         |--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.2e} | {:.2e} | {:.2} | {:.2e} | {:.2e} | {:.1} | {:.1} |",
            r.n,
            r.batch,
            r.cell,
            r.train_gpu,
            r.train_cpu,
            r.train_cpu / r.train_gpu,
            r.step_gpu,
            (r.n * r.batch) as f64 / r.step_gpu,
            r.train_dispatches,
            r.step_dispatches
        );
    }
    s
}
