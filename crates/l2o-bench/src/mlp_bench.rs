//! Throughput of the batched MNIST MLP kernels (forward + backward of B networks on M images each) in GFLOP/s,
//! against the f64 CPU oracle on the same minibatch, measured side by side (`l2o bench --mlp`).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use l2o_engine::{Context, ScalarOut};
use l2o_tasks::idx::MnistData;
use l2o_tasks::{Mlp, MlpConfig, Task};

#[derive(Clone, Debug)]
pub struct MlpBenchRow {
    pub hidden: Vec<usize>,
    pub batch: usize,
    pub minibatch: usize,
    pub gpu_ms: f64,
    pub cpu_ms: f64,
    pub gflop: f64,
}

/// Multiply-adds ×2 of one evaluation: forward, ∂W and (below the first layer) ∂A, for every network.
pub fn flops(widths: &[usize], m: usize, batch: usize) -> f64 {
    let fwd: usize = widths.windows(2).map(|w| w[0] * w[1]).sum();
    let da: usize = widths.windows(2).skip(1).map(|w| w[0] * w[1]).sum();
    2.0 * (m * batch) as f64 * (2 * fwd + da) as f64
}

pub fn run_mlp_bench(
    ctx: &Context,
    data: Arc<MnistData>,
    archs: &[Vec<usize>],
    batches: &[usize],
    minibatches: &[usize],
) -> Result<Vec<MlpBenchRow>> {
    let mut rows = vec![];
    for &minibatch in minibatches {
        for hidden in archs {
            for &batch in batches {
                let cfg = MlpConfig {
                    hidden: hidden.clone(),
                    minibatch,
                    ..Default::default()
                };
                let task = Mlp::new(ctx, data.clone(), cfg, batch, 1)?;
                let n = task.dim();
                let theta = ctx.upload("theta", &task.initial_point())?;
                let grad = ctx.zeros("grad", batch * n)?;
                let f = ctx.zeros("f", batch)?;
                let d = task.loss_and_grad(
                    ctx,
                    theta.view(n),
                    grad.view(n),
                    ScalarOut {
                        buf: &f,
                        stride: 1,
                        col: 0,
                    },
                )?;
                ctx.submit(&d)?;
                ctx.wait()?;
                let reps = 10;
                let t0 = Instant::now();
                for _ in 0..reps {
                    ctx.submit(&d)?;
                }
                ctx.wait()?;
                let gpu_ms = t0.elapsed().as_secs_f64() * 1e3 / reps as f64;
                let th = task.initial_point();
                let t1 = Instant::now();
                let cpu_nets = batch.min(2);
                for b in 0..cpu_nets {
                    let _ = task.oracle_at(b, &th[b * n..(b + 1) * n], 0);
                }
                let cpu_ms = t1.elapsed().as_secs_f64() * 1e3 * batch as f64 / cpu_nets as f64;
                rows.push(MlpBenchRow {
                    hidden: hidden.clone(),
                    batch,
                    minibatch,
                    gpu_ms,
                    cpu_ms,
                    gflop: flops(task.widths(), minibatch, batch) / 1e9,
                });
            }
        }
    }
    Ok(rows)
}

pub fn format_mlp_table(rows: &[MlpBenchRow], markdown: bool) -> String {
    let mut s = String::new();
    if markdown {
        s.push_str("| hidden | B | M | device ms | device GFLOP/s | CPU f64 ms | CPU GFLOP/s | device/CPU |\n|:--|--:|--:|--:|--:|--:|--:|--:|\n");
    } else {
        let _ = writeln!(
            s,
            "{:<10} {:>4} {:>5} {:>10} {:>14} {:>10} {:>12} {:>10}",
            "hidden",
            "B",
            "M",
            "device ms",
            "device GFLOP/s",
            "CPU ms",
            "CPU GFLOP/s",
            "device/CPU"
        );
    }
    for r in rows {
        let h = r
            .hidden
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join("×");
        let (g, c) = (r.gflop / (r.gpu_ms / 1e3), r.gflop / (r.cpu_ms / 1e3));
        if markdown {
            let _ = writeln!(
                s,
                "| {h} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                r.batch,
                r.minibatch,
                r.gpu_ms,
                g,
                r.cpu_ms,
                c,
                r.cpu_ms / r.gpu_ms
            );
        } else {
            let _ = writeln!(
                s,
                "{h:<10} {:>4} {:>5} {:>10.2} {:>14.2} {:>10.2} {:>12.2} {:>10.2}",
                r.batch,
                r.minibatch,
                r.gpu_ms,
                g,
                r.cpu_ms,
                c,
                r.cpu_ms / r.gpu_ms
            );
        }
    }
    s
}
