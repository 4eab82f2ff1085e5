//! `l2o`: the command-line front end (depends on every layer; nothing depends on it). `l2o info | run | tune |
//! train | eval | bench | autotune | inspect | upgrade`; progress on stderr, results in --out. One module per
//! command: `cli` (the flags), `adapter` (info, autotune), `run_cmd` (run, tune), `train`, `eval`, `bench`;
//! this file dispatches them.

mod adapter;
mod args;
mod baselines;
mod bench;
mod cli;
mod cluster;
mod eval;
mod held_out;
mod plot;
mod report;
mod run_cmd;
mod train;

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

use adapter::{autotune_cmd, info};
use bench::{
    bench_cmd, grid_bench_cmd, hlstm_bench_cmd, host_table, lbfgs_table, meta_bench_cmd, mlp_bench_cmd,
    policy_table,
};
pub(crate) use cli::{Cli, Cmd, DeviceArgs, TaskArgs};
pub(crate) use run_cmd::parse_grid;
use run_cmd::{run_cmd, tune_cmd};

fn list<T: std::str::FromStr>(s: &str, what: &str) -> Result<Vec<T>>
where
    T::Err: std::fmt::Display,
{
    s.split(',')
        .map(|x| {
            x.trim()
                .parse::<T>()
                .map_err(|e| anyhow::anyhow!("bad {what} {x:?}: {e}"))
        })
        .collect()
}

/// A progress bar on stderr (hidden on every rank but 0 of a distributed run).
fn bar(len: u64, msg: String) -> ProgressBar {
    if !cluster::is_root() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>28} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message(msg);
    pb
}

fn main() {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,wgpu_hal=off,naga=warn"),
    )
    .init();
    let cli = Cli::parse();
    cluster::install_panic_hook();
    let cluster = match cluster::Cluster::init() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    };
    let r = distributable(&cli.cmd, cluster.group().size()).and_then(|()| run_command(&cli));
    if let Err(e) = r {
        // one write per line: the ranks of a distributed run share stderr
        let line = format!("{}error: {e:#}\n", cluster::prefix());
        eprint!("{line}");
        if std::env::var("RUST_LOG").is_err() {
            eprintln!("(run with RUST_LOG=debug for details)");
        }
        // distributed: every rank stops (MPI_Abort), never waiting for this one
        cluster::fail(1);
    }
    // the kernel variants that produced these numbers (l2o_engine::variants)
    let kernels = l2o::engine::variants::process_report();
    if !kernels.is_empty() && cluster::is_root() {
        eprintln!("kernels: {kernels}");
    }
    drop(cluster);
}

/// Error unless `cmd` runs on `ranks` ranks: train, eval and bench --meta distribute; the rest are one process.
fn distributable(cmd: &Cmd, ranks: usize) -> Result<()> {
    let ok = match cmd {
        Cmd::Train { .. } | Cmd::Eval { .. } => true,
        Cmd::Bench {
            meta,
            mlp,
            policy,
            hlstm,
            host,
            ..
        } => *meta && !(*mlp || *policy || *hlstm || *host),
        _ => false,
    };
    if ranks > 1 && !ok {
        bail!(
            "only l2o train, l2o eval and l2o bench --meta run on several ranks ({ranks} were started): run this              command as one process, without mpirun"
        );
    }
    Ok(())
}

/// `l2o upgrade`: load (which reads every supported format version and ignores stored data folders), record
/// the MNIST identity where it is missing, save (atomic), and check that φ and best φ are bit-identical.
fn upgrade(path: &std::path::Path, data: Option<&std::path::Path>) -> Result<()> {
    use l2o_meta::checkpoint::{load, phi_sha256, save};
    let mut s = load(path)?;
    let before = (phi_sha256(&s.phi), phi_sha256(&s.best_phi));
    s.train.task_options.data = data.map(|d| d.display().to_string());
    let differs = s
        .train
        .task_options
        .reconcile_dataset(&s.train.task)
        .with_context(|| {
            format!(
                "{} was trained on MNIST: pass --data (or L2O_DATA) to find its files",
                path.display()
            )
        })?;
    if let Some(w) = differs {
        anyhow::bail!("{}: {w}; not rewritten", path.display());
    }
    save(path, &s)?;
    let r = load(path)?;
    let after = (phi_sha256(&r.phi), phi_sha256(&r.best_phi));
    anyhow::ensure!(
        before == after,
        "{}: φ changed while rewriting (phi_sha256 {} → {}, best {} → {})",
        path.display(),
        before.0,
        after.0,
        before.1,
        after.1
    );
    println!(
        "{}: phi_sha256 {} best_phi_sha256 {} (unchanged)",
        path.display(),
        after.0,
        after.1
    );
    Ok(())
}

fn run_command(cli: &Cli) -> Result<()> {
    match &cli.cmd {
        Cmd::Info { dev } => info(dev),
        Cmd::Upgrade { checkpoint, data } => upgrade(checkpoint, data.as_deref()),
        Cmd::Inspect { checkpoint } => l2o_meta::checkpoint::inspect(checkpoint).map(|lines| {
            for (k, v) in lines {
                println!("{k}: {v}");
            }
        }),
        Cmd::Run {
            dev,
            task,
            optimizer,
            lr,
            tune,
            grid,
            line_search,
            history,
            direction,
            steps,
            eps_g,
            out,
        } => {
            let tune_grid = if *tune { Some(grid.as_str()) } else { None };
            run_cmd(
                dev,
                task,
                optimizer,
                *lr,
                tune_grid,
                line_search,
                *history,
                direction,
                *steps,
                *eps_g,
                out,
            )
        }
        Cmd::Tune {
            dev,
            task,
            optimizer,
            grid,
            steps,
            out,
        } => tune_cmd(dev, task, optimizer, grid, *steps, out),
        Cmd::Train { dev, args } => train::train_cmd(dev, args),
        Cmd::Autotune {
            dev,
            families,
            quick,
            dry_run,
            data,
        } => autotune_cmd(dev, families, *quick, *dry_run, data.as_deref()),
        Cmd::Eval { dev, args } => eval::eval_cmd(dev, args),
        Cmd::Bench {
            dev,
            sizes,
            batches,
            markdown,
            meta,
            mlp,
            data,
            policy,
            hlstm,
            host,
            lbfgs,
        } => {
            // Each benchmark's own shapes (those of BENCHMARKS.md): the kernel grid's n = 10⁶ × B = 256 does not
            // fit the software adapter's 128 MiB bindings for the learned optimizers' trajectory stores.
            let (default_sizes, default_batches) = if *lbfgs {
                ("100,1000", "256")
            } else if *hlstm {
                ("50,1000", "32")
            } else if *policy {
                ("100,1000", "1,16")
            } else if *mlp {
                ("128", "1,16")
            } else {
                ("1000,100000,1000000", "1,16,256")
            };
            let sizes = sizes.as_deref().unwrap_or(default_sizes);
            let batches = batches.as_deref().unwrap_or(default_batches);
            if *lbfgs {
                grid_bench_cmd(dev, sizes, batches, markdown.as_ref(), lbfgs_table)
            } else if *host {
                grid_bench_cmd(dev, sizes, batches, markdown.as_ref(), host_table)
            } else if *hlstm {
                hlstm_bench_cmd(dev, sizes, batches, markdown.as_ref())
            } else if *policy {
                grid_bench_cmd(dev, sizes, batches, markdown.as_ref(), policy_table)
            } else if *mlp {
                mlp_bench_cmd(
                    dev,
                    sizes,
                    batches,
                    data.as_deref(),
                    markdown.as_ref(),
                )
            } else if *meta {
                meta_bench_cmd(dev, sizes, batches, markdown.as_ref())
            } else {
                bench_cmd(dev, sizes, batches, markdown.as_ref())
            }
        }
    }
}
