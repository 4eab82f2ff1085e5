//! A task of your own computed on the host, no WGSL: least squares f_b(θ) = ‖A_b θ − y_b‖² with a fresh
//! random design matrix A_b (m × n, entries N(0, 1/m)) and y_b = A_b x*_b per problem, drawn by a sampler from
//! a seed (the Python package's test task, in Rust). L2L is meta-trained on it
//! through the shared loop, then evaluated on held-out problems against Adam with a tuned learning rate.
//!
//! Run: `cargo run --release --example host_task` (`L2O_BACKEND`, `L2O_ADAPTER` choose the device).

use std::sync::{Arc, Mutex};

use anyhow::Result;
use l2o::engine::{Context, ContextOptions};
use l2o::meta::state::{TrainConfig, test_seed};
use l2o::meta::train::{HostSource, train_on};
use l2o::optim::{FirstOrder, Kind, RunOptions, run, summarize, tune::log_grid, tune::tune};
use l2o::tasks::{HostFn, HostProblem, Sampler, Task};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Samples per problem.
pub const M: usize = 20;

/// The least-squares problem family: B problems of dimension n, data drawn by the sampler.
pub fn least_squares(n: usize, batch: usize) -> Result<HostProblem> {
    // (A: B × m × n, y: B × m) of the batch sampled last; the sampler writes it, the closure reads it
    let data = Arc::new(Mutex::new((vec![0.0; batch * M * n], vec![0.0; batch * M])));
    let d = data.clone();
    let sample: Sampler = Arc::new(move |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut normal = || rng.sample::<f64, _>(rand_distr::StandardNormal);
        let mut g = d.lock().unwrap();
        let (a, y) = &mut *g;
        for v in a.iter_mut() {
            *v = normal() / (M as f64).sqrt();
        }
        for b in 0..batch {
            let xs: Vec<f64> = (0..n).map(|_| normal()).collect();
            for s in 0..M {
                let row = &a[(b * M + s) * n..(b * M + s + 1) * n];
                y[b * M + s] = row.iter().zip(&xs).map(|(p, q)| p * q).sum();
            }
        }
        Ok(vec![0.0; batch * n])
    });
    let fun: HostFn = Arc::new(move |theta, f, grad| {
        let g = data.lock().unwrap();
        let (a, y) = (&g.0, &g.1);
        for b in 0..batch {
            let x = &theta[b * n..(b + 1) * n];
            let gb = &mut grad[b * n..(b + 1) * n];
            gb.fill(0.0);
            f[b] = 0.0;
            for s in 0..M {
                let row = &a[(b * M + s) * n..(b * M + s + 1) * n];
                let r = row.iter().zip(x).map(|(p, q)| p * q).sum::<f64>() - y[b * M + s];
                f[b] += r * r;
                for (gj, aj) in gb.iter_mut().zip(row) {
                    *gj += 2.0 * r * aj;
                }
            }
        }
        Ok(())
    });
    Ok(HostProblem::new("least-squares", n, batch, fun)?.with_sampler(sample))
}

/// Meta-train L2L for `epochs` on the family, then (held-out mean final loss of the LSTM, of tuned Adam).
pub fn meta_train_and_compare(ctx: &Context, epochs: usize) -> Result<(f64, f64)> {
    let (n, batch, horizon) = (10, 16, 40);
    let problem = least_squares(n, batch)?;
    let tc = TrainConfig {
        task: problem.name().into(),
        dim: n,
        batch,
        horizon,
        unroll: 20,
        epochs,
        meta_optimizer: "adam".into(),
        meta_lr: 0.01,
        meta_lr_final: None,
        seed: 1,
        val_batch: batch,
        validate_every: 5,
        max_nonfinite: 10,
        shards: 1,
        task_options: Default::default(),
    };
    let mut st = l2o::meta::l2l::train::new_state(l2o::meta::LstmConfig::default(), tc.clone())?;
    let source = HostSource {
        problem: &problem,
        seed: tc.seed,
    };
    train_on(
        ctx,
        &mut st,
        &source,
        None,
        &mut |_, _, _| {},
        &mut |_, _| {},
    )?;
    // Adam's rate tuned on a training batch, both scored on a held-out batch
    let train = problem.task(ctx, l2o::meta::state::epoch_seed(tc.seed, 0))?;
    let lr = tune(
        ctx,
        &[&train as &dyn Task],
        Kind::Adam,
        &log_grid(-4, 0),
        horizon,
    )?
    .best_lr;
    let test = problem.task(ctx, test_seed(tc.seed))?;
    let o = RunOptions::fixed(horizon);
    let mut lstm = l2o::meta::l2l::optimizer::LstmOptimizer::new(st.lstm, st.best_phi.clone())?;
    let l = run(ctx, &test, &mut lstm, &o, &mut |_| {})?;
    let a = run(
        ctx,
        &test,
        &mut FirstOrder::new(Kind::Adam, lr),
        &o,
        &mut |_| {},
    )?;
    Ok((summarize(&l.f[horizon]).mean, summarize(&a.f[horizon]).mean))
}

#[allow(dead_code)]
fn main() -> Result<()> {
    let ctx = Context::new(&ContextOptions::default())?;
    let (lstm, adam) = meta_train_and_compare(&ctx, 60)?;
    println!("held-out least squares, mean final loss: LSTM {lstm:.4e}, tuned Adam {adam:.4e}");
    Ok(())
}
