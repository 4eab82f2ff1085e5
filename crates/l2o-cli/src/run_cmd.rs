//! `l2o run` (one optimizer on a task, with a trace and a plot) and `l2o tune` (a learning-rate grid).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use l2o_optim::tune::{log_grid, tune};
use l2o_optim::{LbfgsConfig, LineSearch, RunOptions, make_optimizer, parse_kind, run};
use l2o_tasks::make_task;

use crate::{DeviceArgs, TaskArgs, bar, list, plot, report};

/// "-4..0" → (-4, 0)
pub(crate) fn parse_grid(grid: &str) -> Result<Vec<f64>> {
    let (lo, hi) = grid
        .split_once("..")
        .and_then(|(a, b)| Some((a.trim().parse::<i32>().ok()?, b.trim().parse::<i32>().ok()?)))
        .ok_or_else(|| anyhow::anyhow!("--grid {grid:?}: expected LO..HI, e.g. -4..0"))?;
    if lo > hi {
        bail!("--grid {grid:?}: LO must not exceed HI");
    }
    Ok(log_grid(lo, hi))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn run_cmd(
    dev: &DeviceArgs,
    t: &TaskArgs,
    optimizer: &str,
    lr: Option<f64>,
    tune_grid: Option<&str>,
    line_search: &str,
    history: usize,
    direction: &str,
    steps: usize,
    eps_g: f64,
    out: &PathBuf,
) -> Result<()> {
    // NAME or NAME:LR
    let mut specs: Vec<(String, Option<f64>)> = vec![];
    for item in list::<String>(optimizer, "optimizer")? {
        match item.split_once(':') {
            Some((n, l)) => {
                let l: f64 = l
                    .parse()
                    .map_err(|e| anyhow::anyhow!("bad learning rate in {item:?}: {e}"))?;
                specs.push((n.to_string(), Some(l)));
            }
            None => specs.push((item, lr)),
        }
    }
    let grid = tune_grid.map(parse_grid).transpose()?;
    let ls = LineSearch::parse(line_search)?;
    let direction = l2o_optim::Direction::parse(direction)?;
    if steps == 0 {
        bail!("--steps must be at least 1");
    }
    let ctx = dev.context()?;
    eprintln!(
        "device: {} — {} — {}",
        ctx.describe(),
        ctx.reason,
        ctx.precision()
    );
    let task = make_task(&ctx, &t.task, t.dim, t.batch, t.seed)?;
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create output directory {}", out.display()))?;
    if let Some(grid) = &grid {
        let train = make_task(&ctx, &t.task, t.dim, t.batch, t.seed + 1_000_000)?;
        for (name, lr) in specs.iter_mut() {
            if let (None, Some(kind)) = (*lr, parse_kind(name)) {
                let pb = bar(grid.len() as u64, format!("tuning {name}"));
                let r = tune(&ctx, &[train.as_ref()], kind, grid, steps)?;
                pb.finish_and_clear();
                eprintln!(
                    "tuned {name}: lr {} (grid {:?}, training seed {})",
                    r.best_lr,
                    grid,
                    t.seed + 1_000_000
                );
                *lr = Some(r.best_lr);
            }
        }
    }
    let mut traces = vec![];
    for (name, lr_i) in &specs {
        let lr_i = *lr_i;
        let cfg = LbfgsConfig {
            m: history,
            line_search: ls,
            direction,
            ..Default::default()
        };
        let mut opt = make_optimizer(name, lr_i, cfg)?;
        let pb = bar(steps as u64, opt.name());
        let t0 = Instant::now();
        let o = RunOptions {
            steps,
            eps_g,
            check_every: 10,
            lockstep: false,
        };
        let tr = run(&ctx, task.as_ref(), opt.as_mut(), &o, &mut |k| {
            pb.set_position(k as u64)
        })?;
        pb.finish();
        let secs = t0.elapsed().as_secs_f64();
        let file = out.join(format!("{}.csv", report::slug(&tr.optimizer)));
        report::write_csv(&tr, &file)?;
        report::print_summary(&tr, secs, eps_g);
        traces.push(tr);
    }
    let title = format!(
        "{} n={} B={} seed={} ({})",
        task.name(),
        t.dim,
        t.batch,
        t.seed,
        ctx.precision()
    );
    let svg = out.join("loss.svg");
    plot::loss_plot(&traces, &title, &svg)?;
    let svg_g = out.join("gradnorm.svg");
    plot::gnorm_plot(&traces, &title, &svg_g)?;
    eprintln!(
        "wrote {} and {} (and one CSV per optimizer) in {}",
        svg.display(),
        svg_g.display(),
        out.display()
    );
    Ok(())
}

pub(crate) fn tune_cmd(
    dev: &DeviceArgs,
    t: &TaskArgs,
    optimizer: &str,
    grid: &str,
    steps: usize,
    out: &PathBuf,
) -> Result<()> {
    let grid = parse_grid(grid)?;
    let ctx = dev.open()?;
    let task = make_task(&ctx, &t.task, t.dim, t.batch, t.seed)?;
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create output directory {}", out.display()))?;
    let mut w = csv::Writer::from_path(out.join("tune.csv"))?;
    w.write_record(["optimizer", "lr", "mean_final_loss"])?;
    for name in list::<String>(optimizer, "optimizer")? {
        let kind = parse_kind(&name)
            .ok_or_else(|| anyhow::anyhow!("tune: {name:?} is not a first-order method"))?;
        let r = tune(&ctx, &[task.as_ref()], kind, &grid, steps)?;
        println!(
            "{name}: best lr {} (mean final loss over {} problems after {steps} steps)",
            r.best_lr, t.batch
        );
        for (lr, loss) in &r.table {
            println!(
                "  lr {lr:<8} {loss:.6e}{}",
                if *lr == r.best_lr { "  <- best" } else { "" }
            );
            w.write_record([name.clone(), lr.to_string(), loss.to_string()])?;
        }
    }
    w.flush()?;
    eprintln!("wrote {}", out.join("tune.csv").display());
    Ok(())
}
