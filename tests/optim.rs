//! Optimizers on the device against their f64 CPU references, status handling, and the L-BFGS acceptance runs.

use l2o::engine::{Precision, status};
use l2o::optim::lbfgs::reference;
use l2o::optim::tune::{log_grid, tune};
use l2o::optim::{FirstOrder, Kind, Lbfgs, LbfgsConfig, LineSearch, RunOptions, run};
use l2o::tasks::{Quadratic, Rosenbrock, Task};
use l2o::testing::{Tol, ctx, each_precision};

fn opts(steps: usize, eps_g: f64) -> RunOptions {
    RunOptions {
        steps,
        eps_g,
        check_every: 0,
        lockstep: false,
    }
}

/// Every first-order method: 20 steps on 3 quadratics (n = 10) equal the f64 CPU update applied to the oracle
/// gradient. f64: 1e-10 relative (a few roundings per step, amplified by the loss's conditioning over 20 steps);
/// f32: 1e-3 (the f32 trajectory drifts by ~u·κ per step).
#[test]
fn first_order_matches_reference() {
    each_precision(|c| {
        let task = Quadratic::sample(c, 10, 3, 7).unwrap();
        for kind in [
            Kind::Sgd,
            Kind::HeavyBall,
            Kind::Nesterov,
            Kind::RmsProp,
            Kind::Adam,
            Kind::AdaGrad,
        ] {
            let mut opt = FirstOrder::new(
                kind,
                if matches!(kind, Kind::Sgd | Kind::HeavyBall | Kind::Nesterov) {
                    0.002
                } else {
                    0.01
                },
            );
            let steps = 20;
            let tr = run(c, &task, &mut opt, &opts(steps, 0.0), &mut |_| {}).unwrap();
            let x0 = task.initial_point();
            for b in 0..3 {
                let mut x = x0[b * 10..(b + 1) * 10].to_vec();
                let (mut m, mut v) = (vec![0.0; 10], vec![0.0; 10]);
                for t in 1..=steps {
                    let (_, g) = task.oracle_loss_grad(b, &x);
                    opt.reference_step(&mut x, &g, &mut m, &mut v, t);
                    let (f, _) = task.oracle_loss_grad(b, &x);
                    let e = (tr.f[t][b] - f).abs() / f.abs().max(1e-3);
                    let tol = Tol {
                        f32: 1e-3,
                        f64: 1e-10,
                    }
                    .of(c.precision());
                    assert!(
                        e < tol,
                        "{kind:?} {} step {t} problem {b}: {} vs {f} ({e:e})",
                        c.precision(),
                        tr.f[t][b]
                    );
                }
            }
        }
    });
}

/// The device L-BFGS follows the f64 CPU reference iterate by iterate on quadratics, for each line search.
/// f64: loss within 1e-7 relative over 15 iterations (identical algorithm; differences are summation order);
/// f32: the first 4 iterations within 2e-2 (after that f32 rounding legitimately changes the path).
#[test]
fn lbfgs_matches_reference_on_quadratics() {
    each_precision(|c| {
        let (n, bt) = (10, 4);
        let task = Quadratic::sample(c, n, bt, 11).unwrap();
        for ls in [
            LineSearch::Constant,
            LineSearch::armijo(),
            LineSearch::wolfe(),
        ] {
            let cfg = LbfgsConfig {
                m: 5,
                line_search: ls,
                ..Default::default()
            };
            let steps = if c.precision() == Precision::F64 {
                15
            } else {
                4
            };
            let tr = run(
                c,
                &task,
                &mut Lbfgs::new(cfg),
                &opts(steps, 0.0),
                &mut |_| {},
            )
            .unwrap();
            let x0 = task.initial_point();
            for b in 0..bt {
                let r = reference::run(&task, b, &x0[b * n..(b + 1) * n], &cfg, steps, 0.0);
                for k in 0..r.f.len().min(steps + 1) {
                    let scale = r.f[k].abs().max(1e-6 * r.f[0]);
                    let e = (tr.f[k][b] - r.f[k]).abs() / scale;
                    let tol = Tol {
                        f32: 2e-2,
                        f64: 1e-7,
                    }
                    .of(c.precision());
                    assert!(
                        e < tol,
                        "{} {ls:?} problem {b} iter {k}: device {} vs reference {} ({e:e})",
                        c.precision(),
                        tr.f[k][b],
                        r.f[k]
                    );
                }
            }
        }
    });
}

/// 2-d Rosenbrock from (−1.2, 1): strong-Wolfe L-BFGS (m = 5) in f64 reaches ‖g‖ < 1e-8. Measured: the CPU
/// reference and the device both take 37 iterations (44 evaluations); the test allows 30..=40 so a legitimate change of
/// summation order passes while a broken line search (which takes > 100 or stalls) fails.
#[test]
fn lbfgs_wolfe_solves_rosenbrock_in_f64() {
    let Some(c) = ctx(Precision::F64) else { return };
    let task = Rosenbrock::classic(&c, 2, 1).unwrap();
    let cfg = LbfgsConfig {
        m: 5,
        line_search: LineSearch::wolfe(),
        ..Default::default()
    };
    let r = reference::run(&task, 0, &[-1.2, 1.0], &cfg, 200, 1e-8);
    assert_eq!(
        r.status,
        status::CONVERGED,
        "reference did not converge: {:?}",
        r.gnorm.last()
    );
    let it_ref = r.f.len() - 1;
    let tr = run(
        &c,
        &task,
        &mut Lbfgs::new(cfg),
        &opts(200, 1e-8),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(tr.final_status()[0], status::CONVERGED);
    let it_dev = tr.iterations[tr.steps()][0] as usize;
    eprintln!(
        "rosenbrock: reference {it_ref} iterations, device {it_dev}, evaluations {}",
        tr.final_evaluations[0]
    );
    assert!(
        (30..=40).contains(&it_ref) && (30..=40).contains(&it_dev),
        "iterations: reference {it_ref}, device {it_dev}"
    );
    let x = &tr.final_theta;
    assert!(
        (x[0] - 1.0).abs() < 1e-7 && (x[1] - 1.0).abs() < 1e-7,
        "{x:?}"
    );
}

/// Acceptance run of the engine issue: 128 random 10-d quadratics, f64, strong Wolfe, m = 10: every problem
/// reaches ‖g‖ < 1e-5 within 100 iterations.
#[test]
fn lbfgs_m10_solves_all_quadratics_in_f64() {
    let Some(c) = ctx(Precision::F64) else { return };
    let task = Quadratic::sample(&c, 10, 128, 1).unwrap();
    let cfg = LbfgsConfig {
        m: 10,
        line_search: LineSearch::wolfe(),
        ..Default::default()
    };
    let tr = run(
        &c,
        &task,
        &mut Lbfgs::new(cfg),
        &RunOptions {
            steps: 100,
            eps_g: 1e-5,
            check_every: 10,
            lockstep: false,
        },
        &mut |_| {},
    )
    .unwrap();
    let its: Vec<f64> = tr
        .iterations_to_converge()
        .into_iter()
        .map(|x| x.map_or(f64::INFINITY, |i| i as f64))
        .collect();
    let worst = its.iter().cloned().fold(0.0, f64::max);
    eprintln!(
        "m=10: worst {worst} iterations, status counts {:?}",
        tr.status_counts()
    );
    assert_eq!(
        tr.status_counts()[status::CONVERGED as usize],
        128,
        "status counts {:?}",
        tr.status_counts()
    );
    assert!(worst <= 100.0);
}

/// A diverging problem is detected, reported and frozen; the others keep running.
#[test]
fn divergence_is_detected_and_frozen() {
    each_precision(|c| {
        let task = Quadratic::sample(c, 10, 8, 3).unwrap();
        let mut opt = FirstOrder::new(Kind::Sgd, 10.0); // far above 1/λ_max: every problem blows up
        let tr = run(c, &task, &mut opt, &opts(200, 0.0), &mut |_| {}).unwrap();
        assert!(
            tr.final_status().iter().all(|&s| s == status::DIVERGED),
            "{:?}",
            tr.final_status()
        );
        for b in 0..8 {
            let k = tr
                .status
                .iter()
                .position(|s| s[b] == status::DIVERGED)
                .unwrap();
            let it = tr.iterations[k][b];
            assert!(
                tr.iterations[tr.steps()][b] == it,
                "a diverged problem must stop iterating"
            );
        }
        // and a sane rate keeps every problem running
        let tr = run(
            c,
            &task,
            &mut FirstOrder::new(Kind::Sgd, 1e-3),
            &opts(20, 0.0),
            &mut |_| {},
        )
        .unwrap();
        assert!(tr.final_status().iter().all(|&s| s == status::RUNNING));
    });
}

/// The tuner picks an interior rate on quadratics (too small: slow; too large: diverges) and scores divergence +∞.
#[test]
fn tuner_picks_a_finite_interior_rate() {
    let Some(c) = ctx(Precision::F32) else { return };
    let task = Quadratic::sample(&c, 10, 16, 5).unwrap();
    let grid = log_grid(-5, 1);
    let r = tune(&c, &[&task as &dyn Task], Kind::Adam, &grid, 50).unwrap();
    eprintln!("{:?}", r.table);
    assert!(
        r.best_lr > grid[0] && r.best_lr < grid[grid.len() - 1],
        "best {}",
        r.best_lr
    );
    let best = r.table.iter().find(|x| x.0 == r.best_lr).unwrap().1;
    assert!(r.table.iter().all(|x| x.1 >= best));
    let r = tune(&c, &[&task as &dyn Task], Kind::Sgd, &grid, 50).unwrap();
    assert!(
        r.table.last().unwrap().1.is_infinite(),
        "lr = 30 must diverge on these quadratics: {:?}",
        r.table
    );
}

/// The device two-loop recursion against the f64 reference over odd sizes and batches, with a partly filled
/// ring, a skipped pair (ρ = 0) and per-problem ρ, γ. Tolerance: the recursion is 2·count inner products and
/// axpys, so f32 error ~ count·√n·u relative to the largest |d_i|: 1e-4·√(n/100) + 1e-5; f64: 1e-11.
#[test]
fn two_loop_matches_reference() {
    use l2o::engine::{Scalars, lbfgs_cols as c};
    use l2o::optim::lbfgs::two_loop;
    use rand::{Rng, SeedableRng, rngs::StdRng};
    each_precision(|cx| {
        let mut rng = StdRng::seed_from_u64(9);
        let m = 5;
        for bt in [1usize, 3, 64] {
            for n in [1usize, 7, 255, 256, 257, 100003] {
                if n > 100000 && bt > 3 {
                    continue;
                }
                let mut randn = |len: usize| -> Vec<f64> {
                    (0..len)
                        .map(|_| rng.sample::<f64, _>(rand_distr::StandardNormal))
                        .collect()
                };
                let g = randn(bt * n);
                // y_i = s_i + 0.3·noise keeps sᵀy > 0 like real pairs; ρ_i = 1/sᵀy
                let s = randn(bt * m * n);
                let noise = randn(bt * m * n);
                let y: Vec<f64> = s.iter().zip(&noise).map(|(a, e)| a + 0.3 * e).collect();
                let (head, count) = (1, 4); // slots 1, 0, 4, 3 in use, newest first; slot 2 unused
                let stride = c::stride(m);
                let mut scal = vec![0.0; bt * stride];
                let mut rhos = vec![vec![0.0; m]; bt];
                let mut gammas = vec![0.0; bt];
                for b in 0..bt {
                    for i in 0..m {
                        let (si, yi) = (
                            &s[(b * m + i) * n..(b * m + i + 1) * n],
                            &y[(b * m + i) * n..(b * m + i + 1) * n],
                        );
                        let sy = l2o::engine::oracle::dot(si, yi);
                        rhos[b][i] = if i == 2 || (b % 2 == 1 && i == 0) || sy <= 0.0 {
                            0.0
                        } else {
                            1.0 / sy
                        };
                        scal[b * stride + c::rho(i)] = rhos[b][i];
                    }
                    gammas[b] = 0.5 + b as f64 * 0.01;
                    scal[b * stride + c::GAMMA] = gammas[b];
                }
                let (dg, ds, dy) = (
                    cx.upload("g", &g).unwrap(),
                    cx.upload("s", &s).unwrap(),
                    cx.upload("y", &y).unwrap(),
                );
                let dscal = cx.upload("scal", &scal).unwrap();
                let dd = cx.zeros("d", bt * n).unwrap();
                let sc = Scalars {
                    scal: &dscal,
                    stride,
                    status: None,
                    mask_col: None,
                };
                let disp = two_loop(
                    cx,
                    n,
                    bt,
                    m,
                    dg.view(n),
                    dd.view(n),
                    &ds,
                    &dy,
                    sc,
                    head,
                    count,
                )
                .unwrap();
                cx.submit(&disp).unwrap();
                let d = cx.read(&dd).unwrap();
                for b in 0..bt {
                    let sl: Vec<Vec<f64>> = (0..m)
                        .map(|i| s[(b * m + i) * n..(b * m + i + 1) * n].to_vec())
                        .collect();
                    let yl: Vec<Vec<f64>> = (0..m)
                        .map(|i| y[(b * m + i) * n..(b * m + i + 1) * n].to_vec())
                        .collect();
                    let want = reference::two_loop(
                        &g[b * n..(b + 1) * n],
                        &sl,
                        &yl,
                        &rhos[b],
                        gammas[b],
                        head,
                        count,
                    );
                    let e = l2o::engine::oracle::max_rel_err(&d[b * n..(b + 1) * n], &want);
                    let tol = Tol {
                        f32: 1e-4 * (n as f64 / 100.0).sqrt() + 1e-5,
                        f64: 1e-11,
                    }
                    .of(cx.precision());
                    assert!(
                        e < tol,
                        "two-loop {} n={n} B={bt} problem {b}: {e:e}",
                        cx.precision()
                    );
                }
            }
        }
    });
}

/// Every elementwise update kernel against the f64 reference over odd sizes and batches, with a frozen
/// problem (status ≠ 0) that must stay untouched. One update from random θ, g, m, v (v ≥ 0) at Adam step t = 3.
/// Tolerance: roundings per element relative to max(|θ_old|, |θ_new|): f32 1e-5 (≈ 80 u: Adam's bias correction
/// at t = 3 divides m by 1 − β1³ = 0.27 and v by 1 − β2³ = 0.003, amplifying the rounding of the cancelling sum
/// β1·m + (1 − β1)·g; measured worst 2.5e-6; a wrong index or formula gives O(1) errors), f64 1e-13. v is kept
/// ≥ 0.01 so RMSprop/AdaGrad's division by √v stays well conditioned.
#[test]
fn map_kernels_match_reference_over_sizes() {
    use l2o::optim::first_order::map_update;
    use rand::{Rng, SeedableRng, rngs::StdRng};
    each_precision(|c| {
        let mut rng = StdRng::seed_from_u64(21);
        for kind in [
            Kind::Sgd,
            Kind::HeavyBall,
            Kind::Nesterov,
            Kind::RmsProp,
            Kind::Adam,
            Kind::AdaGrad,
        ] {
            for bt in [1usize, 3, 64] {
                for n in [1usize, 7, 255, 256, 257, 100003] {
                    if n > 100000 && bt > 3 {
                        continue;
                    }
                    let mut randn = |len: usize| -> Vec<f64> {
                        (0..len)
                            .map(|_| rng.sample::<f64, _>(rand_distr::StandardNormal))
                            .collect()
                    };
                    let (theta, g, m) = (randn(bt * n), randn(bt * n), randn(bt * n));
                    let v: Vec<f64> = randn(bt * n).into_iter().map(|x| 0.01 + x * x).collect();
                    let opt = FirstOrder::new(kind, 0.05);
                    let h = opt.hyper;
                    let t = 3;
                    let stride = 6;
                    let mut scal = vec![0.0; bt * stride];
                    for b in 0..bt {
                        scal[b * stride + 4] = h.beta1.powi(t - 1);
                        scal[b * stride + 5] = h.beta2.powi(t - 1);
                    }
                    let status: Vec<u32> = (0..bt).map(|b| if b == 1 { 2 } else { 0 }).collect();
                    let up = |x: &[f64], l: &str| c.upload(l, x).unwrap();
                    let (dt, dg, dm, dv) = (up(&theta, "t"), up(&g, "g"), up(&m, "m"), up(&v, "v"));
                    let (ds, dh) = (up(&scal, "s"), up(&[h.lr, h.beta1, h.beta2, h.eps], "h"));
                    let dst = c.upload_u32("status", &status).unwrap();
                    let d = map_update(c, kind, n, bt, &dh, &dt, &dg, &dm, &dv, &ds, stride, &dst)
                        .unwrap();
                    c.submit(&d).unwrap();
                    let got = c.read(&dt).unwrap();
                    for b in 0..bt {
                        let r = b * n..(b + 1) * n;
                        let mut want = theta[r.clone()].to_vec();
                        if status[b] == 0 {
                            let (mut mm, mut vv) = (m[r.clone()].to_vec(), v[r.clone()].to_vec());
                            opt.reference_step(
                                &mut want,
                                &g[r.clone()],
                                &mut mm,
                                &mut vv,
                                t as usize,
                            );
                        }
                        // relative to the larger of |θ_old| and |θ_new|: θ − lr·step may cancel (n = 1 hits it)
                        let scale = theta[r.clone()]
                            .iter()
                            .chain(&want)
                            .fold(1e-30f64, |a, x| a.max(x.abs()));
                        let e = got[r]
                            .iter()
                            .zip(&want)
                            .fold(0.0f64, |a, (x, y)| a.max((x - y).abs()))
                            / scale;
                        let tol = Tol {
                            f32: 1e-5,
                            f64: 1e-13,
                        }
                        .of(c.precision());
                        assert!(
                            e < tol,
                            "{kind:?} {} n={n} B={bt} problem {b}: {e:e}",
                            c.precision()
                        );
                    }
                }
            }
        }
    });
}

/// L-BFGS run past convergence ends with the truth (#24 part 4, first cases): on f(x) = ‖x‖² (n = 50, B = 8,
/// standard-normal starts, 30 steps) every rule — constant step, Armijo, strong Wolfe — reaches x = 0 within a few
/// iterations; a zero gradient is a stationary point and freezes the problem as converged, and a curvature pair
/// whose ρ = 1/sᵀy overflows (sᵀy a denormal) is rejected. Before: the iterates reached denormals and then NaN
/// (f32: problem 6 at evaluation 6; f64: at evaluation 13), reported as an error or as "diverged".
#[test]
fn lbfgs_on_the_sphere_converges_without_nan() {
    use l2o::tasks::{HostFn, HostProblem};
    use rand::{Rng, SeedableRng, rngs::StdRng};
    use std::sync::Arc;
    if std::env::var("L2O_SKIP_GPU_TESTS").as_deref() == Ok("1") {
        return;
    }
    l2o::testing::each_precision(|ctx| {
        let (n, b, steps) = (50, 8, 30);
        let fun: HostFn = Arc::new(move |theta, f, g| {
            for p in 0..b {
                let x = &theta[p * n..(p + 1) * n];
                f[p] = x.iter().map(|v| v * v).sum();
                for i in 0..n {
                    g[p * n + i] = 2.0 * x[i];
                }
            }
            Ok(())
        });
        let mut rng = StdRng::seed_from_u64(3);
        let x0: Vec<f64> = (0..n * b)
            .map(|_| rng.sample::<f64, _>(rand_distr::StandardNormal))
            .collect();
        for ls in ["constant", "armijo", "wolfe"] {
            let problem = HostProblem::new("sphere", n, b, fun.clone()).unwrap();
            let task = problem.task_at(ctx, x0.clone()).unwrap();
            let cfg = LbfgsConfig {
                line_search: LineSearch::parse(ls).unwrap(),
                ..Default::default()
            };
            let t = run(
                ctx,
                &task,
                &mut Lbfgs::new(cfg),
                &RunOptions::fixed(steps),
                &mut |_| {},
            )
            .unwrap_or_else(|e| panic!("{ls} ({}): {e:#}", ctx.precision()));
            let last = t.status.last().unwrap();
            for p in 0..b {
                assert!(
                    t.f.iter().all(|row| row[p].is_finite()),
                    "{ls} ({}): problem {p} has a non-finite f",
                    ctx.precision()
                );
                assert_eq!(
                    last[p],
                    status::CONVERGED,
                    "{ls} ({}): problem {p} ends {} with f = {:e}",
                    ctx.precision(),
                    status::name(last[p]),
                    t.f[steps][p]
                );
                assert!(t.f[steps][p] < 1e-20, "{ls}: f = {:e}", t.f[steps][p]);
            }
            eprintln!(
                "{ls} ({}): all {b} converged, iterations {:?}",
                ctx.precision(),
                t.iterations[steps]
            );
        }
    });
}

/// `steps` iterations of L-BFGS with line search `ls` (the other settings default) on `task`.
fn lbfgs_fixed(
    c: &l2o::engine::Context,
    task: &dyn Task,
    ls: &str,
    steps: usize,
) -> (LbfgsConfig, l2o::optim::Trace) {
    let cfg = LbfgsConfig {
        line_search: LineSearch::parse(ls).unwrap(),
        ..Default::default()
    };
    let t = run(
        c,
        task,
        &mut Lbfgs::new(cfg),
        &RunOptions::fixed(steps),
        &mut |_| {},
    )
    .unwrap();
    (cfg, t)
}

/// L-BFGS that runs out of precision says so (#24 part 4): `l2o run --task quadratic --optimizer lbfgs --steps
/// 300` used to end with every problem "line search failed" although each had reached ‖Wθ − y‖² ≈ 1e-12 (f32) —
/// the line search could not resolve the decrease it predicted. Now, for every line search that can fail, in f32
/// and f64, the problems end *converged at the working precision* (or still running at the floor) with a finite
/// f far below f(θ₀), none "line search failed", and the f64 reference reaches the same verdict.
#[test]
fn lbfgs_past_the_precision_floor_reports_converged() {
    use l2o::engine::status::Status;
    if std::env::var("L2O_SKIP_GPU_TESTS").as_deref() == Ok("1") {
        return;
    }
    each_precision(|c| {
        let (n, b, steps) = (10, 16, 300);
        let task = Quadratic::sample(c, n, b, 1).unwrap();
        for ls in ["armijo", "wolfe"] {
            let (cfg, t) = lbfgs_fixed(c, &task, ls, steps);
            for p in 0..b {
                let (f0, f) = (t.f[0][p], t.f[steps][p]);
                // strong Wolfe may still be taking steps at the floor (its curvature test passes on rounding
                // noise now and then: measured 1 of 16 problems in f64, at f = 2.6e-28): "running" is the truth
                // for those
                assert!(
                    matches!(t.status_of(p), Status::AtPrecision | Status::Running),
                    "{ls} ({}): problem {p} ends {} at f = {f:e} (f0 = {f0:e})",
                    c.precision(),
                    t.status_of(p)
                );
                // measured: f ≤ 5.7e-8 in f32 (f/f0 ≤ 1.3e-9), ≤ 6e-26 in f64
                assert!(f.is_finite() && f < 1e-6 * f0, "{ls}: f = {f:e}");
            }
            let floor = t.status_counts()[status::AT_PRECISION as usize];
            assert!(floor >= b * 3 / 4, "{ls}: {:?}", t.status_counts());
            eprintln!(
                "{ls} ({}): {:?} after {steps} steps, iterations {:?}",
                c.precision(),
                t.status_counts(),
                t.iterations[steps]
            );
            if c.precision() == Precision::F64 {
                let x0 = task.initial_point();
                for p in 0..3 {
                    let r = reference::run(&task, p, &x0[p * n..(p + 1) * n], &cfg, steps, 0.0);
                    assert_eq!(
                        r.status,
                        status::AT_PRECISION,
                        "{ls}: reference, problem {p}"
                    );
                }
            }
        }
    });
}

/// …and a line search that fails far from that floor is still "line search failed": a gradient that disagrees
/// with f (∇f reported as −2x for f = ‖x‖²) makes every trial step go uphill from the first iteration on, with a
/// predicted decrease ~1e5 ε·f and more, in f32 and f64, for Armijo and strong Wolfe; the f64 reference agrees.
#[test]
fn lbfgs_with_a_wrong_gradient_reports_line_search_failed() {
    use l2o::engine::status::Status;
    use l2o::tasks::{HostFn, HostProblem};
    use std::sync::Arc;
    if std::env::var("L2O_SKIP_GPU_TESTS").as_deref() == Ok("1") {
        return;
    }
    let (n, b) = (7, 3);
    let lg = |x: &[f64]| -> (f64, Vec<f64>) {
        (
            x.iter().map(|v| v * v).sum(),
            x.iter().map(|v| -2.0 * v).collect(),
        )
    };
    let fun: HostFn = Arc::new(move |theta, f, g| {
        for p in 0..b {
            let (fp, gp) = lg(&theta[p * n..(p + 1) * n]);
            f[p] = fp;
            g[p * n..(p + 1) * n].copy_from_slice(&gp);
        }
        Ok(())
    });
    let x0: Vec<f64> = (0..n * b).map(|i| 1.0 + 0.1 * i as f64).collect();
    each_precision(|c| {
        for ls in ["armijo", "wolfe"] {
            let problem = HostProblem::new("wrong gradient", n, b, fun.clone()).unwrap();
            let task = problem.task_at(c, x0.clone()).unwrap();
            let (cfg, t) = lbfgs_fixed(c, &task, ls, 5);
            for p in 0..b {
                assert_eq!(
                    t.status_of(p),
                    Status::LineSearchFailed,
                    "{ls} ({}): problem {p}",
                    c.precision()
                );
                assert_eq!(t.iterations[5][p], 0, "{ls}: no step was accepted");
            }
            let r = reference::run_fn(&lg, &x0[..n], &cfg, 5, 0.0);
            assert_eq!(r.status, status::LINE_SEARCH_FAILED, "{ls}: reference");
        }
    });
}
