//! `l2o eval` of a Hilbert LSTM checkpoint (docs/hlstm.md §5): the trained HLSTM, its initialisation, tuned
//! first-order methods, L-BFGS with constant step / backtracking / strong Wolfe and, with `--l2l`, an L2L LSTM,
//! on held-out problems at each dimension of `--dims`, judged at budgets of gradient evaluations by
//! log10(f_K / f_0). Writes per dimension a table, a progress plot and CSVs, and `summary.md` over all.

use std::fmt::Write as _;

use anyhow::{Context as _, Result, bail};
use l2o_meta::hlstm::HlstmConfig;
use l2o_meta::hlstm::device::HlstmOptimizer;
use l2o_meta::l2l::optimizer::LstmOptimizer;
use l2o_meta::state::TrainState;
use l2o_optim::{Optimizer, RunOptions, Trace};

use crate::args::EvalArgs;
use crate::baselines::{Competitors, fixed_rates};
use crate::{DeviceArgs, bar, cluster, list, parse_grid, plot, report};

/// f of problem b at the last iterate reached within `k` gradient evaluations (line searches spend several per
/// iteration; every other method one).
pub fn f_at_budget(t: &Trace, b: usize, k: usize) -> f64 {
    let e0 = t.evaluations[0][b];
    let mut idx = 0;
    for s in 0..=t.steps() {
        if t.evaluations[s][b] - e0 <= k as u64 {
            idx = s;
        } else {
            break;
        }
    }
    t.f[idx][b]
}

/// log10(f_K / f_0) per problem (floored at 1e-20; a non-finite f counts as +∞, i.e. diverged).
pub fn progress_at(t: &Trace, k: usize) -> Vec<f64> {
    (0..t.batch)
        .map(|b| {
            let (f0, f) = (t.f[0][b], f_at_budget(t, b, k));
            if f.is_finite() && f0 > 0.0 {
                (f / f0).max(1e-20).log10()
            } else {
                f64::INFINITY
            }
        })
        .collect()
}

/// Mean and median of the finite values, and how many were not finite.
fn stats(v: &[f64]) -> (f64, f64, usize) {
    let mut f: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    let bad = v.len() - f.len();
    if f.is_empty() {
        return (f64::NAN, f64::NAN, bad);
    }
    f.sort_by(|a, b| a.total_cmp(b));
    let mean = f.iter().sum::<f64>() / f.len() as f64;
    let med = if f.len() % 2 == 1 {
        f[f.len() / 2]
    } else {
        0.5 * (f[f.len() / 2 - 1] + f[f.len() / 2])
    };
    (mean, med, bad)
}

/// Median and quartiles of f/f_0 at every evaluation count 0..=kmax (for the progress plot).
fn progress_curve(t: &Trace, kmax: usize) -> Vec<(f64, f64, f64, f64)> {
    (0..=kmax)
        .filter_map(|k| {
            let r: Vec<f64> = (0..t.batch)
                .map(|b| f_at_budget(t, b, k) / t.f[0][b])
                .collect();
            let s = l2o_optim::summarize(&r);
            (s.median.is_finite() && s.median > 0.0)
                .then(|| (k as f64, s.median, s.q1.max(s.median * 1e-12), s.q3))
        })
        .collect()
}

pub fn hlstm_eval(dev: &DeviceArgs, a: &EvalArgs, st: &TrainState, cfg: HlstmConfig) -> Result<()> {
    let task_name = a.task.clone().unwrap_or_else(|| st.train.task.clone());
    let dims: Vec<usize> = match &a.dims {
        Some(d) => list(d, "dimension")?,
        None => vec![a.dim.unwrap_or(st.train.dim)],
    };
    let steps = a.steps.unwrap_or(st.train.horizon);
    let budgets: Vec<usize> = match &a.budgets {
        Some(b) => list(b, "budget")?,
        None => vec![steps],
    };
    if budgets.iter().any(|&k| k == 0 || k > steps) {
        bail!("--budgets must lie in 1..={steps} (the --steps)");
    }
    let grid = parse_grid(a.grid.as_deref().unwrap_or("-6..1"))?;
    let lrs = fixed_rates(a.lr.as_deref())?;
    let names: Vec<String> = list(
        a.vs.as_deref()
            .unwrap_or("sgd,nesterov,rmsprop,adam,lbfgs-constant,lbfgs-armijo"),
        "competitor",
    )?;
    let ctx = dev.open()?;
    let root = cluster::is_root();
    if root {
        std::fs::create_dir_all(&a.out)
            .with_context(|| format!("cannot create {}", a.out.display()))?;
    }
    let opts = a.mlp.options(&st.train.task_options)?;
    let trained = st.best_epoch > 0;
    let o = RunOptions::fixed(steps);
    let init_name = if cfg.cell == 2 {
        "HLSTM init (= L-BFGS, step 1)"
    } else {
        "HLSTM init (= BB step)"
    };
    let mut summary = String::new();
    let mut rows: Vec<(String, Vec<String>)> = vec![];
    let mut head = vec![];
    for &dim in &dims {
        let test = a.test_task(&ctx, st, &task_name, dim, &opts)?;
        let out = a.out.join(format!("n{}", test.dim()));
        if root {
            std::fs::create_dir_all(&out)?;
        }
        let mut runs: Vec<(String, Trace)> = vec![];
        let mut go = |label: String, opt: &mut dyn Optimizer| -> Result<()> {
            let pb = bar(test.progress_len(steps), format!("n={dim} {label}"));
            let t = test.run(opt, &o, &mut |k| pb.set_position(k as u64))?;
            pb.finish_and_clear();
            runs.push((label, t));
            Ok(())
        };
        go(
            if trained {
                format!("HLSTM (trained, epoch {})", st.best_epoch)
            } else {
                "HLSTM (no trained φ beat its init)".into()
            },
            &mut HlstmOptimizer::new(cfg, st.best_phi.clone())?,
        )?;
        if trained {
            go(
                init_name.into(),
                &mut HlstmOptimizer::new(cfg, cfg.init(st.train.seed))?,
            )?;
        }
        let mut comp = Competitors::new(
            &ctx,
            cfg.m,
            lrs.clone(),
            grid.clone(),
            steps,
            // tuned on training problems of this dimension (first epoch's seed), never on the test set
            Box::new(|| a.tuning_task(&ctx, st, &task_name, dim, &opts)),
        );
        for name in &names {
            let mut opt = comp.make(name)?;
            go(opt.name(), opt.as_mut())?;
        }
        if let Some(p) = &a.l2l {
            go(
                format!(
                    "L2L LSTM ({})",
                    p.file_name().map_or("".into(), |f| f.to_string_lossy())
                ),
                &mut LstmOptimizer::from_checkpoint(p)?,
            )?;
        }
        // every rank holds every trace now; rank 0 reports
        if !root {
            continue;
        }
        for (label, t) in &runs {
            report::write_csv(t, &out.join(format!("{}.csv", report::slug(label))))?;
        }
        let mut md = String::from("| optimizer |");
        for k in &budgets {
            let _ = write!(md, " K = {k}: mean log10(f_K/f_0) | median | diverged |");
        }
        md.push_str("\n|---|");
        md.push_str(&"---|---|---|".repeat(budgets.len()));
        md.push('\n');
        for (label, t) in &runs {
            let _ = write!(md, "| {label} |");
            let mut cells = vec![];
            for &k in &budgets {
                let (mean, med, bad) = stats(&progress_at(t, k));
                let _ = write!(md, " {mean:.2} | {med:.2} | {bad} |");
                cells.push(if bad > 0 {
                    format!("{mean:.2} ({bad} div.)")
                } else {
                    format!("{mean:.2}")
                });
            }
            md.push('\n');
            let key = label.split("(lr=").next().unwrap_or(label).to_string();
            match rows.iter_mut().find(|r| r.0 == key) {
                Some(r) => r.1.extend(cells),
                None => {
                    let mut v = vec!["–".to_string(); head.len()];
                    v.extend(cells);
                    rows.push((key, v));
                }
            }
        }
        for k in &budgets {
            head.push(format!("n = {} K = {k}", test.dim()));
        }
        for r in rows.iter_mut() {
            r.1.resize(head.len(), "–".into());
        }
        let ours = stats(&progress_at(&runs[0].1, *budgets.last().unwrap())).0;
        let ahead = runs[1..]
            .iter()
            .filter(|(l, _)| !l.starts_with("HLSTM init"))
            .all(|(_, t)| {
                let v = stats(&progress_at(t, *budgets.last().unwrap())).0;
                !(v <= ours)
            });
        let header = format!(
            "{task_name} n={}, {} held-out problems, budget in gradient evaluations; HLSTM cell {} (m = {}, {} hidden), \
             best φ of {} (epoch {}); first-order rates tuned on the grid {:?} on {} training problems; {}\n\n",
            test.dim(),
            test.count(),
            cfg.cell,
            cfg.m,
            cfg.hidden,
            super::checkpoint_label(&a.checkpoint, st),
            st.best_epoch,
            grid,
            a.tune_batch.unwrap_or(a.batch()),
            ctx.precision()
        );
        let verdict = format!(
            "\nHLSTM ahead of every competitor (its initialisation aside) at K = {}: {}\n",
            budgets.last().unwrap(),
            if ahead { "yes" } else { "no" }
        );
        std::fs::write(out.join("eval.md"), format!("{header}{md}{verdict}"))?;
        print!("{header}{md}{verdict}");
        let _ = write!(summary, "### n = {}\n\n{header}{md}{verdict}\n", test.dim());
        let curves: Vec<_> = runs
            .iter()
            .map(|(l, t)| (l.clone(), progress_curve(t, steps)))
            .collect();
        plot::xy_plot(
            &curves,
            &format!(
                "{task_name} n={}: f/f_0 (median, IQR) vs gradient evaluations",
                test.dim()
            ),
            "gradient evaluations",
            "f / f_0",
            &out.join("progress.svg"),
        )?;
    }
    if !root {
        return Ok(());
    }
    let mut table = String::from("| optimizer |");
    for h in &head {
        let _ = write!(table, " {h} |");
    }
    table.push_str("\n|---|");
    table.push_str(&"---|".repeat(head.len()));
    table.push('\n');
    for (k, v) in &rows {
        let _ = writeln!(table, "| {k} | {} |", v.join(" | "));
    }
    let path = a.out.join("summary.md");
    std::fs::write(
        &path,
        format!("mean log10(f_K / f_0) on held-out problems ({task_name})\n\n{table}\n{summary}"),
    )?;
    eprintln!(
        "wrote {} and n*/{{eval.md,progress.svg,*.csv}}",
        path.display()
    );
    Ok(())
}
