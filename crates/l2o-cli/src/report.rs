//! Per-step CSV and the printed summary of a run.

use std::path::Path;

use anyhow::{Context as _, Result};
use l2o_engine::status;
use l2o_optim::{Trace, summarize};

/// "lbfgs(m=10,wolfe)" → "lbfgs_m10_wolfe" for file names.
pub fn slug(name: &str) -> String {
    let mapped: String = name
        .chars()
        .filter(|&c| c != '=')
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    mapped
        .split('_')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

/// step, loss (mean, median, q1, q3, min, max), ‖g‖ (mean, median, q1, q3), status counts (by code: running,
/// converged, diverged, line search failed, converged at the working precision).
pub fn write_csv(t: &Trace, path: &Path) -> Result<()> {
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("cannot write {}", path.display()))?;
    w.write_record([
        "step",
        "loss_mean",
        "loss_median",
        "loss_q1",
        "loss_q3",
        "loss_min",
        "loss_max",
        "gnorm_mean",
        "gnorm_median",
        "gnorm_q1",
        "gnorm_q3",
        "running",
        "converged",
        "diverged",
        "ls_failed",
        "converged_precision",
    ])?;
    for k in 0..=t.steps() {
        let l = summarize(&t.f[k]);
        let g = summarize(&t.gnorm[k]);
        let c = l2o_optim::status_counts(&t.status[k]);
        let mut rec = vec![k.to_string()];
        rec.extend(
            [
                l.mean, l.median, l.q1, l.q3, l.min, l.max, g.mean, g.median, g.q1, g.q3,
            ]
            .iter()
            .map(|v| format!("{v:e}")),
        );
        rec.extend(c.iter().map(|v| v.to_string()));
        w.write_record(&rec)?;
    }
    w.flush()?;
    Ok(())
}

pub fn print_summary(t: &Trace, secs: f64, eps_g: f64) {
    let last = t.steps();
    let l = summarize(&t.f[last]);
    let g = summarize(&t.gnorm[last]);
    let c = t.status_counts();
    println!(
        "{}: after {last} steps ({secs:.2} s): loss mean {:.4e} median {:.4e} [q1 {:.3e}, q3 {:.3e}]; ‖g‖ median {:.3e} max {:.3e}",
        t.optimizer, l.mean, l.median, l.q1, l.q3, g.median, g.max
    );
    let parts: Vec<String> = (0..status::COUNT as u32)
        .map(|code| format!("{} {}", c[code as usize], status::name(code)))
        .collect();
    println!("  status: {}", parts.join(", "));
    if eps_g > 0.0 {
        let its: Vec<f64> = t
            .iterations_to_converge()
            .into_iter()
            .flatten()
            .map(|i| i as f64)
            .collect();
        if !its.is_empty() {
            let s = summarize(&its);
            println!(
                "  iterations to ‖g‖ < {eps_g:e}: {} of {} problems; median {} q1 {} q3 {} max {}",
                its.len(),
                t.batch,
                s.median,
                s.q1,
                s.q3,
                s.max
            );
        }
        let ev: Vec<f64> = t.final_evaluations.iter().map(|&e| e as f64).collect();
        let ev = summarize(&ev);
        println!(
            "  function evaluations per problem: median {} max {}",
            ev.median, ev.max
        );
    }
}
