//! `l2o eval` of an L-BFGS-π checkpoint (seed 003 §6): run the policy and its competitors on held-out
//! problems until ‖∇f‖ < eps-g or the step budget, then write the Table 1 analogue (who reaches ‖∇f‖ < ε
//! first, in iterations and in function evaluations), the I_a = ln(f̂\[a\]/f̂\[π\]) box plot, loss and gradient
//! curves and one CSV per optimizer.

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use l2o_meta::state::TrainState;
use l2o_optim::compare::{WinTie, log_ratio_index, races, win_tie_interval};
use l2o_optim::step_policy::PolicyConfig;
use l2o_optim::{Lbfgs, Optimizer, RunOptions, Trace, summarize};

use crate::args::{EvalArgs, PAPER_IMAGES, PAPER_TEST_STEPS, Protocol};
use crate::baselines::{Competitors, fixed_rates};
use crate::{DeviceArgs, bar, cluster, list, parse_grid, plot, report};

pub fn policy_eval(
    dev: &DeviceArgs,
    a: &EvalArgs,
    st: &TrainState,
    pc: PolicyConfig,
) -> Result<()> {
    let task_name = a.task.clone().unwrap_or_else(|| st.train.task.clone());
    let dim = a.dim.unwrap_or(st.train.dim);
    let paper = a.protocol == Some(Protocol::Paper);
    let steps = a
        .steps
        .unwrap_or(if paper { PAPER_TEST_STEPS } else { st.train.horizon });
    let grid = parse_grid(a.grid.as_deref().unwrap_or("-3..-1"))?;
    let lrs = fixed_rates(a.lr.as_deref())?;
    let eps: Vec<f64> = list(&a.eps, "tolerance ε")?;
    let names: Vec<String> = list(
        a.vs.as_deref()
            .unwrap_or("adam,rmsprop,lbfgs-armijo,lbfgs-constant,lbfgs-wolfe"),
        "competitor",
    )?;
    let ctx = dev.open()?;
    let root = cluster::is_root();
    if root {
        std::fs::create_dir_all(&a.out)
            .with_context(|| format!("cannot create {}", a.out.display()))?;
    }
    let opts = a.mlp.options(&st.train.task_options)?;
    if paper
        && !(task_name == "mnist"
            && opts.full_batch
            && opts.minibatch == PAPER_IMAGES
            && opts.mlp_hidden == [20])
    {
        bail!(
            "--protocol paper evaluates the 1×20 MNIST MLP on full batches of {PAPER_IMAGES} test images (Egidio et \
             al. 2021 §6); this evaluation is {task_name} with hidden {:?}, {} images{}: train on that protocol \
             (scripts/lbfgs-pi-study.sh) or drop --protocol",
            opts.mlp_hidden,
            opts.minibatch,
            if opts.full_batch { ", full batch" } else { ", fresh minibatches" }
        );
    }
    let test = a.test_task(&ctx, st, &task_name, dim, &opts)?;
    let o = RunOptions {
        steps,
        eps_g: a.eps_g,
        check_every: 10,
        lockstep: false,
    };
    let mut runs: Vec<(Trace, f64)> = vec![];
    let mut go = |opt: &mut dyn Optimizer| -> Result<()> {
        let pb = bar(test.progress_len(steps), opt.name());
        let t0 = Instant::now();
        let t = test.run(opt, &o, &mut |k| pb.set_position(k as u64))?;
        pb.finish_and_clear();
        let secs = t0.elapsed().as_secs_f64();
        if root {
            eprintln!("{}: {secs:.1} s", t.optimizer);
        }
        runs.push((t, secs));
        Ok(())
    };
    go(&mut Lbfgs::with_policy(pc, st.best_phi.clone())?)?;
    let mut comp = Competitors::new(
        &ctx,
        pc.m,
        lrs,
        grid,
        steps,
        // tuned on training problems (first epoch's seed, training images), never on the test set
        Box::new(|| a.tuning_task(&ctx, st, &task_name, dim, &opts)),
    );
    for name in &names {
        go(comp.make(name)?.as_mut())?;
    }
    if runs.len() < 2 {
        bail!("no competitors: give --vs");
    }
    // every rank holds every trace now; rank 0 reports
    if !root {
        return Ok(());
    }
    for (t, _) in &runs {
        report::write_csv(
            t,
            &a.out.join(format!("{}.csv", report::slug(&t.optimizer))),
        )?;
    }
    let md = table(&runs, &eps);
    let header = format!(
        "{task_name} n={}, {} held-out problems{}, up to {steps} steps or ‖∇f‖ < {:e}; L-BFGS-π = best φ of {} \
         (epoch {}), m = {}; {}\n\n",
        test.dim(),
        test.count(),
        if task_name == "mnist" {
            " (MNIST test images)"
        } else {
            ""
        },
        a.eps_g,
        super::checkpoint_label(&a.checkpoint, st),
        st.best_epoch,
        pc.m,
        ctx.precision()
    );
    std::fs::write(a.out.join("eval.md"), format!("{header}{md}"))?;
    print!("{header}{md}");
    let ours = &runs[0].0;
    let groups: Vec<(String, Vec<f64>)> = runs[1..]
        .iter()
        .map(|(t, _)| (t.optimizer.clone(), log_ratio_index(ours, t)))
        .collect();
    plot::box_plot(
        &groups,
        &format!(
            "I_a = ln(f̂[a] / f̂[L-BFGS-π]), {task_name} n={} ({} problems)",
            test.dim(),
            a.batch()
        ),
        "I_a  (> 0: L-BFGS-π reached a lower loss)",
        &a.out.join("index.svg"),
    )?;
    let traces: Vec<Trace> = runs.iter().map(|(t, _)| t.clone()).collect();
    let title = format!(
        "{task_name} n={}: L-BFGS-π vs competitors ({} problems)",
        test.dim(),
        a.batch()
    );
    plot::loss_plot(&traces, &title, &a.out.join("loss.svg"))?;
    plot::gnorm_plot(&traces, &title, &a.out.join("gnorm.svg"))?;
    eprintln!(
        "wrote eval.md, index.svg, loss.svg, gnorm.svg and one CSV per optimizer in {}",
        a.out.display()
    );
    Ok(())
}

/// Bootstrap replicates of the win/tie intervals (fixed seed: the same runs give the same table).
const BOOTSTRAP_REPS: usize = 2000;

/// The Table 1 analogue: per competitor and ε, L-BFGS-π's win and tie percentages counted in iterations and in
/// function evaluations, each with its 95 % percentile-bootstrap interval over the test problems
/// ([`win_tie_interval`]: resampling the networks); then per optimizer the best value f̂, the evaluations and
/// the wall-clock time, and the I_a summary.
fn table(runs: &[(Trace, f64)], eps: &[f64]) -> String {
    let ours = &runs[0].0;
    let mut s = String::from(
        "Wins (W) and ties (T) of L-BFGS-π in % of the test problems, with 95 % bootstrap intervals over the \
         problems.\n\n\
         | competitor | ε | iterations: W (%) | T (%) | evaluations: W (%) | T (%) |\n|---|---|---|---|---|---|\n",
    );
    let cell = |r: &[l2o_optim::compare::Race]| -> (String, String) {
        let w = WinTie::of(r);
        let (lo, hi) = win_tie_interval(r, 0.95, BOOTSTRAP_REPS, 1);
        (
            format!("{:.1} [{:.1}, {:.1}]", w.win, lo.win, hi.win),
            format!("{:.1} [{:.1}, {:.1}]", w.tie, lo.tie, hi.tie),
        )
    };
    for (t, _) in &runs[1..] {
        for &e in eps {
            let (wi, ti) = cell(&races(ours, t, e, false));
            let (we, te) = cell(&races(ours, t, e, true));
            let _ = writeln!(
                s,
                "| {} | {e:.0e} | {wi} | {ti} | {we} | {te} |",
                t.optimizer
            );
        }
    }
    s.push_str(
        "\n| optimizer | f̂ = min_k f(x_k): median | mean | final ‖∇f‖ median | evaluations (mean) | wall-clock (s) | I_a median | I_a mean |\n|---|---|---|---|---|---|---|---|\n",
    );
    for (i, (t, secs)) in runs.iter().enumerate() {
        let fh: Vec<f64> = (0..t.batch)
            .map(|b| l2o_optim::compare::best_value(t, b))
            .collect();
        let f = summarize(&fh);
        let g = summarize(t.gnorm.last().expect("rows"));
        let ev = t.final_evaluations.iter().map(|&e| e as f64).sum::<f64>() / t.batch as f64;
        let (im, ia) = if i == 0 {
            ("—".into(), "—".into())
        } else {
            let idx = summarize(&log_ratio_index(ours, t));
            (format!("{:.3}", idx.median), format!("{:.3}", idx.mean))
        };
        let _ = writeln!(
            s,
            "| {} | {:.4e} | {:.4e} | {:.2e} | {ev:.0} | {secs:.1} | {im} | {ia} |",
            t.optimizer, f.median, f.mean, g.median
        );
    }
    s
}
