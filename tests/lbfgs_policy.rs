//! L-BFGS-π (seed 003): the hand-derived adjoint through the policy, the Gram features and the two-loop
//! recursion against finite differences of the frozen-gradient surrogate (f64, CPU).

use l2o::meta::policy::{self, PolicyConfig, PolicyUnroll};
use rand::{Rng, SeedableRng, rngs::StdRng};

fn normal(r: &mut StdRng, len: usize) -> Vec<f64> {
    (0..len)
        .map(|_| r.sample::<f64, _>(rand_distr::StandardNormal))
        .collect()
}

/// A non-convex smooth test function per problem: f(x) = ½‖A x − b‖² + (c/4) Σ x_i⁴ − (e/2) Σ x_i²·cos(x_i)
/// (the last term makes pairs with s ᵀy ≤ 0 and direction resets possible).
struct HostFn {
    n: usize,
    a: Vec<f64>,
    b: Vec<f64>,
    c: f64,
    e: f64,
}

impl HostFn {
    fn new(n: usize, seed: u64, e: f64) -> Self {
        let mut r = StdRng::seed_from_u64(seed);
        let a = normal(&mut r, n * n)
            .into_iter()
            .map(|v| v / (n as f64).sqrt())
            .collect();
        Self {
            n,
            a,
            b: normal(&mut r, n),
            c: 0.05,
            e,
        }
    }
    fn lg(&self, x: &[f64]) -> (f64, Vec<f64>) {
        let n = self.n;
        let r: Vec<f64> = (0..n)
            .map(|i| (0..n).map(|j| self.a[i * n + j] * x[j]).sum::<f64>() - self.b[i])
            .collect();
        let mut f = 0.5 * r.iter().map(|v| v * v).sum::<f64>();
        let mut g: Vec<f64> = (0..n)
            .map(|j| (0..n).map(|i| self.a[i * n + j] * r[i]).sum::<f64>())
            .collect();
        for i in 0..n {
            let (xi, c) = (x[i], x[i].cos());
            f += self.c * xi.powi(4) / 4.0 - 0.5 * self.e * xi * xi * c;
            g[i] += self.c * xi.powi(3) - self.e * (xi * c - 0.5 * xi * xi * xi.sin());
        }
        (f, g)
    }
}

/// Random φ: the initialisation plus N(0, σ²) noise; σ large enough makes the clip active at some steps.
fn random_phi(cfg: &PolicyConfig, seed: u64, sigma: f64) -> Vec<f64> {
    let mut r = StdRng::seed_from_u64(seed);
    let mut phi = cfg.init(seed);
    phi.iter_mut()
        .for_each(|p| *p += sigma * r.sample::<f64, _>(rand_distr::StandardNormal));
    phi
}

/// Smallest distance of p to a clip bound over the recorded steps (kink margin of the finite differences).
fn clip_margin(cfg: &PolicyConfig, rec: &PolicyUnroll) -> f64 {
    rec.steps
        .iter()
        .map(|s| {
            (s.pol.p - cfg.tau_min)
                .abs()
                .min((s.pol.p - cfg.tau_max).abs())
        })
        .fold(f64::INFINITY, f64::min)
}

/// Proof of the adjoint: for random φ the directional derivative of the frozen-gradient surrogate by central
/// differences (unit direction, ε = 1e-6) equals ⟨∂L/∂φ, v⟩ to 1e-6 relative. Cases cover the clip inactive
/// at every step, the clip active at some steps (both bounds), and skipped pairs / direction resets on the
/// non-convex function. Kinks (a bound, a pair test or a reset switching inside ±ε) are excluded by asserting
/// a margin: p is at least 1e-4 from each bound at every step, far more than ε·‖∂p/∂φ‖.
#[test]
fn policy_adjoint_matches_finite_differences_of_the_surrogate() {
    let cfg = PolicyConfig {
        m: 3,
        ..PolicyConfig::default()
    };
    let (n, steps) = (7, 12);
    let mut saw = (0usize, 0usize, 0usize, 0usize); // (inside, at a bound, skipped pairs, resets)
    for (seed, sigma, e) in [
        (1u64, 0.0, 0.0),
        (2, 0.02, 0.0),
        (3, 0.05, 0.0),
        (4, 0.05, 1.0),
        (5, 0.08, 1.5),
        (6, 0.03, 1.5),
    ] {
        let fun = HostFn::new(n, seed, e);
        let lg = |_b: usize, x: &[f64]| fun.lg(x);
        let mut r = StdRng::seed_from_u64(seed + 50);
        let x0: Vec<f64> = normal(&mut r, n).iter().map(|v| 2.0 * v).collect();
        let phi = random_phi(&cfg, seed + 10, sigma);
        let weights: Vec<f64> = (0..steps).map(|k| 1.0 + 0.1 * k as f64).collect();
        let rec = policy::unroll(&cfg, &phi, &lg, 0, &x0, &weights, None);
        let margin = clip_margin(&cfg, &rec);
        assert!(
            margin > 1e-4,
            "seed {seed}: p within {margin:e} of a clip bound"
        );
        let inside = rec.steps.iter().filter(|s| s.pol.inside(&cfg)).count();
        saw.0 += inside;
        saw.1 += steps - inside;
        saw.2 += rec.rho.iter().filter(|&&r| r == 0.0).count();
        saw.3 += rec.steps.iter().filter(|s| s.reset).count();
        assert!(
            (policy::surrogate(&cfg, &phi, &lg, 0, &rec, &weights) - rec.meta_loss).abs()
                <= 1e-12 * rec.meta_loss.abs()
        );
        let mut grad = vec![0.0; phi.len()];
        policy::adjoint(&cfg, &phi, &rec, &weights, 1.0, &mut grad);
        let gn = grad.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!(
            gn > 0.0,
            "seed {seed}: zero meta-gradient (clip active at every step?)"
        );
        for dir in 0..3 {
            let v = normal(&mut r, phi.len());
            let vn = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            let v: Vec<f64> = v.iter().map(|x| x / vn).collect();
            let eps = 1e-6;
            let at = |s: f64| {
                let p: Vec<f64> = phi.iter().zip(&v).map(|(a, b)| a + s * b).collect();
                policy::surrogate(&cfg, &p, &lg, 0, &rec, &weights)
            };
            let fd = (at(eps) - at(-eps)) / (2.0 * eps);
            let an: f64 = grad.iter().zip(&v).map(|(a, b)| a * b).sum();
            let rel = (fd - an).abs() / an.abs().max(1e-3 * gn);
            eprintln!(
                "seed {seed} dir {dir}: inside {inside}/{steps} fd {fd:.10e} adjoint {an:.10e} rel {rel:.1e}"
            );
            assert!(
                rel < 1e-6,
                "seed {seed} dir {dir}: fd {fd} vs adjoint {an} (rel {rel:e})"
            );
        }
    }
    eprintln!(
        "steps with the clip inactive {}, active {}, skipped pairs {}, resets {}",
        saw.0, saw.1, saw.2, saw.3
    );
    assert!(
        saw.0 > 0 && saw.1 > 0,
        "the cases must cover both clip regimes: {saw:?}"
    );
}

/// The device L-BFGS-π (two-loop, Gram of [d, g, s, y], `policy_step` kernel, constant acceptance) against the
/// f64 CPU reference unroll, per problem and step, on random quadratics (n = 1, n = 37 — not a multiple of the
/// workgroup size — and n = 300) and 2-d Rosenbrock, with φ random enough that some steps clip.
/// Tolerances on f(x_k), relative to max(|f|, floor·f(x_0)) with floor 1e-12 (f64) / 1e-5 (f32): f64 1e-9 (the f64 prelude's log/exp are ~1e-14; the device computes
/// s = (x + t d) − x where the reference has t·d); f32 2e-3 over the first 6 steps (f32 inner products and the
/// log features move t by ~1e-6 relative per step and L-BFGS amplifies it).
#[test]
fn device_lbfgs_policy_matches_cpu_reference() {
    use l2o::engine::Precision;
    use l2o::optim::{Lbfgs, RunOptions, run};
    use l2o::tasks::{Quadratic, Rosenbrock, Task};
    use l2o::testing::{Tol, each_precision};
    each_precision(|c| {
        let f64p = c.precision() == Precision::F64;
        let steps = if f64p { 20 } else { 6 };
        let cfg = PolicyConfig {
            m: 5,
            curvature_eps: Some(if f64p { 1e-10 } else { 1e-5 }),
            ..PolicyConfig::default()
        };
        let tasks: Vec<Box<dyn Task>> = vec![
            Box::new(Quadratic::sample(c, 1, 2, 3).unwrap()),
            Box::new(Quadratic::sample(c, 37, 3, 4).unwrap()),
            Box::new(Quadratic::sample(c, 300, 2, 5).unwrap()),
            Box::new(Rosenbrock::classic(c, 2, 1).unwrap()),
        ];
        let (mut clipped, mut worst) = (0, 0f64);
        for (i, task) in tasks.iter().enumerate() {
            let phi = random_phi(&cfg, 30 + i as u64, 0.05);
            let mut opt = Lbfgs::with_policy(cfg, phi.clone()).unwrap();
            let o = RunOptions::fixed(steps);
            let tr = run(c, task.as_ref(), &mut opt, &o, &mut |_| {}).unwrap();
            let (n, bt) = (task.dim(), task.batch());
            let x0 = task.initial_point();
            let weights = vec![1.0; steps];
            for b in 0..bt {
                let lg = |b: usize, x: &[f64]| task.oracle_loss_grad(b, x);
                let r = policy::unroll(&cfg, &phi, &lg, b, &x0[b * n..(b + 1) * n], &weights, None);
                clipped += r.steps.iter().filter(|s| !s.pol.inside(&cfg)).count();
                // losses that reached rounding level (n = 1 is solved in two steps) compare to a floor
                let floor = r.f[0].abs() * if f64p { 1e-12 } else { 1e-5 };
                for k in 0..=steps {
                    let e = (tr.f[k][b] - r.f[k]).abs() / r.f[k].abs().max(floor);
                    worst = worst.max(e);
                    let tol = Tol {
                        f32: 2e-3,
                        f64: 1e-9,
                    }
                    .of(c.precision());
                    assert!(
                        e < tol,
                        "{} {} problem {b} step {k}: device {} vs reference {} ({e:e})",
                        c.precision(),
                        task.name(),
                        tr.f[k][b],
                        r.f[k]
                    );
                }
            }
        }
        eprintln!(
            "{}: worst relative deviation {worst:.1e}; reference steps with an active clip: {clipped}",
            c.precision()
        );
        assert!(clipped > 0, "φ must make the clip active at some steps");
    });
}

/// The device meta-training step (forward record + reverse sweep, `l2o_meta::policy::device`) against the f64 CPU
/// reference unroll and adjoint: meta-loss and ∂L/∂φ, relative to ‖∂L/∂φ‖∞, on quadratics with n = 37 (not a
/// multiple of the workgroup size) and n = 300, B = 3, K = 12 and m = 3 (so the ring wraps), φ making some steps
/// clip. Tolerances: f64 1e-8 (measured 5.5e-12); f32 2e-2 (measured 1.1e-3: f32 Gram entries, their logs and the two-loop over
/// 12 steps).
#[test]
fn device_policy_adjoint_matches_cpu_reference() {
    use l2o::engine::Precision;
    use l2o::meta::policy::device::PolicyTrainer;
    use l2o::meta::policy::fused::Schedule;
    use l2o::tasks::{Quadratic, Task};
    use l2o::testing::{Tol, each_precision};
    each_precision(|c| {
        for schedule in [Schedule::Fused, Schedule::Vectors] {
            let f64p = c.precision() == Precision::F64;
            let cfg = PolicyConfig {
                m: 3,
                curvature_eps: Some(if f64p { 1e-10 } else { 1e-5 }),
                ..PolicyConfig::default()
            };
            let steps = 12;
            let weights: Vec<f64> = (0..steps).map(|k| 1.0 + 0.05 * k as f64).collect();
            for (i, n) in [37usize, 300].into_iter().enumerate() {
                let bt = 3;
                let task = Quadratic::sample(c, n, bt, 40 + i as u64).unwrap();
                let phi = random_phi(&cfg, 60 + i as u64, 0.06);
                let mut tr =
                    PolicyTrainer::with_schedule(c, &cfg, n, bt, &weights, schedule).unwrap();
                assert_eq!(tr.schedule(), schedule);
                tr.bind(c, &task).unwrap();
                let res = tr.run(c, &phi).unwrap();
                let x0 = task.initial_point();
                let lg = |b: usize, x: &[f64]| task.oracle_loss_grad(b, x);
                let mut grad = vec![0.0; phi.len()];
                let mut loss = 0.0;
                let mut clipped = 0;
                for b in 0..bt {
                    let r =
                        policy::unroll(&cfg, &phi, &lg, b, &x0[b * n..(b + 1) * n], &weights, None);
                    clipped += r.steps.iter().filter(|s| !s.pol.inside(&cfg)).count();
                    policy::adjoint(&cfg, &phi, &r, &weights, 1.0 / bt as f64, &mut grad);
                    loss += r.meta_loss / bt as f64;
                }
                let gmax = grad.iter().fold(0f64, |a, v| a.max(v.abs()));
                let err = grad
                    .iter()
                    .zip(&res.dphi)
                    .fold(0f64, |a, (x, y)| a.max((x - y).abs()))
                    / gmax;
                let lerr = (loss - res.meta_loss).abs() / loss.abs();
                eprintln!(
                    "{} {schedule:?} n={n}: meta-loss rel err {lerr:.1e}, ∂φ err/‖∂φ‖∞ {err:.1e} (‖∂φ‖∞ {gmax:.3e}), \
                 clipped steps {clipped}, {} dispatches per outer step",
                    c.precision(),
                    tr.dispatches_per_step()
                );
                let tol = Tol {
                    f32: 2e-2,
                    f64: 1e-8,
                }
                .of(c.precision());
                assert!(
                    gmax > 0.0 && clipped > 0,
                    "the case must exercise both clip regimes"
                );
                assert!(
                    lerr < tol && err < tol,
                    "{} {schedule:?}: loss {lerr:e}, ∂φ {err:e}",
                    c.precision()
                );
                if schedule == Schedule::Fused {
                    // K + 1 task evaluations (≤ 4 dispatches each for the quadratic), K + 1 steps, K reverse
                    // steps; the vector path records ~77 per inner step
                    assert!(tr.dispatches_per_step() <= 6 * steps + 5);
                }
            }
        }
    });
}

/// A sharded meta-batch: the mean (`Unroll::mean`, as the meta-training loop combines shards) of two device
/// trainers' steps — 3 problems each, their own sampled quadratics (n = 37, K = 12, m = 3, φ making some steps
/// clip: the setup of `device_policy_adjoint_matches_cpu_reference`) — is the meta-loss and ∂L/∂φ of the union of
/// their 6 problems, computed by the f64 reference in one batch (scale 1/6). Both are normalised per problem
/// (1/B), so the mean of equal shards is the union's; a sum of the shards would be off by 100%, and the test
/// asserts that either shard alone is more than twice the tolerance from the union (measured 16% in L, 12% in
/// ∂L/∂φ), so the comparison can fail. Tolerances as in `device_policy_adjoint_matches_cpu_reference` (relative
/// to |L| and to ‖∂L/∂φ‖∞): f64 1e-8 (measured ≤ 1e-15), f32 2e-2 (measured 6e-7 on lavapipe; the single-batch
/// test's bound, which also covers n = 300).
#[test]
fn sharded_meta_batch_is_the_union_of_its_shards() {
    use l2o::engine::Precision;
    use l2o::meta::learned::Unroll;
    use l2o::meta::policy::device::PolicyTrainer;
    use l2o::tasks::{Quadratic, Task};
    use l2o::testing::{Tol, each_precision};
    each_precision(|c| {
        let p = c.precision();
        let cfg = PolicyConfig {
            m: 3,
            curvature_eps: Some(if p == Precision::F64 { 1e-10 } else { 1e-5 }),
            ..PolicyConfig::default()
        };
        let (n, batch, steps) = (37, 3, 12);
        let weights: Vec<f64> = (0..steps).map(|k| 1.0 + 0.05 * k as f64).collect();
        let tasks = [
            Quadratic::sample(c, n, batch, 40).unwrap(),
            Quadratic::sample(c, n, batch, 41).unwrap(),
        ];
        let phi = random_phi(&cfg, 60, 0.06);
        let shards: Vec<Unroll> = tasks
            .iter()
            .map(|t| {
                let mut tr = PolicyTrainer::new(c, &cfg, n, batch, &weights).unwrap();
                tr.bind(c, t).unwrap();
                let r = tr.run(c, &phi).unwrap();
                Unroll {
                    meta_loss: r.meta_loss,
                    dphi: r.dphi,
                }
            })
            .collect();
        let got = Unroll::mean(shards.clone());
        // the f64 reference on the union: problem b is problem b % B of shard b / B
        let lg = |b: usize, x: &[f64]| tasks[b / batch].oracle_loss_grad(b % batch, x);
        let x0: Vec<f64> = tasks.iter().flat_map(|t| t.initial_point()).collect();
        let union = 2 * batch;
        let mut want = vec![0.0; phi.len()];
        let mut loss = 0.0;
        let mut clipped = 0;
        for b in 0..union {
            let r = policy::unroll(&cfg, &phi, &lg, b, &x0[b * n..(b + 1) * n], &weights, None);
            clipped += r.steps.iter().filter(|s| !s.pol.inside(&cfg)).count();
            policy::adjoint(&cfg, &phi, &r, &weights, 1.0 / union as f64, &mut want);
            loss += r.meta_loss / union as f64;
        }
        let gmax = want.iter().fold(0f64, |a, v| a.max(v.abs()));
        let errs = |u: &Unroll| {
            let g = u
                .dphi
                .iter()
                .zip(&want)
                .fold(0f64, |a, (x, y)| a.max((x - y).abs()))
                / gmax;
            ((u.meta_loss - loss).abs() / loss.abs(), g)
        };
        let (lerr, err) = errs(&got);
        let (s0, s1) = (errs(&shards[0]), errs(&shards[1]));
        eprintln!(
            "{p}: sharded vs union meta-loss {lerr:.1e}, ∂φ err/‖∂φ‖∞ {err:.1e} (‖∂φ‖∞ {gmax:.3e}); \
             one shard alone: ({:.1e}, {:.1e}), ({:.1e}, {:.1e}); clipped reference steps {clipped}",
            s0.0, s0.1, s1.0, s1.1
        );
        let tol = Tol {
            f32: 2e-2,
            f64: 1e-8,
        }
        .of(p);
        assert!(
            gmax > 0.0 && clipped > 0,
            "the case must exercise both clip regimes"
        );
        for (i, s) in [s0, s1].into_iter().enumerate() {
            assert!(
                s.0 > 2.0 * tol && s.1 > 2.0 * tol,
                "{p}: shard {i} alone is within 2× the tolerance of the union ({s:?}): the test could not fail"
            );
        }
        assert!(
            lerr < tol && err < tol,
            "{p}: sharded vs union: meta-loss {lerr:e}, ∂φ {err:e}"
        );
    });
}
