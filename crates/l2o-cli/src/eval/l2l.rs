//! `l2o eval` of an L2L checkpoint (seed 002 Figure 4): the LSTM against SGD, Nesterov, RMSprop and Adam tuned
//! on training problems, on held-out problems.

use std::fmt::Write as _;

use anyhow::{Context as _, Result};
use l2o_meta::l2l::optimizer::LstmOptimizer;
use l2o_meta::state::TrainState;
use l2o_optim::{FirstOrder, RunOptions, Trace, summarize};

use crate::args::EvalArgs;
use crate::baselines::{fixed_rates, kind_of, rate_for};
use crate::{DeviceArgs, bar, cluster, list, parse_grid, plot, report};

/// Per optimizer: final-step summary and the mean over all steps 1..=K of the mean loss.
fn table(traces: &[Trace]) -> String {
    let mut s = String::from(
        "| optimizer | final loss: mean | median | q1 | q3 | mean loss over all steps |\n|---|---|---|---|---|---|\n",
    );
    for t in traces {
        let k = t.steps();
        let f = summarize(&t.f[k]);
        let all = (1..=k).map(|i| summarize(&t.f[i]).mean).sum::<f64>() / k as f64;
        let _ = writeln!(
            s,
            "| {} | {:.4e} | {:.4e} | {:.4e} | {:.4e} | {:.4e} |",
            t.optimizer, f.mean, f.median, f.q1, f.q3, all
        );
    }
    s
}

/// Evaluate an L2L checkpoint: the LSTM with its best φ and the tuned first-order baselines on held-out
/// problems; eval.md, loss.svg and one CSV per optimizer.
pub fn l2l_eval(dev: &DeviceArgs, a: &EvalArgs, st: &TrainState) -> Result<()> {
    let task_name = a.task.clone().unwrap_or_else(|| st.train.task.clone());
    let dim = a.dim.unwrap_or(st.train.dim);
    let steps = a.steps.unwrap_or(st.train.horizon);
    let grid = parse_grid(a.grid.as_deref().unwrap_or("-4..0"))?;
    let lrs = fixed_rates(a.lr.as_deref())?;
    let vs = a.vs.as_deref().unwrap_or("sgd,nesterov,rmsprop,adam");
    let kinds: Vec<(String, l2o_optim::Kind)> = list::<String>(vs, "baseline")?
        .into_iter()
        .map(|n| kind_of(&n).map(|k| (n, k)))
        .collect::<Result<_>>()?;
    let ctx = dev.open()?;
    let root = cluster::is_root();
    if root {
        std::fs::create_dir_all(&a.out)
            .with_context(|| format!("cannot create {}", a.out.display()))?;
    }
    // Baselines are tuned on a training batch (the distribution the LSTM was trained on, first epoch's seed)
    // at the test dimension and horizon; the test problems come from a seed never used in training/validation.
    let opts = a.mlp.options(&st.train.task_options)?;
    let train_task = a.tuning_task(&ctx, st, &task_name, dim, &opts)?;
    // held-out problems: a seed never used in training or validation (and MNIST's test images)
    let test = a.test_task(&ctx, st, &task_name, dim, &opts)?;
    let o = RunOptions::fixed(steps);
    let mut traces = vec![];
    let pb = bar(test.progress_len(steps), "lstm".into());
    let mut lstm = LstmOptimizer::new(st.lstm, st.best_phi.clone())?;
    traces.push(test.run(&mut lstm, &o, &mut |k| pb.set_position(k as u64))?);
    pb.finish_and_clear();
    let mut tuned = vec![];
    for (name, kind) in &kinds {
        let lr = rate_for(&ctx, name, *kind, &lrs, train_task.as_ref(), &grid, steps)?;
        tuned.push((name.clone(), lr));
        let mut opt = FirstOrder::new(*kind, lr);
        traces.push(test.run(&mut opt, &o, &mut |_| {})?);
    }
    // every rank holds every trace now; rank 0 reports
    if !root {
        return Ok(());
    }
    for t in &traces {
        report::write_csv(
            t,
            &a.out.join(format!("{}.csv", report::slug(&t.optimizer))),
        )?;
    }
    let md = table(&traces);
    let header = format!(
        "{} n={}, {} held-out problems, {steps} steps; LSTM = best φ of {} (epoch {}); baselines tuned on grid {:?} on a training batch of {}\n\n",
        task_name,
        test.dim(),
        test.count(),
        super::checkpoint_label(&a.checkpoint, st),
        st.best_epoch,
        grid,
        train_task.batch()
    );
    std::fs::write(a.out.join("eval.md"), format!("{header}{md}"))?;
    print!("{header}{md}");
    let lstm_t = &traces[0];
    let k = lstm_t.steps();
    let lstm_final = summarize(&lstm_t.f[k]).mean;
    let lstm_all = (1..=k).map(|i| summarize(&lstm_t.f[i]).mean).sum::<f64>();
    let beats = traces[1..].iter().all(|t| {
        summarize(&t.f[k]).mean > lstm_final
            && (1..=k).map(|i| summarize(&t.f[i]).mean).sum::<f64>() > lstm_all
    });
    println!(
        "LSTM ahead of every baseline on the final mean loss and the mean over all steps: {}",
        if beats { "yes" } else { "no" }
    );
    plot::loss_plot(
        &traces,
        &format!(
            "{task_name} n={}: LSTM vs tuned baselines ({} problems)",
            test.dim(),
            a.batch()
        ),
        &a.out.join("loss.svg"),
    )?;
    eprintln!(
        "wrote eval.md, loss.svg and one CSV per optimizer in {}",
        a.out.display()
    );
    Ok(())
}
