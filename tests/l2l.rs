//! L2L: the hand-derived adjoint against finite differences of the frozen-gradient surrogate (f64, CPU), and
//! the device forward/reverse sweeps against the f64 CPU reference.

use l2o::meta::l2l::{self, LstmConfig, Unroll};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// A batch of random quadratics f_b(θ) = ‖W_b θ − y_b‖² on the host (the oracle the surrogate evaluates).
struct HostQuad {
    n: usize,
    w: Vec<f64>,
    y: Vec<f64>,
}

impl HostQuad {
    fn new(n: usize, batch: usize, seed: u64) -> Self {
        let mut r = StdRng::seed_from_u64(seed);
        let mut g = |len: usize| -> Vec<f64> {
            (0..len)
                .map(|_| r.sample::<f64, _>(rand_distr::StandardNormal))
                .collect()
        };
        Self {
            n,
            w: g(batch * n * n),
            y: g(batch * n),
        }
    }
    fn lg(&self, b: usize, th: &[f64]) -> (f64, Vec<f64>) {
        let n = self.n;
        let w = &self.w[b * n * n..(b + 1) * n * n];
        let r: Vec<f64> = (0..n)
            .map(|i| (0..n).map(|j| w[i * n + j] * th[j]).sum::<f64>() - self.y[b * n + i])
            .collect();
        let g = (0..n)
            .map(|j| 2.0 * (0..n).map(|i| w[i * n + j] * r[i]).sum::<f64>())
            .collect();
        (r.iter().map(|v| v * v).sum(), g)
    }
}

fn setup(
    cfg: &LstmConfig,
    n: usize,
    batch: usize,
    steps: usize,
    seed: u64,
) -> (HostQuad, Vec<f64>, Vec<f64>, Vec<Vec<f64>>, Vec<f64>) {
    let q = HostQuad::new(n, batch, seed);
    let mut r = StdRng::seed_from_u64(seed + 100);
    let theta0: Vec<f64> = (0..batch * n)
        .map(|_| r.sample::<f64, _>(rand_distr::StandardNormal))
        .collect();
    // random φ around the initialisation, and a non-zero initial state (as after a previous unroll)
    let mut phi = cfg.init(seed + 200);
    phi.iter_mut()
        .for_each(|p| *p += 0.1 * r.sample::<f64, _>(rand_distr::StandardNormal));
    let states: Vec<Vec<f64>> = (0..batch * n)
        .map(|_| {
            (0..4 * cfg.hidden)
                .map(|_| 0.3 * r.sample::<f64, _>(rand_distr::StandardNormal))
                .collect()
        })
        .collect();
    let weights: Vec<f64> = (0..steps).map(|t| 0.5 + 0.1 * t as f64).collect();
    (q, theta0, phi, states, weights)
}

/// Proof of the adjoint (../shared/notes/adjoint-method.md): for random φ, the directional derivative of the
/// frozen-gradient surrogate by central differences (unit direction v, ε = 1e-5) equals ⟨∂L/∂φ, v⟩ to 1e-6
/// relative, for several seeds and directions, T = 6, n = 5 (odd), B = 3, both input modes. Kinks: the
/// preprocessing switches branch at |g| = e^{-10} ≈ 4.5e-5; the gradients here are O(1) and are frozen in the
/// surrogate, so no perturbation of φ crosses a branch.
#[test]
fn adjoint_matches_finite_differences_of_the_surrogate() {
    for (seed, preprocess) in [
        (1u64, Some(10.0)),
        (2, Some(10.0)),
        (3, None),
        (4, Some(10.0)),
    ] {
        let cfg = LstmConfig {
            hidden: 7,
            preprocess,
            scale: 0.1,
        };
        let (n, batch, steps) = (5, 3, 6);
        let (q, theta0, phi, states, weights) = setup(&cfg, n, batch, steps, seed);
        let lg = |b: usize, th: &[f64]| q.lg(b, th);
        let rec: Unroll = l2l::unroll(&cfg, &phi, &lg, n, batch, &theta0, &states, &weights);
        let grad = l2l::adjoint(&cfg, &phi, &rec, &weights);
        // the surrogate at φ is the recorded meta-loss
        assert!(
            (l2l::surrogate(&cfg, &phi, &lg, &rec, &states, &weights) - rec.meta_loss).abs()
                <= 1e-12 * rec.meta_loss.abs()
        );
        let mut r = StdRng::seed_from_u64(seed + 7);
        for dir in 0..3 {
            let v: Vec<f64> = (0..phi.len())
                .map(|_| r.sample::<f64, _>(rand_distr::StandardNormal))
                .collect();
            let vn = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            let v: Vec<f64> = v.iter().map(|x| x / vn).collect();
            let eps = 1e-5;
            let at = |s: f64| {
                let p: Vec<f64> = phi.iter().zip(&v).map(|(a, b)| a + s * b).collect();
                l2l::surrogate(&cfg, &p, &lg, &rec, &states, &weights)
            };
            let fd = (at(eps) - at(-eps)) / (2.0 * eps);
            let an: f64 = grad.iter().zip(&v).map(|(a, b)| a * b).sum();
            let rel = (fd - an).abs() / an.abs().max(1e-12);
            eprintln!(
                "seed {seed} {preprocess:?} dir {dir}: fd {fd:.10e} adjoint {an:.10e} rel {rel:.1e}"
            );
            assert!(
                rel < 1e-6,
                "seed {seed} dir {dir}: fd {fd} vs adjoint {an} (rel {rel:e})"
            );
        }
    }
}

/// Per-parameter check on a tiny model (n = 3, T = 5, B = 2, H = 3): every component of ∂L/∂φ against a
/// central difference of the surrogate, 1e-6 relative to max(|∂L/∂φ_j|, 1e-3·‖∂L/∂φ‖∞).
#[test]
fn adjoint_matches_finite_differences_per_parameter() {
    let cfg = LstmConfig {
        hidden: 3,
        preprocess: Some(10.0),
        scale: 0.5,
    };
    let (n, batch, steps) = (3, 2, 5);
    let (q, theta0, phi, states, weights) = setup(&cfg, n, batch, steps, 11);
    let lg = |b: usize, th: &[f64]| q.lg(b, th);
    let rec = l2l::unroll(&cfg, &phi, &lg, n, batch, &theta0, &states, &weights);
    let grad = l2l::adjoint(&cfg, &phi, &rec, &weights);
    let gmax = grad.iter().fold(0.0f64, |m, g| m.max(g.abs()));
    for j in 0..phi.len() {
        let at = |s: f64| {
            let mut p = phi.clone();
            p[j] += s;
            l2l::surrogate(&cfg, &p, &lg, &rec, &states, &weights)
        };
        let eps = 1e-6;
        let fd = (at(eps) - at(-eps)) / (2.0 * eps);
        let rel = (fd - grad[j]).abs() / grad[j].abs().max(1e-3 * gmax);
        assert!(
            rel < 1e-6,
            "φ[{j}]: fd {fd} vs adjoint {} (rel {rel:e})",
            grad[j]
        );
    }
}

/// The device unroll (forward sweep, stored trajectory, reverse sweep, ∂L/∂φ reduction) against the f64 CPU
/// reference on the same quadratics, φ, θ0 and initial state, for two unrolls with the state carried.
/// Tolerances: f64 1e-9 relative (the f64 prelude's exp/log/tanh are ~1e-14; measured 1e-15); f32 2e-5
/// relative for the per-step losses and 2e-5·‖∂L/∂φ‖∞ for ∂L/∂φ (measured 2e-7: the log-preprocessing and the
/// tanh/σ builtins each contribute ~1e-7, and each entry sums B·n·T products; 100× margin for other drivers).
#[test]
fn device_unroll_matches_cpu_reference() {
    use l2o::meta::l2l::device::{L2lTrainer, LstmKernels};
    use l2o::tasks::{Quadratic, Task};
    l2o::testing::each_precision(|c| {
        // the second configuration also runs the reverse sweep in time chunks of 4 + 2 steps
        for (cfg, tc) in [
            (
                LstmConfig {
                    hidden: 20,
                    preprocess: Some(10.0),
                    scale: 0.1,
                },
                None,
            ),
            (
                LstmConfig {
                    hidden: 5,
                    preprocess: None,
                    scale: 0.3,
                },
                Some(4),
            ),
        ] {
            let (n, batch, steps) = (7, 3, 6);
            let task = Quadratic::sample(c, n, batch, 5).unwrap();
            let mut r = StdRng::seed_from_u64(9);
            let mut phi = cfg.init(3);
            phi.iter_mut()
                .for_each(|p| *p += 0.05 * r.sample::<f64, _>(rand_distr::StandardNormal));
            let weights: Vec<f64> = (0..steps).map(|t| 1.0 + 0.1 * t as f64).collect();
            for kernels in l2o::testing::lstm_kernel_sets(c, &cfg) {
                let mut tr =
                    L2lTrainer::with_kernels(c, &cfg, n, batch, steps, &weights, kernels).unwrap();
                if let (Some(tc), LstmKernels::Loop) = (tc, kernels) {
                    tr.bufs.set_time_chunk(tc);
                    assert_eq!(tr.bufs.time_chunk, tc);
                }
                tr.bind(c, &task).unwrap();
                let lg = |b: usize, th: &[f64]| task.oracle_loss_grad(b, th);
                let mut theta = task.initial_point();
                let mut states = l2l::zero_states(&cfg, n * batch);
                let p = c.precision();
                for unroll in 0..2 {
                    if unroll > 0 {
                        tr.carry(c).unwrap();
                    }
                    let dev = tr.run(c, &phi).unwrap();
                    let rec = l2l::unroll(&cfg, &phi, &lg, n, batch, &theta, &states, &weights);
                    let want = l2l::adjoint(&cfg, &phi, &rec, &weights);
                    for b in 0..batch {
                        for t in 0..=steps {
                            let (got, w) = (dev.losses[b * (steps + 1) + t], rec.losses[t][b]);
                            let e = (got - w).abs() / w.abs().max(1e-6);
                            let tol = l2o::testing::Tol {
                                f32: 2e-5,
                                f64: 1e-9,
                            }
                            .of(p);
                            assert!(
                                e < tol,
                                "{p} unroll {unroll}: loss b={b} t={t}: {got} vs {w} ({e:e})"
                            );
                        }
                    }
                    let gmax = want.iter().fold(0.0f64, |m, g| m.max(g.abs()));
                    let err = dev
                        .dphi
                        .iter()
                        .zip(&want)
                        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
                        / gmax;
                    eprintln!("{p} H={} {} unroll {unroll}:", cfg.hidden, kernels.name());
                    eprintln!(
                        "  meta-loss {} vs {}, max |Δ∂φ|/‖∂φ‖∞ = {err:.2e}",
                        dev.meta_loss, rec.meta_loss
                    );
                    let tol = l2o::testing::Tol {
                        f32: 2e-5,
                        f64: 1e-9,
                    }
                    .of(p);
                    assert!(
                        err < tol,
                        "{p} {} unroll {unroll}: ∂L/∂φ differs by {err:e}",
                        kernels.name()
                    );
                    theta = rec.thetas[steps].clone();
                    states = rec.states[steps].clone();
                }
            }
        }
    });
}

fn small_run(epochs: usize, seed: u64) -> (LstmConfig, l2o::meta::state::TrainConfig) {
    let lstm = LstmConfig {
        hidden: 8,
        preprocess: Some(10.0),
        scale: 1.0,
    };
    let tc = l2o::meta::state::TrainConfig {
        task: "quadratic".into(),
        dim: 5,
        batch: 16,
        horizon: 20,
        unroll: 5,
        epochs,
        meta_optimizer: "adam".into(),
        meta_lr: 0.01,
        meta_lr_final: None,
        seed,
        val_batch: 16,
        validate_every: 2,
        max_nonfinite: 3,
        shards: 1,
        task_options: Default::default(),
    };
    (lstm, tc)
}

/// `--resume`: training 2 epochs, checkpointing, loading and training 2 more gives bit-identical state to 4
/// uninterrupted epochs on the same adapter (φ, best φ, Adam moments, history).
#[test]
fn resume_reproduces_an_uninterrupted_run() {
    use l2o::meta::{checkpoint, train};
    let Some(c) = l2o::testing::ctx(l2o::engine::Precision::F32) else {
        return;
    };
    let (lstm, tc) = small_run(4, 3);
    let mut full = l2o::meta::l2l::train::new_state(lstm, tc.clone()).unwrap();
    train::train(&c, &mut full, None, &mut |_, _, _| {}, &mut |_, _| {}).unwrap();
    let dir = std::env::temp_dir().join(format!("l2o-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ck.l2o");
    let mut half =
        l2o::meta::l2l::train::new_state(lstm, l2o::meta::state::TrainConfig { epochs: 2, ..tc })
            .unwrap();
    train::train(
        &c,
        &mut half,
        Some(&path),
        &mut |_, _, _| {},
        &mut |_, _| {},
    )
    .unwrap();
    let mut resumed = checkpoint::load(&path).unwrap();
    assert_eq!(resumed, half, "checkpoint round trip");
    resumed.train.epochs = 4;
    train::train(
        &c,
        &mut resumed,
        Some(&path),
        &mut |_, _, _| {},
        &mut |_, _| {},
    )
    .unwrap();
    let mut full_cmp = full.clone();
    full_cmp.train.epochs = 4;
    assert_eq!(
        resumed, full_cmp,
        "resumed run differs from the uninterrupted one"
    );
    assert_eq!(full.history.len(), 4);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Meta-training lowers the validation loss of the LSTM (a few epochs on 5-d quadratics).
#[test]
fn meta_training_improves_validation_loss() {
    use l2o::meta::train;
    let Some(c) = l2o::testing::ctx(l2o::engine::Precision::F32) else {
        return;
    };
    let (lstm, tc) = small_run(12, 5);
    let mut st = l2o::meta::l2l::train::new_state(lstm, tc.clone()).unwrap();
    let val = l2o::tasks::make_task(
        &c,
        "quadratic",
        tc.dim,
        tc.val_batch,
        l2o::meta::state::validation_seed(tc.seed),
    )
    .unwrap();
    let before =
        l2o::meta::l2l::train::evaluate(&c, &lstm, &st.phi, val.as_ref(), tc.horizon).unwrap();
    train::train(&c, &mut st, None, &mut |_, _, _| {}, &mut |_, _| {}).unwrap();
    let after = st.best_val.unwrap();
    eprintln!(
        "validation loss: {before} → {after} (best at epoch {})",
        st.best_epoch
    );
    assert!(
        after < 0.5 * before,
        "meta-training did not help: {before} → {after}"
    );
}

/// Non-finite meta-gradients are skipped and counted; persisting, they stop training with a clear error and
/// the checkpoint on disk stays finite.
#[test]
fn persistent_non_finite_meta_gradients_stop_training() {
    use l2o::meta::{checkpoint, train};
    let Some(c) = l2o::testing::ctx(l2o::engine::Precision::F32) else {
        return;
    };
    let (mut lstm, tc) = small_run(3, 7);
    lstm.scale = 1e30; // the first step overflows θ: every loss and meta-gradient is non-finite
    let dir = std::env::temp_dir().join(format!("l2o-nan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ck.l2o");
    let mut st = l2o::meta::l2l::train::new_state(lstm, tc).unwrap();
    let phi0 = st.phi.clone();
    let e = train::train(&c, &mut st, Some(&path), &mut |_, _, _| {}, &mut |_, _| {}).unwrap_err();
    assert!(format!("{e}").contains("non-finite meta-gradients"), "{e}");
    assert_eq!(st.skipped_total, 3);
    assert_eq!(
        st.phi, phi0,
        "no update may be applied from a non-finite gradient"
    );
    if path.exists() {
        assert!(
            checkpoint::load(&path)
                .unwrap()
                .phi
                .iter()
                .all(|p| p.is_finite())
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The stepper for user parameters: host slices and wrapped device buffers give the same iterates as the f64
/// reference `l2l::step` applied coordinatewise (f32: 1e-5 relative to max|θ|, f64: 1e-12).
#[test]
fn stepper_matches_reference_on_host_slices_and_buffers() {
    use l2o::engine::Elem;
    use l2o::meta::l2l::optimizer::LstmStepper;
    l2o::testing::each_precision(|c| {
        let cfg = LstmConfig {
            hidden: 6,
            preprocess: Some(10.0),
            scale: 0.3,
        };
        let phi = cfg.init(4);
        let n = 9;
        let grad_of = |x: &[f64]| -> Vec<f64> {
            x.iter()
                .enumerate()
                .map(|(i, v)| 2.0 * (i as f64 + 1.0) * (v - 0.5))
                .collect()
        };
        let mut want = vec![0.0; n];
        let mut states = l2l::zero_states(&cfg, n);
        let mut host = want.clone();
        let mut st = LstmStepper::new(c, &cfg, &phi, n, 1).unwrap();
        let theta = c
            .wrap(c.zeros("user theta", n).unwrap().buf, n, Elem::Real)
            .unwrap();
        let grad = c.zeros("user grad", n).unwrap();
        let mut st2 = LstmStepper::new(c, &cfg, &phi, n, 1).unwrap();
        for _ in 0..5 {
            let g = grad_of(&want);
            for k in 0..n {
                let (u, s) = l2l::step(&cfg, &phi, g[k], &states[k]);
                want[k] += cfg.scale * u;
                states[k] = s;
            }
            let gh = grad_of(&host);
            st.step_host(c, &mut host, &gh).unwrap();
            let dev = c.read(&theta).unwrap();
            c.write(&grad, 0, &grad_of(&dev)).unwrap();
            st2.step_buffers(c, &theta, &grad).unwrap();
        }
        let dev = c.read(&theta).unwrap();
        let tol = l2o::testing::Tol {
            f32: 1e-5,
            f64: 1e-12,
        }
        .of(c.precision());
        assert!(
            l2o::engine::oracle::max_rel_err(&host, &want) < tol,
            "{} host: {host:?} vs {want:?}",
            c.precision()
        );
        assert!(
            l2o::engine::oracle::max_rel_err(&dev, &want) < tol,
            "{} buffers: {dev:?} vs {want:?}",
            c.precision()
        );
    });
}

/// A sharded meta-batch: the mean of two device trainers' unrolls (3 problems each, their own quadratics)
/// is the meta-gradient of the union of their 6 problems, computed by the f64 reference in one batch.
/// Tolerance as in `device_unroll_matches_cpu_reference` (f32: 2e-5 relative to ‖∂L/∂φ‖∞).
#[test]
fn sharded_meta_batch_is_the_union_of_its_shards() {
    use l2o::meta::l2l::device::{L2lTrainer, UnrollResult};
    use l2o::tasks::{Quadratic, Task};
    let Some(c) = l2o::testing::ctx(l2o::engine::Precision::F32) else {
        return;
    };
    let cfg = LstmConfig {
        hidden: 8,
        preprocess: Some(10.0),
        scale: 0.5,
    };
    let (n, batch, steps) = (5, 3, 4);
    let weights = l2l::unit_weights(steps);
    let tasks = [
        Quadratic::sample(&c, n, batch, 11).unwrap(),
        Quadratic::sample(&c, n, batch, 12).unwrap(),
    ];
    let phi = cfg.init(4);
    let mut results = vec![];
    for t in &tasks {
        let mut tr = L2lTrainer::new(&c, &cfg, n, batch, steps, &weights).unwrap();
        tr.bind(&c, t).unwrap();
        results.push(tr.run(&c, &phi).unwrap());
    }
    let got = UnrollResult::mean(&results);
    let lg = |b: usize, th: &[f64]| tasks[b / batch].oracle_loss_grad(b % batch, th);
    let theta0: Vec<f64> = tasks.iter().flat_map(|t| t.initial_point()).collect();
    let states = l2l::zero_states(&cfg, 2 * batch * n);
    let rec = l2l::unroll(&cfg, &phi, &lg, n, 2 * batch, &theta0, &states, &weights);
    let want = l2l::adjoint(&cfg, &phi, &rec, &weights);
    let gmax = want.iter().fold(0.0f64, |m, g| m.max(g.abs()));
    let err = got
        .dphi
        .iter()
        .zip(&want)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
        / gmax;
    assert!(
        err < 2e-5,
        "sharded ∂L/∂φ differs from the union's by {err:e}"
    );
    let e = (got.meta_loss - rec.meta_loss).abs() / rec.meta_loss.abs();
    assert!(
        e < 2e-5,
        "meta-loss {} vs {} ({e:e})",
        got.meta_loss,
        rec.meta_loss
    );
}
