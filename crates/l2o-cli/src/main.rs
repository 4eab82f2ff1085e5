//! `l2o`: the command-line front end (depends on every layer; nothing depends on it). `l2o info | run | tune |
//! train | eval | bench | autotune | inspect`; progress on stderr, results in --out.

mod args;
mod baselines;
mod cluster;
mod eval;
mod held_out;
mod plot;
mod report;
mod train;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use l2o_engine::{Context, ContextOptions, Precision};
use l2o_optim::tune::{log_grid, tune};
use l2o_optim::{LbfgsConfig, LineSearch, RunOptions, make_optimizer, parse_kind, run};
use l2o_tasks::make_task;

#[derive(Parser)]
#[command(name = "l2o", version, about = "GPU engine for learned optimizers (wgpu/WGSL)", long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct DeviceArgs {
    /// Backend(s): vulkan, metal, dx12, gl (default: L2O_BACKEND or all)
    #[arg(long, global = true)]
    backend: Option<String>,
    /// Pick the adapter whose name contains this (default: L2O_ADAPTER or the best GPU, else software)
    #[arg(long, global = true)]
    adapter: Option<String>,
    /// Arithmetic on the device: f32; f64 (an error where the adapter lacks SHADER_F64); or best (f64 where the
    /// adapter has it, else f32)
    #[arg(long, global = true, default_value = "f32")]
    precision: String,
}

impl DeviceArgs {
    /// The options with `--precision` as given (`best`: f32 here; [`DeviceArgs::context`] resolves it).
    fn options(&self) -> Result<ContextOptions> {
        let best = self.precision.eq_ignore_ascii_case("best");
        Ok(ContextOptions {
            backend: self.backend.clone(),
            adapter: self.adapter.clone(),
            precision: if best {
                Precision::F32
            } else {
                self.precision
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--precision: {e:#}, or best"))?
            },
            kernels: None,
            local_rank: cluster::local_rank(),
        })
    }

    /// [`DeviceArgs::context`], with the `device: …` line every command prints first (on stderr).
    fn open(&self) -> Result<Context> {
        let ctx = self.context()?;
        // one write per line: the ranks of a distributed run share stderr
        let line = format!(
            "{}device: {} — {}\n",
            cluster::prefix(),
            ctx.describe(),
            ctx.precision()
        );
        eprint!("{line}");
        Ok(ctx)
    }

    fn context(&self) -> Result<Context> {
        let o = self.options()?;
        if self.precision.eq_ignore_ascii_case("best") {
            Context::new_best_precision(&o)
        } else {
            Context::new(&o)
        }
    }
}

#[derive(Args, Clone)]
struct TaskArgs {
    /// Optimizee: quadratic, quadratic-cond, quadratic-cond-rotated, rosenbrock, logistic, mnist, or several
    /// joined by '+' (a mixture: the batch split into one block per family)
    #[arg(long, default_value = "quadratic")]
    task: String,
    /// Dimension n of each problem
    #[arg(long, default_value_t = 10)]
    dim: usize,
    /// Number of independent problems B run at once
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Seed of the problem sample (same seed + same adapter ⇒ same numbers)
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Subcommand)]
enum Cmd {
    /// List adapters, the one chosen and why, f64 support and key limits
    Info {
        #[command(flatten)]
        dev: DeviceArgs,
    },
    /// Run optimizers on a batch of problems; write per-step CSV and an SVG plot
    Run {
        #[command(flatten)]
        dev: DeviceArgs,
        #[command(flatten)]
        task: TaskArgs,
        /// Comma-separated optimizers: sgd, momentum, nesterov, rmsprop, adam, adagrad, lbfgs; a first-order
        /// method may carry its learning rate as NAME:LR (e.g. adam:0.1)
        #[arg(long, default_value = "lbfgs")]
        optimizer: String,
        /// Learning rate of first-order methods given without one
        #[arg(long)]
        lr: Option<f64>,
        /// Tune the learning rate of first-order methods given without one on a separate training sample
        /// (seed + 1000000) with the grid of --grid before the run
        #[arg(long)]
        tune: bool,
        /// Tuning grid {1,3}×10^j for j in LO..=HI
        #[arg(long, default_value = "-4..0", allow_hyphen_values = true)]
        grid: String,
        /// L-BFGS step-size rule: constant, armijo, wolfe
        #[arg(long, default_value = "wolfe")]
        line_search: String,
        /// L-BFGS history m
        #[arg(long, default_value_t = 5)]
        history: usize,
        /// L-BFGS schedule: auto (fused for n ≤ 2048, else gram), fused (a whole line-search round in one
        /// dispatch, one thread per problem), two-loop (the recursion on the vectors) or gram (the same
        /// recursion on the Gram entries of [s, y, g]: 2 dispatches for the direction whatever m); all run the
        /// same algorithm
        #[arg(long, default_value = "auto")]
        direction: String,
        /// Iterations
        #[arg(long, default_value_t = 100)]
        steps: usize,
        /// Freeze a problem once ‖∇f‖ < eps (0: never)
        #[arg(long, default_value_t = 0.0)]
        eps_g: f64,
        /// Output directory for CSV and SVG
        #[arg(long, default_value = "out")]
        out: PathBuf,
    },
    /// Tune the learning rate of first-order methods by grid search on a training sample of problems
    Tune {
        #[command(flatten)]
        dev: DeviceArgs,
        #[command(flatten)]
        task: TaskArgs,
        /// Comma-separated first-order methods
        #[arg(long, default_value = "sgd,nesterov,rmsprop,adam")]
        optimizer: String,
        /// Grid {1,3}×10^j for j in LO..=HI, as LO..HI
        #[arg(long, default_value = "-4..0", allow_hyphen_values = true)]
        grid: String,
        #[arg(long, default_value_t = 100)]
        steps: usize,
        #[arg(long, default_value = "out")]
        out: PathBuf,
    },
    /// Meta-train a learned optimizer (the L2L LSTM) by truncated BPTT; writes a checkpoint, train.csv, train.svg
    Train {
        #[command(flatten)]
        dev: DeviceArgs,
        #[command(flatten)]
        args: args::TrainArgs,
    },
    /// Evaluate a trained checkpoint on held-out problems against tuned baselines (table + SVG)
    Eval {
        #[command(flatten)]
        dev: DeviceArgs,
        #[command(flatten)]
        args: args::EvalArgs,
    },
    /// Kernel throughput on the device against the f64 CPU oracle, measured side by side
    Bench {
        #[command(flatten)]
        dev: DeviceArgs,
        /// Comma-separated n values [default: 1000,100000,1000000; with --lbfgs and --policy: 100,1000; with --hlstm:
        /// 50,1000]; with --mlp: images per network M [default: 128]
        #[arg(long)]
        sizes: Option<String>,
        /// Comma-separated batch sizes [default: 1,16,256; with --lbfgs: 256; with --hlstm: 32; with --policy: 1,16]
        #[arg(long)]
        batches: Option<String>,
        /// Write the table as Markdown to this file too
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Benchmark L2L meta-training throughput (coordinate-steps/s, device vs f64 CPU reference) instead
        #[arg(long)]
        meta: bool,
        /// Benchmark the MNIST MLP kernels (GFLOP/s of forward + backward, device vs f64 oracle) instead;
        /// --batches are numbers of networks
        #[arg(long)]
        mlp: bool,
        /// Directory of the MNIST files for --mlp
        #[arg(long)]
        data: Option<PathBuf>,
        /// Benchmark L-BFGS-π meta-gradients (s per outer step of K = 50, device vs f64 CPU reference) instead
        #[arg(long)]
        policy: bool,
        /// Benchmark the Hilbert LSTM (meta-training and inference s per step, device vs f64 CPU reference)
        /// instead
        #[arg(long)]
        hlstm: bool,
        /// Benchmark a task evaluated on the host (a closure, as the Python package's tasks are) against the
        /// built-in task it copies: ms per evaluation and the host step's overhead
        #[arg(long)]
        host: bool,
        /// Benchmark batched L-BFGS (strong Wolfe, m = 5, 200 iterations on the extended Rosenbrock task) with
        /// each direction against the f64 CPU reference: problem-iterations/s and dispatches per iteration
        #[arg(long)]
        lbfgs: bool,
    },
    /// What a checkpoint holds: kind, architecture, training configuration and task options, epochs trained,
    /// best epoch and validation loss, format version, and SHA-256 digests of latest and best φ (`phi_sha256:`,
    /// `best_phi_sha256:` lines, to compare runs). Needs no device.
    Inspect {
        /// The checkpoint (checkpoint.l2o of `l2o train`)
        checkpoint: PathBuf,
    },
    /// Rewrite a checkpoint in place in the current format, φ and every number unchanged: drops the data folder
    /// that checkpoints of earlier versions stored in their task options and, for a checkpoint trained on
    /// MNIST, records the names and SHA-256 of the four IDX files (from --data / L2O_DATA) so that `l2o eval`
    /// can warn when given another MNIST. Prints phi_sha256 and best_phi_sha256 before and after. No device.
    Upgrade {
        /// The checkpoint to rewrite
        checkpoint: PathBuf,
        /// Directory of the MNIST IDX files the checkpoint was trained on (default: L2O_DATA)
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Time every variant of the kernel families on this adapter and cache the fastest (L2O_CACHE_DIR, else
    /// ~/.cache/l2o): later runs on this adapter use the cached choice; L2O_KERNELS overrides it
    Autotune {
        #[command(flatten)]
        dev: DeviceArgs,
        /// Comma-separated families: reduce, lincomb, mlp, lstm
        #[arg(long, default_value = "reduce,lincomb,mlp,lstm")]
        families: String,
        /// Fewer candidates and rounds (about a minute on the software adapter)
        #[arg(long)]
        quick: bool,
        /// Time and print, but do not write the cache
        #[arg(long)]
        dry_run: bool,
        /// Directory of the MNIST files (for the mlp family)
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

fn autotune_cmd(
    dev: &DeviceArgs,
    families: &str,
    quick: bool,
    dry: bool,
    data: Option<&std::path::Path>,
) -> Result<()> {
    let fams: Vec<String> = families
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let probe = dev.context()?;
    let base = ContextOptions {
        precision: probe.precision(),
        ..dev.options()?
    };
    eprintln!("device: {} — {}", probe.describe(), probe.precision());
    drop(probe);
    let (rows, notes) = l2o_bench::autotune::autotune(&base, &fams, quick, !dry, data, &mut |t| {
        println!("{} ({}):", t.family, t.workload);
        for (name, s) in &t.times {
            println!(
                "  {name:<28} {:>10.1} µs{}",
                s * 1e6,
                if name == t.best() {
                    "  ← fastest"
                } else {
                    ""
                }
            );
        }
    })?;
    for n in notes {
        println!("{n}");
    }
    if rows.is_empty() {
        bail!("nothing was tuned");
    }
    Ok(())
}

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

fn info(dev: &DeviceArgs) -> Result<()> {
    let adapters = Context::adapters(dev.backend.as_deref())?;
    println!("adapters seen:");
    if adapters.is_empty() {
        println!("  (none)");
    }
    for a in &adapters {
        println!(
            "  {} [{} / {}] driver: {} f64: {}",
            a.name,
            a.backend,
            a.device_type,
            a.driver,
            if a.f64 { "yes" } else { "no" }
        );
    }
    let ctx = dev.context()?;
    let l = &ctx.limits;
    println!("chosen: {}", ctx.describe());
    println!("  why: {}", ctx.reason);
    println!(
        "  precision: {} (f64 supported: {})",
        ctx.precision(),
        if ctx.supports_f64() { "yes" } else { "no" }
    );
    println!(
        "  max_storage_buffer_binding_size: {} MiB",
        l.max_storage_buffer_binding_size / (1 << 20)
    );
    println!("  max_buffer_size: {} MiB", l.max_buffer_size / (1 << 20));
    println!(
        "  max_compute_workgroups_per_dimension: {}",
        l.max_compute_workgroups_per_dimension
    );
    println!(
        "  max_compute_invocations_per_workgroup: {}",
        l.max_compute_invocations_per_workgroup
    );
    println!(
        "  max_compute_workgroup_storage_size: {} KiB",
        l.max_compute_workgroup_storage_size / 1024
    );
    println!(
        "  max_storage_buffers_per_shader_stage: {}",
        l.max_storage_buffers_per_shader_stage
    );
    Ok(())
}

/// "-4..0" → (-4, 0)
fn parse_grid(grid: &str) -> Result<Vec<f64>> {
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
fn run_cmd(
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

fn tune_cmd(
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

/// The end every benchmark command shares: the text table, the skipped configurations, and the Markdown file
/// when asked for.
fn report_bench(
    table: &str,
    skipped: &[String],
    markdown: Option<(&PathBuf, String)>,
) -> Result<()> {
    println!("{table}");
    for s in skipped {
        println!("skipped: {s}");
    }
    if let Some((p, md)) = markdown {
        std::fs::write(p, md).with_context(|| format!("writing {}", p.display()))?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

fn bench_cmd(
    dev: &DeviceArgs,
    sizes: &str,
    batches: &str,
    markdown: Option<&PathBuf>,
) -> Result<()> {
    let ctx = dev.open()?;
    let cfg = l2o_bench::bench::BenchConfig {
        sizes: list(sizes, "size")?,
        batches: list(batches, "batch")?,
        ..Default::default()
    };
    let (rows, skipped) = l2o_bench::bench::run_kernel_bench(&ctx, &cfg, &mut |r| {
        eprintln!("  {} n={} B={} done", r.kernel, r.n, r.batch)
    })?;
    let md = markdown.map(|p| (p, l2o_bench::bench::to_markdown(&rows, &ctx.describe())));
    report_bench(&l2o_bench::bench::format_table(&rows), &skipped, md)
}

fn mlp_bench_cmd(
    dev: &DeviceArgs,
    sizes: &str,
    batches: &str,
    data: Option<&std::path::Path>,
    markdown: Option<&PathBuf>,
) -> Result<()> {
    let ctx = dev.open()?;
    let data = std::sync::Arc::new(l2o_tasks::idx::load_mnist(&l2o_tasks::idx::data_dir(
        data,
    )?)?);
    let archs = vec![vec![20], vec![40], vec![20, 20]];
    let rows = l2o_bench::mlp_bench::run_mlp_bench(
        &ctx,
        data,
        &archs,
        &list::<usize>(batches, "batch")?,
        &list::<usize>(sizes, "images per network")?,
    )?;
    let md = markdown.map(|p| {
        let table = l2o_bench::mlp_bench::format_mlp_table(&rows, true);
        (
            p,
            format!(
                "Adapter: `{}`; minibatch M = 128 images per network.\n\n{table}",
                ctx.describe()
            ),
        )
    });
    report_bench(
        &l2o_bench::mlp_bench::format_mlp_table(&rows, false),
        &[],
        md,
    )
}

fn hlstm_bench_cmd(
    dev: &DeviceArgs,
    sizes: &str,
    batches: &str,
    markdown: Option<&PathBuf>,
) -> Result<()> {
    let ctx = dev.open()?;
    let mut skipped = vec![];
    let rows = l2o_bench::hlstm_bench::run_hlstm_bench(
        &ctx,
        &list::<usize>(sizes, "size")?,
        &list::<usize>(batches, "batch")?,
        3,
        &mut |n, b, e| skipped.push(format!("n = {n}, B = {b}: {e:#}")),
    )?;
    skipped.dedup(); // both cells refuse the same size
    let md = l2o_bench::hlstm_bench::hlstm_markdown(&rows, &ctx.describe());
    let file = markdown.map(|p| {
        let mut m = md.clone();
        for s in &skipped {
            m.push_str(&format!("\nskipped: {s}"));
        }
        (p, m)
    });
    report_bench(&md, &skipped, file)
}

/// A benchmark over `--sizes` × `--batches` that returns its Markdown table: open the device, run it, print the
/// table (and write it to `--markdown`).
fn grid_bench_cmd(
    dev: &DeviceArgs,
    sizes: &str,
    batches: &str,
    markdown: Option<&PathBuf>,
    bench: impl FnOnce(&Context, &[usize], &[usize]) -> Result<String>,
) -> Result<()> {
    let ctx = dev.open()?;
    let md = bench(
        &ctx,
        &list::<usize>(sizes, "size")?,
        &list::<usize>(batches, "batch")?,
    )?;
    report_bench(&md, &[], markdown.map(|p| (p, md.clone())))
}

/// `l2o bench --host`: a host-computed task against the built-in task it copies.
fn host_table(ctx: &Context, sizes: &[usize], batches: &[usize]) -> Result<String> {
    let rows = l2o_bench::host_bench::run_host_bench(ctx, sizes, batches, 50, 3)?;
    Ok(l2o_bench::host_bench::host_markdown(&rows, &ctx.describe()))
}

/// `l2o bench --lbfgs`: batched L-BFGS with each direction against the f64 CPU reference.
fn lbfgs_table(ctx: &Context, sizes: &[usize], batches: &[usize]) -> Result<String> {
    let rows = l2o_bench::lbfgs_bench::run_lbfgs_bench(ctx, "rosenbrock", sizes, batches, 200)?;
    Ok(l2o_bench::lbfgs_bench::lbfgs_markdown(
        &rows,
        &ctx.describe(),
        "rosenbrock",
    ))
}

/// `l2o bench --policy`: L-BFGS-π meta-gradients against the f64 CPU reference.
fn policy_table(ctx: &Context, sizes: &[usize], batches: &[usize]) -> Result<String> {
    let rows = l2o_bench::policy_bench::run_policy_bench(ctx, sizes, batches, 50, 2)?;
    Ok(l2o_bench::policy_bench::policy_markdown(
        &rows,
        &ctx.describe(),
    ))
}

fn meta_bench_cmd(
    dev: &DeviceArgs,
    sizes: &str,
    batches: &str,
    markdown: Option<&PathBuf>,
) -> Result<()> {
    let ctx = dev.open()?;
    if cluster::is_mpi() {
        return dist_bench_cmd(&ctx, markdown);
    }
    let cfg = l2o_bench::meta_bench::MetaBenchConfig {
        sizes: list(sizes, "size")?,
        batches: list(batches, "batch")?,
        ..Default::default()
    };
    let (rows, skipped) = l2o_bench::meta_bench::run_meta_bench(&ctx, &cfg, &mut |r| {
        eprintln!(
            "  n={} B={}: {:.3e} coordinate-steps/s on the device",
            r.n, r.batch, r.gpu_coord_steps_per_s
        )
    })?;
    let md = markdown.map(|p| {
        (
            p,
            l2o_bench::meta_bench::meta_markdown(&rows, &ctx.describe()),
        )
    });
    report_bench(
        &l2o_bench::meta_bench::format_meta_table(&rows),
        &skipped,
        md,
    )
}

/// `mpirun -np P l2o bench --meta`: the distributed meta-training loop of every learned optimizer, P shards on P
/// ranks, with its collectives timed; rank 0 reports.
fn dist_bench_cmd(ctx: &Context, markdown: Option<&PathBuf>) -> Result<()> {
    let g = cluster::group();
    let rows = l2o_bench::dist_bench::run_dist_bench(ctx, g.as_ref(), 3, &mut |r| {
        if g.is_root() {
            eprintln!(
                "  {}: epoch {:.3} s, collective {:.3} ms per unroll",
                r.optimizer,
                r.epoch_s,
                1e3 * r.collective_s_per_unroll
            )
        }
    })?;
    if !g.is_root() {
        return Ok(());
    }
    let md = l2o_bench::dist_bench::dist_markdown(&rows, &ctx.describe());
    report_bench(&md, &[], markdown.map(|p| (p, md.clone())))
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
