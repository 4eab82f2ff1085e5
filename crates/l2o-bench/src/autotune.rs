//! The kernel-variant autotuner behind `l2o autotune`: for each family with variants ([`l2o_engine::variants`]),
//! time every candidate on this adapter on a representative workload and store the fastest in the on-disk
//! cache, where every later run on this adapter finds it. Timing happens here and only here: a training or
//! evaluation run never chooses by timing, so the same seed on the same adapter gives the same bits.
//!
//! Candidates are timed with a fresh context each (the choice is made per context), in alternation, best of
//! `rounds` (the software adapter's timings wander by ±30 % from minute to minute; alternating candidates and
//! taking the best of several rounds keeps one slow minute from deciding).

use std::time::Instant;

use anyhow::{Result, bail};
use l2o_engine::kernels::{lincomb::Layout, reduce::Reduction};
use l2o_engine::{Context, ContextOptions};
use l2o_meta::l2l::device::{L2lTrainer, LstmKernels};
use l2o_meta::l2l::kernels::LstmVariant;
use l2o_meta::l2l::{self, LstmConfig};

use crate::bench::KernelCase;

/// Families the autotuner knows, in the order it tunes them.
pub const FAMILIES: [&str; 4] = ["reduce", "lincomb", "mlp", "lstm"];

/// One family's result.
#[derive(Clone, Debug)]
pub struct Tuned {
    pub family: String,
    /// (candidate, seconds of its workload), fastest first.
    pub times: Vec<(String, f64)>,
    pub workload: String,
}

impl Tuned {
    pub fn best(&self) -> &str {
        &self.times[0].0
    }
}

/// A context like `base`'s options but with `override` (`family=variant`).
fn ctx_with(base: &ContextOptions, kernels: &str) -> Result<Context> {
    Context::new(&ContextOptions {
        kernels: Some(kernels.to_string()),
        ..base.clone()
    })
}

/// Time `cases` (each a prepared workload on its own context) in alternation, best of `rounds`.
fn race(
    names: &[String],
    mut run: impl FnMut(usize) -> Result<f64>,
    rounds: usize,
) -> Result<Vec<(String, f64)>> {
    let mut best = vec![f64::INFINITY; names.len()];
    for _ in 0..rounds.max(1) {
        for (i, b) in best.iter_mut().enumerate() {
            *b = b.min(run(i)?);
        }
    }
    let mut v: Vec<(String, f64)> = names.iter().cloned().zip(best).collect();
    v.sort_by(|a, b| a.1.total_cmp(&b.1));
    Ok(v)
}

/// The streaming families: the sum over a few (kernel, n, B) cases of the device time per call.
fn tune_streaming(
    base: &ContextOptions,
    family: &str,
    names: &[&str],
    kernels: &[&str],
    rounds: usize,
) -> Result<Tuned> {
    let cases = [(1_000usize, 16usize), (100_000, 1), (100_000, 16)];
    let mut prepared = vec![];
    for name in names {
        let ctx = ctx_with(base, &format!("{family}={name}"))?;
        let mut cs = vec![];
        for k in kernels {
            for &(n, b) in &cases {
                cs.push(KernelCase::prepare(&ctx, k, n, b)?);
            }
        }
        prepared.push((ctx, cs));
    }
    let names_s: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let times = race(
        &names_s,
        |i| {
            let (ctx, cs) = &prepared[i];
            let mut t = 0.0;
            for c in cs {
                t += c.time_gpu(ctx, 0)?;
            }
            Ok(t)
        },
        rounds,
    )?;
    Ok(Tuned {
        family: family.into(),
        times,
        workload: format!(
            "{} at (n, B) ∈ {{(1e3, 16), (1e5, 1), (1e5, 16)}}, sum of µs per call",
            kernels.join(" + ")
        ),
    })
}

/// The MNIST MLP's loss and gradient (hidden 20, B = 4): needs the MNIST files.
fn tune_mlp(base: &ContextOptions, data: Option<&std::path::Path>, rounds: usize) -> Result<Tuned> {
    use l2o_tasks::{TaskOptions, build_task};
    let mut prepared = vec![];
    for name in l2o_tasks::mlp::GemmVariant::NAMES {
        let ctx = ctx_with(base, &format!("mlp={name}"))?;
        let opts = TaskOptions {
            data: data.map(|p| p.display().to_string()),
            ..TaskOptions::default()
        };
        let task = build_task(&ctx, "mnist", 0, &opts, 4, 1, false)?;
        let n = task.dim();
        let theta = ctx.upload("theta", &task.initial_point())?;
        let grad = ctx.zeros("grad", 4 * n)?;
        let out = ctx.zeros("f", 4)?;
        let d = task.loss_and_grad(
            &ctx,
            theta.view(n),
            grad.view(n),
            l2o_engine::ScalarOut {
                buf: &out,
                stride: 1,
                col: 0,
            },
        )?;
        ctx.submit(&d)?;
        ctx.wait()?;
        prepared.push((ctx, d, theta, grad, out));
    }
    let names: Vec<String> = l2o_tasks::mlp::GemmVariant::NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let times = race(
        &names,
        |i| {
            let (ctx, d, ..) = &prepared[i];
            let t0 = Instant::now();
            for _ in 0..5 {
                ctx.submit(d)?;
            }
            ctx.wait()?;
            Ok(t0.elapsed().as_secs_f64() / 5.0)
        },
        rounds,
    )?;
    Ok(Tuned {
        family: "mlp".into(),
        times,
        workload: "MNIST 1×20 sigmoid MLP, 4 networks × 128 images: s per loss and gradient".into(),
    })
}

/// The L2L kernels: one unroll (T = 20) of 10-d quadratics, B = 128 (the `bench --meta` case), per set.
fn tune_lstm(base: &ContextOptions, quick: bool, rounds: usize) -> Result<Tuned> {
    let cfg = LstmConfig::default();
    let mut sets = vec![LstmKernels::Loop];
    let shapes: &[(usize, usize, usize)] = if quick {
        &[(128, 64, 2), (64, 64, 2)]
    } else {
        &[
            (64, 64, 2),
            (128, 64, 2),
            (256, 64, 2),
            (128, 32, 4),
            (128, 128, 1),
            (128, 64, 4),
        ]
    };
    for &(wg, block, steps) in shapes {
        sets.push(LstmKernels::Unrolled(LstmVariant { wg, block, steps }));
    }
    let (n, batch, t) = (10, 128, 20);
    let weights = l2l::unit_weights(t);
    let mut prepared = vec![];
    let mut names = vec![];
    for k in sets {
        let ctx = Context::new(base)?;
        if !k.fits(&ctx, &cfg) {
            continue;
        }
        let mut tr = L2lTrainer::with_kernels(&ctx, &cfg, n, batch, t, &weights, k)?;
        let task = l2o_tasks::make_task(&ctx, "quadratic", n, batch, 1)?;
        tr.bind(&ctx, task.as_ref())?;
        let phi = cfg.init(1);
        tr.run(&ctx, &phi)?; // compile
        names.push(k.name());
        prepared.push((ctx, tr, phi, task));
    }
    let times = race(
        &names,
        |i| {
            let (ctx, tr, phi, _) = &prepared[i];
            let t0 = Instant::now();
            tr.run(ctx, phi)?;
            Ok(t0.elapsed().as_secs_f64())
        },
        rounds,
    )?;
    Ok(Tuned {
        family: "lstm".into(),
        times,
        workload: "one L2L unroll (T = 20, 10-d quadratics, B = 128, H = 20): s".into(),
    })
}

/// Tune `families` (a subset of [`FAMILIES`]) on the adapter of `base`; with `save`, store each winner in the
/// cache. `data`: the MNIST directory for `mlp` (skipped, with a note, when the files are missing).
pub fn autotune(
    base: &ContextOptions,
    families: &[String],
    quick: bool,
    save: bool,
    data: Option<&std::path::Path>,
    progress: &mut dyn FnMut(&Tuned),
) -> Result<(Vec<Tuned>, Vec<String>)> {
    let rounds = if quick { 2 } else { 5 };
    let probe = Context::new(base)?;
    let mut out = vec![];
    let mut notes = vec![];
    for f in families {
        let r = match f.as_str() {
            "reduce" => tune_streaming(
                base,
                "reduce",
                &Reduction::NAMES,
                &["dot", "gram4", "two-loop"],
                rounds,
            ),
            "lincomb" => tune_streaming(base, "lincomb", &Layout::NAMES, &["lincomb"], rounds),
            "mlp" => match tune_mlp(base, data, rounds) {
                Err(e)
                    if format!("{e:#}").contains("MNIST") || format!("{e:#}").contains("mnist") =>
                {
                    notes.push(format!("mlp: skipped ({e:#})"));
                    continue;
                }
                r => r,
            },
            "lstm" => tune_lstm(base, quick, rounds),
            other => bail!(
                "unknown kernel family {other:?}: autotune knows {}",
                FAMILIES.join(", ")
            ),
        }?;
        if save {
            // streaming and MLP variants are per precision; the L2L set is chosen per architecture at run time
            let key = if r.family == "lstm" {
                "lstm".to_string()
            } else {
                format!("{}:{}", r.family, probe.precision())
            };
            let path = l2o_engine::variants::save_choice(&probe.info, &key, r.best())?;
            notes.push(format!("{key} = {} saved in {}", r.best(), path.display()));
        }
        progress(&r);
        out.push(r);
    }
    Ok((out, notes))
}
