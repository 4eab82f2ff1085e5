//! Meta-training throughput of the L2L LSTM: coordinate-steps per second of forward sweep + reverse sweep +
//! meta-update, on the device and on the f64 CPU reference, measured side by side in one run (`l2o bench
//! --meta`). A coordinate-step is one optimizee coordinate advanced one step (B·n·horizon per epoch).

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::Result;
use l2o_engine::Context;
use l2o_meta::l2l::device::L2lTrainer;
use l2o_meta::l2l::{self, LstmConfig};
use l2o_meta::metaopt::MetaOptState;
use l2o_tasks::make_task;

#[derive(Clone, Debug)]
pub struct MetaBenchRow {
    pub task: String,
    pub n: usize,
    pub batch: usize,
    pub unroll: usize,
    pub horizon: usize,
    /// Seconds per epoch on the device (horizon/unroll unrolls, each with its meta-update).
    pub gpu_epoch_s: f64,
    pub gpu_coord_steps_per_s: f64,
    /// f64 CPU reference (forward, adjoint, Adam) per coordinate-step, measured on one unroll.
    pub cpu_coord_steps_per_s: f64,
    pub dispatches_per_epoch: usize,
    pub round_trips_per_epoch: usize,
    /// The device's arithmetic rate: [`flops_per_coordinate_step`] × coordinate-steps/s.
    pub gflops: f64,
    /// The L2L kernel set that ran (`LstmKernels::name`).
    pub kernels: String,
}

/// The ~125 GFLOP/s ALU ceiling of the software adapter (lavapipe, 2 cores, 256-bit), measured by
/// `../shared/tools/lavapipe-probe` (`../shared/notes/lavapipe-performance.md`): the distance to it is printed.
pub const LAVAPIPE_CEILING_GFLOPS: f64 = 125.0;

/// Floating-point operations (an FMA = 2) per coordinate-step of meta-training: the forward step
/// (4H(D+H) + 8H² multiply-adds), the reverse sweep (the forward recomputed, plus the transposed products W2ᵀδ²
/// and W1[:, D..]ᵀδ¹: 12H²) and the ∂L/∂φ outer products (one multiply-add per parameter).
pub fn flops_per_coordinate_step(cfg: &LstmConfig) -> f64 {
    let (h, d) = (cfg.hidden as f64, cfg.input_dim() as f64);
    let fwd = 4.0 * h * (d + h) + 8.0 * h * h;
    2.0 * (2.0 * fwd + 12.0 * h * h + cfg.layout().len as f64)
}

#[derive(Clone, Debug)]
pub struct MetaBenchConfig {
    pub sizes: Vec<usize>,
    pub batches: Vec<usize>,
    pub horizon: usize,
    pub unroll: usize,
    pub hidden: usize,
    /// Epochs timed on the device (after one warm-up epoch).
    pub epochs: usize,
}

impl Default for MetaBenchConfig {
    fn default() -> Self {
        Self {
            sizes: vec![10, 100, 1000, 10000],
            batches: vec![1, 16, 128, 256],
            horizon: 100,
            unroll: 20,
            hidden: 20,
            epochs: 3,
        }
    }
}

/// Quadratics where W (B·n²) is small, extended Rosenbrock (elementwise) beyond.
fn task_for(n: usize, batch: usize) -> &'static str {
    if n * n * batch <= 4_000_000 {
        "quadratic"
    } else {
        "rosenbrock"
    }
}

pub fn run_meta_bench(
    ctx: &Context,
    cfg: &MetaBenchConfig,
    progress: &mut dyn FnMut(&MetaBenchRow),
) -> Result<(Vec<MetaBenchRow>, Vec<String>)> {
    let lstm = LstmConfig {
        hidden: cfg.hidden,
        ..Default::default()
    };
    let weights = l2l::unit_weights(cfg.unroll);
    let (mut rows, mut skipped) = (vec![], vec![]);
    for &n in &cfg.sizes {
        for &batch in &cfg.batches {
            let name = task_for(n, batch);
            let n_eff = if name == "rosenbrock" { n + n % 2 } else { n };
            let mut trainer = match L2lTrainer::new(ctx, &lstm, n_eff, batch, cfg.unroll, &weights)
            {
                Ok(t) => t,
                Err(e) => {
                    skipped.push(format!("n={n} B={batch}: {e}"));
                    continue;
                }
            };
            let task = make_task(ctx, name, n_eff, batch, 1)?;
            let mut phi = lstm.init(1);
            let mut opt = MetaOptState::adam(phi.len(), 1e-3);
            let unrolls = cfg.horizon / cfg.unroll;
            let mut epoch = |trainer: &mut L2lTrainer, phi: &mut Vec<f64>| -> Result<()> {
                trainer.bind(ctx, task.as_ref())?;
                for u in 0..unrolls {
                    if u > 0 {
                        trainer.carry(ctx)?;
                    }
                    let r = trainer.run(ctx, phi)?;
                    if r.dphi.iter().all(|g| g.is_finite()) {
                        opt.step(phi, &r.dphi)?;
                    }
                }
                Ok(())
            };
            epoch(&mut trainer, &mut phi)?; // warm-up: pipelines, first dispatches
            let t0 = Instant::now();
            for _ in 0..cfg.epochs {
                epoch(&mut trainer, &mut phi)?;
            }
            let gpu_epoch_s = t0.elapsed().as_secs_f64() / cfg.epochs as f64;
            // CPU reference on one unroll over at most 2048 coordinates (its cost per coordinate-step is flat).
            let coords = (n_eff * batch).min(2048);
            let cb = coords.div_ceil(n_eff).max(1);
            let theta0 = task.initial_point()[..cb * n_eff].to_vec();
            let lg = |b: usize, th: &[f64]| task.oracle_loss_grad(b, th);
            let states = l2l::zero_states(&lstm, cb * n_eff);
            let mut cphi = lstm.init(1);
            let mut copt = MetaOptState::adam(cphi.len(), 1e-3);
            let t1 = Instant::now();
            let rec = l2l::unroll(&lstm, &cphi, &lg, n_eff, cb, &theta0, &states, &weights);
            let g = l2l::adjoint(&lstm, &cphi, &rec, &weights);
            copt.step(&mut cphi, &g)?;
            let cpu_s = t1.elapsed().as_secs_f64();
            let row = MetaBenchRow {
                task: name.to_string(),
                n: n_eff,
                batch,
                unroll: cfg.unroll,
                horizon: cfg.horizon,
                gpu_epoch_s,
                gpu_coord_steps_per_s: (n_eff * batch * cfg.horizon) as f64 / gpu_epoch_s,
                cpu_coord_steps_per_s: (cb * n_eff * cfg.unroll) as f64 / cpu_s,
                dispatches_per_epoch: trainer.dispatches_per_unroll() * unrolls,
                round_trips_per_epoch: unrolls,
                gflops: flops_per_coordinate_step(&lstm) * (n_eff * batch * cfg.horizon) as f64
                    / gpu_epoch_s
                    / 1e9,
                kernels: trainer.bufs.kernels.name(),
            };
            progress(&row);
            rows.push(row);
        }
    }
    Ok((rows, skipped))
}

/// The cells of one row, formatted once for both the text table and the Markdown table.
fn cells(r: &MetaBenchRow) -> [String; 12] {
    [
        r.task.clone(),
        r.n.to_string(),
        r.batch.to_string(),
        r.unroll.to_string(),
        format!("{:.4}", r.gpu_epoch_s),
        format!("{:.3e}", r.gpu_coord_steps_per_s),
        format!("{:.3e}", r.cpu_coord_steps_per_s),
        format!("{:.2}", r.gpu_coord_steps_per_s / r.cpu_coord_steps_per_s),
        r.dispatches_per_epoch.to_string(),
        r.round_trips_per_epoch.to_string(),
        format!("{:.1}", r.gflops),
        format!("{:.1}", 100.0 * r.gflops / LAVAPIPE_CEILING_GFLOPS),
    ]
}

pub fn format_meta_table(rows: &[MetaBenchRow]) -> String {
    let header = [
        "task",
        "n",
        "B",
        "T",
        "epoch s",
        "gpu coord-st/s",
        "cpu coord-st/s",
        "gpu/cpu",
        "dispatches",
        "round trips",
        "GFLOP/s",
        "% 125",
    ];
    let widths = [10, 7, 5, 4, 12, 16, 16, 8, 11, 11, 8, 6];
    let line = |c: &[String]| -> String {
        let mut l = format!("{:<w$}", c[0], w = widths[0]);
        for (v, w) in c.iter().zip(widths).skip(1) {
            let _ = write!(l, " {v:>w$}");
        }
        l
    };
    let mut s = line(&header.map(String::from)) + "\n";
    for r in rows {
        s += &(line(&cells(r)) + "\n");
    }
    s
}

pub fn meta_markdown(rows: &[MetaBenchRow], adapter: &str) -> String {
    let mut s = format!(
        "Adapter: `{adapter}`. One epoch = horizon/unroll unrolls of B problems × n coordinates, each: forward sweep \
         with the task's loss and gradient, reverse sweep, ∂L/∂φ reduction, one readback, host Adam update. CPU: the \
         f64 reference (forward unroll, adjoint, Adam) on one unroll of ≤ 2048 coordinates.\n\n\
         GFLOP/s: {:.0} kFLOP per coordinate-step (forward, reverse with the forward recomputed, ∂L/∂φ) × \
         coordinate-steps/s; the last column is that rate as a percentage of the software adapter's ~125 GFLOP/s \
         ALU ceiling (lavapipe probe). L2L kernels: {}.\n\n\
         | task | n | B | T | epoch (s) | device coord-steps/s | CPU f64 coord-steps/s | device/CPU | dispatches/epoch | round trips/epoch | GFLOP/s | % of 125 GFLOP/s |\n\
         |:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
        flops_per_coordinate_step(&LstmConfig::default()) / 1e3,
        rows.first().map_or("-", |r| r.kernels.as_str())
    );
    for r in rows {
        let _ = writeln!(s, "| {} |", cells(r).join(" | "));
    }
    s
}
