//! The command line: the subcommands and the device and task flags they share (clap).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use l2o_engine::{Context, ContextOptions, Precision};

use crate::{args, cluster};

#[derive(Parser)]
#[command(name = "l2o", version, about = "GPU engine for learned optimizers (wgpu/WGSL)", long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Args, Clone)]
pub(crate) struct DeviceArgs {
    /// Backend(s): vulkan, metal, dx12, gl (default: L2O_BACKEND or all)
    #[arg(long, global = true)]
    pub(crate) backend: Option<String>,
    /// Pick the adapter whose name contains this (default: L2O_ADAPTER or the best GPU, else software)
    #[arg(long, global = true)]
    pub(crate) adapter: Option<String>,
    /// Arithmetic on the device: f32; f64 (an error where the adapter lacks SHADER_F64); or best (f64 where the
    /// adapter has it, else f32)
    #[arg(long, global = true, default_value = "f32")]
    pub(crate) precision: String,
}

impl DeviceArgs {
    /// The options with `--precision` as given (`best`: f32 here; [`DeviceArgs::context`] resolves it).
    pub(crate) fn options(&self) -> Result<ContextOptions> {
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
    pub(crate) fn open(&self) -> Result<Context> {
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

    pub(crate) fn context(&self) -> Result<Context> {
        let o = self.options()?;
        if self.precision.eq_ignore_ascii_case("best") {
            Context::new_best_precision(&o)
        } else {
            Context::new(&o)
        }
    }
}

#[derive(Args, Clone)]
pub(crate) struct TaskArgs {
    /// Optimizee: quadratic, quadratic-cond, quadratic-cond-rotated, rosenbrock, logistic, mnist, or several
    /// joined by '+' (a mixture: the batch split into one block per family)
    #[arg(long, default_value = "quadratic")]
    pub(crate) task: String,
    /// Dimension n of each problem
    #[arg(long, default_value_t = 10)]
    pub(crate) dim: usize,
    /// Number of independent problems B run at once
    #[arg(long, default_value_t = 128)]
    pub(crate) batch: usize,
    /// Seed of the problem sample (same seed + same adapter ⇒ same numbers)
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
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
