//! Tasks evaluated on the host (`l2o_tasks::HostTask`): the same iterates as the built-in task they copy, every
//! optimizer and the meta-training loop accept them, non-finite values and impure samplers are caught, and the
//! `Stepper` drives an optimizer from a caller's loop with the driver's numbers.

#[path = "../examples/host_task.rs"]
mod host_task;

use std::sync::Arc;

use l2o::engine::{Context, Precision, status};
use l2o::optim::stepper::{MakeOptimizer, Stepper};
use l2o::optim::{FirstOrder, Kind, Lbfgs, LbfgsConfig, LineSearch, RunOptions, run};
use l2o::tasks::{HostFn, HostProblem, NonFinite, Rosenbrock, Task};

fn skip() -> bool {
    std::env::var("L2O_SKIP_GPU_TESTS").as_deref() == Ok("1")
}

/// The built-in Rosenbrock's f64 oracle as a host closure over the whole batch.
fn rosenbrock_on_host(task: Arc<Rosenbrock>) -> HostFn {
    Arc::new(move |theta, f, g| {
        let n = task.dim();
        for b in 0..task.batch() {
            let (fb, gb) = task.oracle_loss_grad(b, &theta[b * n..(b + 1) * n]);
            f[b] = fb;
            g[b * n..(b + 1) * n].copy_from_slice(&gb);
        }
        Ok(())
    })
}

fn max_rel(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs() / (1e-3 + x.abs().max(y.abs())))
        .fold(0.0, f64::max)
}

/// L-BFGS (Wolfe) on Rosenbrock evaluated on the host follows the built-in task's iterates: the same loss at
/// every step within the precision's rounding (the host computes f and ∇f in f64 and rounds them to the
/// device precision once; the kernel computes them in the device precision), the same evaluation counts.
#[test]
fn host_rosenbrock_follows_the_built_in_iterates() {
    if skip() {
        return;
    }
    l2o::testing::each_precision(|ctx| {
        let (n, b, steps) = (10, 5, 25);
        let builtin = Arc::new(Rosenbrock::sample(ctx, n, b, 7).unwrap());
        let problem =
            HostProblem::new("rosenbrock-host", n, b, rosenbrock_on_host(builtin.clone())).unwrap();
        let host = problem.task_at(ctx, builtin.initial_point()).unwrap();
        let cfg = LbfgsConfig {
            line_search: LineSearch::parse("wolfe").unwrap(),
            ..Default::default()
        };
        let o = RunOptions::fixed(steps);
        let a = run(
            ctx,
            builtin.as_ref(),
            &mut Lbfgs::new(cfg.clone()),
            &o,
            &mut |_| {},
        )
        .unwrap();
        let h = run(ctx, &host, &mut Lbfgs::new(cfg), &o, &mut |_| {}).unwrap();
        // The host computes f and ∇f in f64 and rounds them to the device precision once; the kernel computes
        // them in the device precision. In f32 that first difference (≈1e-7 relative) grows roughly tenfold every
        // three L-BFGS steps on Rosenbrock (measured: 4e-5 at step 10, 0.2 at step 25), so f32 compares the first
        // 10 steps at 1e-4; in f64 the whole run (measured below 1e-9) at 1e-6.
        let (upto, tol) = match ctx.precision() {
            Precision::F32 => (10, 1e-4),
            Precision::F64 => (steps, 1e-6),
        };
        let d = max_rel(&a.f[..=upto], &h.f[..=upto]);
        eprintln!(
            "{}: max relative loss difference over {upto} steps {d:.2e}",
            ctx.precision()
        );
        assert!(d < tol, "{d:.3e} ≥ {tol:e}");
        if ctx.precision() == Precision::F64 {
            assert_eq!(a.final_evaluations, h.final_evaluations);
        }
        assert!(a.f[steps].iter().sum::<f64>() < a.f[0].iter().sum::<f64>() * 1e-2);
        // one host step evaluates all B problems: at least as many as the problem that needed most, plus θ₀
        let most = *h.final_evaluations.iter().max().unwrap();
        assert!(
            problem.stats().evaluations() > most,
            "{} host steps",
            problem.stats().evaluations()
        );
    });
}

/// A NaN from the closure stops the run with an error that says where (default), or marks that problem
/// diverged and freezes it (NonFinite::Diverge); a sampler that is not a pure function of its seed is refused.
#[test]
fn non_finite_values_and_impure_samplers_are_caught() {
    if skip() {
        return;
    }
    let Some(ctx) = l2o::testing::ctx(Precision::F32) else {
        return;
    };
    // f = Σ x², NaN for problem 1 once its first coordinate drops below 0.5
    let fun: HostFn = Arc::new(|theta, f, g| {
        for b in 0..2 {
            let x = &theta[b * 3..b * 3 + 3];
            f[b] = x.iter().map(|v| v * v).sum();
            for i in 0..3 {
                g[b * 3 + i] = 2.0 * x[i];
            }
            if b == 1 && x[0] < 0.5 {
                f[b] = f64::NAN;
            }
        }
        Ok(())
    });
    let x0 = vec![1.0; 6];
    let strict = HostProblem::new("nan-task", 3, 2, fun.clone()).unwrap();
    let t = strict.task_at(&ctx, x0.clone()).unwrap();
    let e = run(
        &ctx,
        &t,
        &mut FirstOrder::new(Kind::Sgd, 0.1),
        &RunOptions::fixed(20),
        &mut |_| {},
    )
    .err()
    .expect("NaN must stop the run");
    let msg = format!("{e:#}");
    assert!(msg.contains("non-finite loss for problem 1"), "{msg}");
    let lenient = strict.clone().on_non_finite(NonFinite::Diverge);
    let t = lenient.task_at(&ctx, x0).unwrap();
    let tr = run(
        &ctx,
        &t,
        &mut FirstOrder::new(Kind::Sgd, 0.1),
        &RunOptions::fixed(20),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(tr.final_status()[1], status::DIVERGED);
    assert_eq!(tr.final_status()[0], status::RUNNING);
    assert!(tr.f[20][0] < 1e-3);
    // θ₀ of the wrong size, an impure sampler
    let e = strict.task_at(&ctx, vec![0.0; 5]).err().unwrap();
    assert!(format!("{e}").contains("θ₀ has 5 values"), "{e}");
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let c = calls.clone();
    let impure = strict.clone().with_sampler(Arc::new(move |_seed| {
        let k = c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(vec![k as f64; 6])
    }));
    let a = impure.task(&ctx, 1).unwrap();
    let _b = impure.task(&ctx, 2).unwrap();
    let e = run(
        &ctx,
        &a,
        &mut FirstOrder::new(Kind::Sgd, 0.1),
        &RunOptions::fixed(2),
        &mut |_| {},
    )
    .err()
    .expect("must refuse");
    assert!(
        format!("{e:#}").contains("pure function of its seed"),
        "{e:#}"
    );
}

/// The Stepper (a caller's loop) reproduces the driver: SGD and the L2L LSTM of `docs/results/l2l-quadratic/l2l-quadratic.l2o`
/// stepped by hand on the built-in quadratic's oracle give the driver's iterates on the host copy of it.
#[test]
fn the_stepper_reproduces_the_driver() {
    if skip() {
        return;
    }
    let Some(ctx) = l2o::testing::ctx(Precision::F32) else {
        return;
    };
    let ctx = Arc::new(ctx);
    let (n, b, steps) = (10, 3, 30);
    let quad = Arc::new(l2o::tasks::Quadratic::sample(&ctx, n, b, 5).unwrap());
    let q = quad.clone();
    let fun: HostFn = Arc::new(move |theta, f, g| {
        for p in 0..b {
            let (fp, gp) = q.oracle_loss_grad(p, &theta[p * n..(p + 1) * n]);
            f[p] = fp;
            g[p * n..(p + 1) * n].copy_from_slice(&gp);
        }
        Ok(())
    });
    let problem = HostProblem::new("quadratic-host", n, b, fun.clone()).unwrap();
    let ckpt = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/results/l2l-quadratic/l2l-quadratic.l2o");
    let makers: Vec<(&str, Box<dyn Fn() -> MakeOptimizer>)> = vec![
        (
            "sgd",
            Box::new(|| Box::new(|| Ok(Box::new(FirstOrder::new(Kind::Sgd, 0.01)) as _))),
        ),
        (
            "lstm",
            Box::new(move || {
                let p = ckpt.clone();
                Box::new(move || {
                    Ok(
                        Box::new(l2o::meta::l2l::optimizer::LstmOptimizer::from_checkpoint(
                            &p,
                        )?) as _,
                    )
                })
            }),
        ),
    ];
    for (name, make) in makers {
        let task = problem.task_at(&ctx, quad.initial_point()).unwrap();
        let mut opt = make()().unwrap();
        let tr = run(
            &ctx,
            &task,
            opt.as_mut(),
            &RunOptions::fixed(steps),
            &mut |_| {},
        )
        .unwrap();
        let mut s = Stepper::new(ctx.clone(), make(), n, b).unwrap();
        // θ₀ as the device holds it (the driver evaluates there)
        let p = ctx.precision();
        let mut theta = p.decode(&p.encode(&quad.initial_point()));
        let (mut f, mut g) = (vec![0.0; b], vec![0.0; b * n]);
        for _ in 0..steps {
            fun(&theta, &mut f, &mut g).unwrap();
            theta = s.step(&theta, &g, Some(&f)).unwrap();
        }
        assert_eq!(s.steps(), steps as u64);
        assert_eq!(
            theta, tr.final_theta,
            "{name}: the stepper left the driver's trajectory"
        );
        // a θ that is not the returned point is refused; reset starts again
        let e = s.step(&vec![0.0; b * n], &g, None).err().unwrap();
        assert!(format!("{e}").contains("reset()"), "{e}");
        s.reset();
        let t1 = s
            .step(&quad.initial_point(), &vec![0.0; b * n], None)
            .unwrap();
        assert_eq!(t1.len(), b * n);
        eprintln!("{name}: {steps} steps through the stepper match the driver bit for bit");
    }
}

/// A paused run resumes bit for bit: L2L (period 2) and the Hilbert LSTM (its window of 8 steps), paused at a
/// step that is not the first of its period and resumed by a new stepper, take the same steps as the run that
/// went on; a snapshot of an optimizer that cannot be paused, of another optimizer or precision, is refused.
#[test]
fn a_paused_stepper_resumes_bit_for_bit() {
    if skip() {
        return;
    }
    let Some(ctx) = l2o::testing::ctx(Precision::F32) else {
        return;
    };
    let ctx = Arc::new(ctx);
    let (n, b) = (10, 3);
    let quad = Arc::new(l2o::tasks::Quadratic::sample(&ctx, n, b, 5).unwrap());
    let q = quad.clone();
    let fun = move |theta: &[f64], f: &mut [f64], g: &mut [f64]| {
        for p in 0..b {
            let (fp, gp) = q.oracle_loss_grad(p, &theta[p * n..(p + 1) * n]);
            f[p] = fp;
            g[p * n..(p + 1) * n].copy_from_slice(&gp);
        }
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let ckpts = [
        ("lstm", "docs/results/l2l-quadratic/l2l-quadratic.l2o", 5),
        ("hlstm", "docs/results/hlstm/hlstm-cell1.l2o", 11),
    ];
    let maker = |path: std::path::PathBuf| -> MakeOptimizer {
        Box::new(move || l2o::meta::load_optimizer(&path))
    };
    let p = ctx.precision();
    let x0 = p.decode(&p.encode(&quad.initial_point()));
    let (mut f, mut g) = (vec![0.0; b], vec![0.0; b * n]);
    let mut snaps = vec![];
    for (name, rel, pause) in ckpts {
        let path = root.join(rel);
        let mut s = Stepper::new(ctx.clone(), maker(path.clone()), n, b).unwrap();
        assert!(s.snapshot().unwrap().is_none(), "{name}: nothing to save before the first step");
        let mut theta = x0.clone();
        for _ in 0..pause {
            fun(&theta, &mut f, &mut g);
            theta = s.step(&theta, &g, Some(&f)).unwrap();
        }
        let snap = s.snapshot().unwrap().expect("running");
        assert_eq!((snap.steps, snap.pending.clone()), (pause, theta.clone()));
        let go_on = |s: &mut Stepper, mut theta: Vec<f64>| {
            let (mut f, mut g) = (vec![0.0; b], vec![0.0; b * n]);
            for _ in 0..13 {
                fun(&theta, &mut f, &mut g);
                theta = s.step(&theta, &g, Some(&f)).unwrap();
            }
            theta
        };
        let want = go_on(&mut s, theta.clone());
        let mut r = Stepper::resume(ctx.clone(), maker(path.clone()), snap.clone()).unwrap();
        assert_eq!(r.steps(), pause);
        // a snapshot of the resumed run, before it steps, is the snapshot it came from
        assert_eq!(r.snapshot().unwrap().as_ref(), Some(&snap), "{name}");
        let got = go_on(&mut r, theta.clone());
        assert_eq!(got, want, "{name}: the resumed run left the original's trajectory");
        assert_ne!(want, theta, "{name}: the run moved");
        eprintln!("{name}: paused at step {pause}, 13 more steps match bit for bit");
        snaps.push((name, path, snap));
    }
    // refused: another optimizer's snapshot, a snapshot of another precision, an optimizer that cannot pause
    let (_, lstm_path, _) = &snaps[0];
    let (_, _, hlstm_snap) = &snaps[1];
    let e = Stepper::resume(ctx.clone(), maker(lstm_path.clone()), hlstm_snap.clone())
        .err()
        .unwrap();
    assert!(format!("{e}").contains("taken from hlstm"), "{e}");
    let mut other = snaps[0].2.clone();
    other.precision = "f64".into();
    let e = Stepper::resume(ctx.clone(), maker(lstm_path.clone()), other).err().unwrap();
    assert!(format!("{e}").contains("precision f64"), "{e}");
    let mut sgd = Stepper::new(
        ctx.clone(),
        Box::new(|| Ok(Box::new(FirstOrder::new(Kind::Sgd, 0.01)) as _)),
        n,
        b,
    )
    .unwrap();
    fun(&x0, &mut f, &mut g);
    sgd.step(&x0, &g, None).unwrap();
    let e = sgd.snapshot().err().unwrap();
    assert!(format!("{e}").contains("cannot be paused"), "{e}");
}

/// Meta-training L2L on the host least-squares task (examples/host_task.rs) is reproducible and learns: two
/// runs give the same φ, and the LSTM's held-out loss is finite and below θ₀'s.
#[test]
fn l2l_meta_trains_on_a_host_task() {
    if skip() {
        return;
    }
    let Some(ctx) = l2o::testing::ctx(Precision::F32) else {
        return;
    };
    let (a, b) = (
        host_task::meta_train_and_compare(&ctx, 3).unwrap(),
        host_task::meta_train_and_compare(&ctx, 3).unwrap(),
    );
    assert_eq!(a.0.to_bits(), b.0.to_bits(), "same seed, same numbers");
    assert!(a.0.is_finite() && a.1.is_finite());
    eprintln!("3 epochs: LSTM {:.4e}, tuned Adam {:.4e}", a.0, a.1);
}

#[allow(dead_code)]
fn _uses(_: &Context) {}
