//! Optimizees: device loss and gradient against the f64 oracle, the oracle against finite differences, bad
//! inputs as errors.

use l2o::engine::{Context, Precision, ScalarOut, View};
use l2o::tasks::{Logistic, Quadratic, Rosenbrock, Task, make_task};
use l2o::testing::{Tol, ctx, each_device};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

const BATCHES: [usize; 3] = [1, 3, 64];
const STRIDE: usize = 4;
const COL: usize = 2;
const SENTINEL: f64 = 7.25;

fn randn(rng: &mut StdRng, k: usize, scale: f64) -> Vec<f64> {
    (0..k)
        .map(|_| scale * rng.sample::<f64, _>(StandardNormal))
        .collect()
}

/// Errors of one evaluation on the device, relative to the oracle: (max_b |Δf_b|/|f_b|,
/// max_b max_i |Δg_bi| / max_i |g_bi|). θ lives at offset 2 / stride n+3 of its buffer and ∇f at offset 1 /
/// stride n+1 of another (or, with `shared`, θ and ∇f are slots 0 and 1 of one [B][2][n] buffer), so the view
/// arithmetic is exercised; elements of the gradient buffer outside the view must keep their sentinel value.
fn device_errors(ctx: &Context, task: &dyn Task, theta: &[f64], shared: bool) -> (f64, f64) {
    let (n, b) = (task.dim(), task.batch());
    let scal = ctx.zeros("scalars", b * STRIDE).unwrap();
    let out = ScalarOut {
        buf: &scal,
        stride: STRIDE,
        col: COL,
    };
    let (gpu_f, gpu_g, sentinels_ok) = if shared {
        let mut host = vec![SENTINEL; b * 2 * n];
        for p in 0..b {
            host[p * 2 * n..p * 2 * n + n].copy_from_slice(&theta[p * n..(p + 1) * n]);
        }
        let buf = ctx.upload("theta+grad", &host).unwrap();
        let d = task
            .loss_and_grad(ctx, buf.slot(0, 2, n), buf.slot(1, 2, n), out)
            .unwrap();
        ctx.submit(&d).unwrap();
        let all = ctx.read(&buf).unwrap();
        let g: Vec<f64> = (0..b)
            .flat_map(|p| all[p * 2 * n + n..(p + 1) * 2 * n].to_vec())
            .collect();
        // θ must be left as it was.
        let th_ok = (0..b).all(|p| {
            let dev = &all[p * 2 * n..p * 2 * n + n];
            let want = ctx
                .precision()
                .decode(&ctx.precision().encode(&theta[p * n..(p + 1) * n]));
            dev == want.as_slice()
        });
        (ctx.read(&scal).unwrap(), g, th_ok)
    } else {
        let (ts, gs) = (n + 3, n + 1);
        let mut th_host = vec![0.0; 2 + b * ts];
        for p in 0..b {
            th_host[2 + p * ts..2 + p * ts + n].copy_from_slice(&theta[p * n..(p + 1) * n]);
        }
        let th_buf = ctx.upload("theta", &th_host).unwrap();
        let g_buf = ctx.upload("grad", &vec![SENTINEL; 1 + b * gs]).unwrap();
        let tv = View {
            buf: &th_buf,
            offset: 2,
            stride: ts,
        };
        let gv = View {
            buf: &g_buf,
            offset: 1,
            stride: gs,
        };
        let d = task.loss_and_grad(ctx, tv, gv, out).unwrap();
        ctx.submit(&d).unwrap();
        let all = ctx.read(&g_buf).unwrap();
        let mut g = Vec::with_capacity(b * n);
        let mut ok = all[0] == SENTINEL;
        for p in 0..b {
            g.extend_from_slice(&all[1 + p * gs..1 + p * gs + n]);
            ok &= all[1 + p * gs + n] == SENTINEL;
        }
        (ctx.read(&scal).unwrap(), g, ok)
    };
    assert!(
        sentinels_ok,
        "{}: elements outside the views were modified",
        task.name()
    );
    let (mut ef, mut eg) = (0.0f64, 0.0f64);
    for p in 0..b {
        let (f, g) = task.oracle_loss_grad(p, &theta[p * n..(p + 1) * n]);
        let fd = gpu_f[p * STRIDE + COL];
        assert!(fd.is_finite(), "{}: problem {p}: f = {fd}", task.name());
        ef = ef.max((fd - f).abs() / f.abs().max(1e-300));
        let scale = g.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
        for i in 0..n {
            eg = eg.max((gpu_g[p * n + i] - g[i]).abs() / scale);
        }
        // Other scalar columns untouched.
        for c in (0..STRIDE).filter(|&c| c != COL) {
            assert_eq!(gpu_f[p * STRIDE + c], 0.0);
        }
    }
    (ef, eg)
}

/// Run the oracle comparison for every (n, B) case and both precisions.
///
/// Tolerance, relative to |f_b| and to max_i |∇f_b,i| of each problem. The kernels sum n (or N) products
/// sequentially per thread and the reductions use pairwise trees, so rounding grows like u·√n for random signs
/// (u·n worst case); θ and the data are also rounded to the device precision (relative u per entry), which the
/// loss can amplify through cancellation (quadratic, n = 1: f = (wθ − y)² with wθ ≈ y). f32 (u = 6e-8):
/// max(2e-5, 1e-5·√n); measured worst 3.9e-6 (that n = 1 quadratic loss), otherwise ≤ 1.3e-6, so ≥ 5× margin.
/// f64 (u = 1.1e-16): 1e-12; measured worst 1.6e-15 (the prelude's r_exp/r_log are accurate to ~1e-15, and the
/// gradients match the oracle exactly: same summation order).
fn check_cases(
    label: &str,
    ns: &[usize],
    skip: impl Fn(usize, usize) -> bool,
    make: impl Fn(&Context, usize, usize) -> (Box<dyn Task>, Vec<f64>),
) {
    each_device(|ctx| {
        let p = ctx.precision();
        let mut worst = (0.0f64, 0.0f64);
        for &n in ns {
            let tol = Tol {
                f32: (1e-5 * (n as f64).sqrt()).max(2e-5),
                f64: 1e-12,
            }
            .of(p);
            for &b in &BATCHES {
                if skip(n, b) {
                    continue;
                }
                let (task, theta) = make(ctx, n, b);
                assert_eq!((task.dim(), task.batch()), (n, b));
                let shared = n == 10 && b == 3;
                let (ef, eg) = device_errors(ctx, task.as_ref(), &theta, shared);
                eprintln!(
                    "{label} {p} n={n} B={b}: rel err f {ef:.2e}, grad {eg:.2e} (tol {tol:.1e})"
                );
                assert!(
                    ef <= tol && eg <= tol,
                    "{label} {p} n={n} B={b}: f err {ef:.3e}, grad err {eg:.3e} > {tol:.1e}"
                );
                worst = (worst.0.max(ef), worst.1.max(eg));
            }
        }
        eprintln!(
            "{label} {p}: worst rel err f {:.2e}, grad {:.2e}",
            worst.0, worst.1
        );
    });
}

#[test]
fn quadratic_matches_oracle() {
    // n = 1001 with B = 64 would need 1001²·64·4 B = 256 MB for W, over lavapipe's 128 MiB binding limit.
    check_cases(
        "quadratic",
        &[1, 2, 7, 10, 256, 258, 1001],
        |n, b| n > 300 && b > 3,
        |ctx, n, b| {
            let task = Quadratic::sample(ctx, n, b, 11 + n as u64).unwrap();
            let theta = randn(
                &mut StdRng::seed_from_u64(n as u64 * 100 + b as u64),
                n * b,
                1.0,
            );
            (Box::new(task), theta)
        },
    );
}

#[test]
fn rosenbrock_matches_oracle() {
    check_cases(
        "rosenbrock",
        &[2, 10, 256, 258, 1000],
        |_, _| false,
        |ctx, n, b| {
            let task = Rosenbrock::sample(ctx, n, b, 5).unwrap();
            let theta = randn(
                &mut StdRng::seed_from_u64(n as u64 * 100 + b as u64),
                n * b,
                1.0,
            );
            (Box::new(task), theta)
        },
    );
}

#[test]
fn logistic_matches_oracle() {
    check_cases(
        "logistic",
        &[1, 2, 7, 10, 256, 258, 1001],
        |_, _| false,
        |ctx, n, b| {
            let task = Logistic::sample(ctx, n, b, 3 + n as u64).unwrap();
            // z = x·θ ~ N(0, 4): a mix of both branches of softplus/σ and some saturated samples.
            let theta = randn(
                &mut StdRng::seed_from_u64(n as u64 * 100 + b as u64),
                n * b,
                2.0 / (n as f64).sqrt(),
            );
            (Box::new(task), theta)
        },
    );
}

/// A mixture of families on the device against its oracle (its blocks write their own rows of the shared θ,
/// ∇f and scalar views: the view arithmetic of `device_errors`), same tolerance as each family alone.
#[test]
fn mixture_matches_oracle() {
    check_cases(
        "mixture",
        &[2, 10, 256],
        |_, b| b < 3,
        |ctx, n, b| {
            let task = make_task(ctx, "quadratic-cond-rotated+rosenbrock+logistic", n, b, 9).unwrap();
            let theta = randn(
                &mut StdRng::seed_from_u64(n as u64 * 100 + b as u64),
                n * b,
                1.0 / (n as f64).sqrt(),
            );
            (task, theta)
        },
    );
}

/// Block i of a mixture is family i's own task with the block's size and `family_seed`: the same θ_0 and the
/// same oracle, problem by problem; the batch splits as evenly as it can (7 = 3 + 2 + 2).
#[test]
fn mixture_blocks_are_their_families() {
    use l2o::tasks::mixture::{block_sizes, family_seed};
    let Some(ctx) = ctx(Precision::F32) else {
        return;
    };
    let names = ["quadratic", "rosenbrock", "logistic"];
    let mix = make_task(&ctx, &names.join("+"), 6, 7, 4).unwrap();
    assert_eq!((mix.dim(), mix.batch()), (6, 7));
    assert_eq!(mix.name(), names.join("+"));
    assert_eq!(block_sizes(7, 3), vec![3, 2, 2]);
    let x0 = mix.initial_point();
    let mut b = 0;
    for (i, (name, size)) in names.iter().zip(block_sizes(7, 3)).enumerate() {
        let fam = make_task(&ctx, name, 6, size, family_seed(4, i)).unwrap();
        assert_eq!(&x0[b * 6..(b + size) * 6], fam.initial_point().as_slice(), "{name}");
        for j in 0..size {
            assert_eq!(mix.initial_point_of(b + j), fam.initial_point_of(j));
            let th: Vec<f64> = (0..6).map(|c| 0.3 * c as f64 - 0.5).collect();
            assert_eq!(mix.oracle_loss_grad(b + j, &th), fam.oracle_loss_grad(j, &th), "{name} {j}");
        }
        b += size;
    }
}

/// The recorded dispatches are replayable: write a new θ into the same buffer, submit the same dispatches
/// again, and get the new loss and gradient.
#[test]
fn dispatches_replay_with_new_theta() {
    each_device(|ctx| {
        let tol = Tol {
            f32: 1e-4,
            f64: 1e-12,
        }
        .of(ctx.precision());
        let (n, b) = (16, 3);
        let tasks: Vec<Box<dyn Task>> = ["quadratic", "rosenbrock", "logistic"]
            .iter()
            .map(|name| make_task(ctx, name, n, b, 9).unwrap())
            .collect();
        for task in &tasks {
            let th = ctx.upload("theta", &task.initial_point()).unwrap();
            let g = ctx.zeros("grad", n * b).unwrap();
            let scal = ctx.zeros("scal", b * STRIDE).unwrap();
            let d = task
                .loss_and_grad(
                    ctx,
                    th.view(n),
                    g.view(n),
                    ScalarOut {
                        buf: &scal,
                        stride: STRIDE,
                        col: 0,
                    },
                )
                .unwrap();
            let mut rng = StdRng::seed_from_u64(1);
            for _ in 0..3 {
                let theta = randn(&mut rng, n * b, 0.5);
                ctx.write(&th, 0, &theta).unwrap();
                ctx.submit(&d).unwrap();
                let (fs, gs) = (ctx.read(&scal).unwrap(), ctx.read(&g).unwrap());
                for p in 0..b {
                    let (f, gr) = task.oracle_loss_grad(p, &theta[p * n..(p + 1) * n]);
                    assert!(
                        (fs[p * STRIDE] - f).abs() <= tol * f.abs(),
                        "{}: f {} vs {f}",
                        task.name(),
                        fs[p * STRIDE]
                    );
                    let sc = gr.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                    for i in 0..n {
                        assert!(
                            (gs[p * n + i] - gr[i]).abs() <= tol * sc,
                            "{}: grad[{p}][{i}]",
                            task.name()
                        );
                    }
                }
            }
        }
    });
}

/// The oracle gradient against central differences of the oracle loss (f64, h = 1e-5·max(1, |θ_i|): the
/// truncation error h²·|f'''|/6 and the cancellation error u·|f|/h are both below 1e-8 relative here).
#[test]
fn oracle_gradient_matches_finite_differences() {
    let Some(ctx) = ctx(Precision::F32) else {
        return;
    };
    let b = 3;
    for (name, n) in [
        ("quadratic", 7),
        ("quadratic", 1),
        ("rosenbrock", 8),
        ("logistic", 7),
        ("logistic", 1),
    ] {
        let task = make_task(&ctx, name, n, b, 21).unwrap();
        let mut rng = StdRng::seed_from_u64(4);
        for p in 0..b {
            let theta = randn(&mut rng, n, 0.8);
            let (_, g) = task.oracle_loss_grad(p, &theta);
            let scale = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for i in 0..n {
                let h = 1e-5 * theta[i].abs().max(1.0);
                let (mut tp, mut tm) = (theta.clone(), theta.clone());
                tp[i] += h;
                tm[i] -= h;
                let fd =
                    (task.oracle_loss_grad(p, &tp).0 - task.oracle_loss_grad(p, &tm).0) / (2.0 * h);
                let err = (fd - g[i]).abs() / scale;
                assert!(
                    err <= 1e-6,
                    "{name} n={n} problem {p} coordinate {i}: fd {fd} vs {} (rel {err:.2e})",
                    g[i]
                );
            }
        }
    }
}

#[test]
fn initial_points_follow_the_seed() {
    let Some(ctx) = ctx(Precision::F32) else {
        return;
    };
    for name in ["quadratic", "rosenbrock", "logistic"] {
        let a = make_task(&ctx, name, 6, 2, 1).unwrap().initial_point();
        let b = make_task(&ctx, name, 6, 2, 1).unwrap().initial_point();
        assert_eq!(a, b, "{name}: same seed, same θ0");
        assert_eq!(a.len(), 12);
    }
    let c = Rosenbrock::classic(&ctx, 4, 2).unwrap().initial_point();
    assert_eq!(c, [-1.2, 1.0, -1.2, 1.0, -1.2, 1.0, -1.2, 1.0]);
    let s = Rosenbrock::sample(&ctx, 4, 2, 1).unwrap().initial_point();
    assert_ne!(s[..4], s[4..], "perturbed problems differ");
    assert!(s.iter().zip(&c).all(|(a, b)| (a - b).abs() < 1.0));
    assert!(
        Logistic::sample(&ctx, 6, 2, 1)
            .unwrap()
            .initial_point()
            .iter()
            .all(|&v| v == 0.0)
    );
    assert_ne!(
        Quadratic::sample(&ctx, 6, 1, 1).unwrap().w(),
        Quadratic::sample(&ctx, 6, 1, 2).unwrap().w()
    );
}

#[test]
fn quadratic_from_parts_known_values() {
    each_device(|ctx| {
        // W = [[1, 2], [3, 4]], y = (1, 1), θ = (1, −1): r = (−2, −2), f = 8, ∇f = 2Wᵀr = (−16, −24).
        let task = Quadratic::from_parts(
            ctx,
            2,
            1,
            vec![1.0, 2.0, 3.0, 4.0],
            vec![1.0, 1.0],
            vec![1.0, -1.0],
        )
        .unwrap();
        let th = ctx.upload("theta", &task.initial_point()).unwrap();
        let g = ctx.zeros("grad", 2).unwrap();
        let scal = ctx.zeros("scal", 1).unwrap();
        let d = task
            .loss_and_grad(
                ctx,
                th.view(2),
                g.view(2),
                ScalarOut {
                    buf: &scal,
                    stride: 1,
                    col: 0,
                },
            )
            .unwrap();
        ctx.submit(&d).unwrap();
        assert_eq!(ctx.read(&scal).unwrap(), [8.0]);
        assert_eq!(ctx.read(&g).unwrap(), [-16.0, -24.0]);
    });
}

fn err_text<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn bad_inputs_are_errors() {
    let Some(ctx) = ctx(Precision::F32) else {
        return;
    };
    let e = err_text(Rosenbrock::sample(&ctx, 7, 2, 0));
    assert!(e.contains("even") && e.contains("n = 7"), "{e}");
    assert!(err_text(Rosenbrock::classic(&ctx, 3, 1)).contains("even"));
    for name in ["quadratic", "rosenbrock", "logistic"] {
        let e = err_text(make_task(&ctx, name, 0, 2, 0));
        assert!(e.contains(name) && e.contains("n = 0"), "{e}");
        let e = err_text(make_task(&ctx, name, 4, 0, 0));
        assert!(e.contains(name) && e.contains("batch"), "{e}");
    }
    // Mixtures: an empty family, fewer problems than families, families of different dimensions.
    let e = err_text(make_task(&ctx, "quadratic+", 4, 2, 0));
    assert!(e.contains("joined by '+'"), "{e}");
    let e = err_text(make_task(&ctx, "quadratic+rosenbrock+logistic", 4, 2, 0));
    assert!(e.contains("batch 2 < 3 families"), "{e}");
    let e = err_text(make_task(&ctx, "quadratic+rosenbrock", 5, 2, 0));
    assert!(e.contains("rosenbrock") && e.contains("even"), "{e}");
    let e = err_text(make_task(&ctx, "quadratic+nonsense", 4, 2, 0));
    assert!(e.contains("unknown task \"nonsense\""), "{e}");
    // 20000² × 128 × 4 B = 204.8 GB: refused before anything is allocated, naming the task and shape.
    let e = err_text(Quadratic::sample(&ctx, 20000, 128, 0));
    assert!(
        e.contains("quadratic")
            && e.contains("n = 20000")
            && e.contains("batch = 128")
            && e.contains("max_storage_buffer_binding_size"),
        "{e}"
    );
    let e = err_text(make_task(&ctx, "rosenbrok", 4, 1, 0));
    assert!(
        e.contains("rosenbrok")
            && e.contains(
                "quadratic, quadratic-cond, quadratic-cond-rotated, rosenbrock, logistic"
            ),
        "{e}"
    );
    assert!(err_text(Logistic::with_options(&ctx, 4, 1, 0, 1e-3, 0)).contains("samples"));
    assert!(err_text(Logistic::with_options(&ctx, 4, 1, 10, f64::NAN, 0)).contains("λ"));
    assert!(
        err_text(Quadratic::from_parts(
            &ctx,
            2,
            1,
            vec![1.0; 3],
            vec![0.0; 2],
            vec![0.0; 2]
        ))
        .contains("W has 3")
    );
    assert!(
        err_text(Quadratic::from_parts(
            &ctx,
            2,
            1,
            vec![1.0; 4],
            vec![0.0; 2],
            vec![f64::NAN, 0.0]
        ))
        .contains("finite")
    );

    // Views that do not fit, and θ / ∇f overlapping in one buffer.
    let task = make_task(&ctx, "logistic", 4, 2, 0).unwrap();
    let small = ctx.zeros("small", 7).unwrap();
    let big = ctx.zeros("big", 16).unwrap();
    let scal = ctx.zeros("scal", 8).unwrap();
    let out = ScalarOut {
        buf: &scal,
        stride: 4,
        col: 0,
    };
    let e = err_text(task.loss_and_grad(&ctx, small.view(4), big.view(4), out));
    assert!(e.contains("theta") && e.contains("wrong dimensions"), "{e}");
    let e = err_text(task.loss_and_grad(
        &ctx,
        big.view(4),
        View {
            buf: &big,
            offset: 2,
            stride: 4,
        },
        out,
    ));
    assert!(e.contains("overlap"), "{e}");
    // Disjoint halves of one buffer are fine: [θ_0 θ_1 | g_0 g_1].
    assert!(
        task.loss_and_grad(
            &ctx,
            big.view(4),
            View {
                buf: &big,
                offset: 8,
                stride: 4
            },
            out
        )
        .is_ok()
    );
    let bad_out = ScalarOut {
        buf: &scal,
        stride: 4,
        col: 4,
    };
    assert!(
        task.loss_and_grad(
            &ctx,
            big.view(4),
            View {
                buf: &big,
                offset: 8,
                stride: 4
            },
            bad_out
        )
        .is_err()
    );
}

/// The conditioned quadratics: W Wᵀ = D² (diagonal, for the rotated family too, since W = D Qᵀ with Q orthogonal)
/// with condition number κ = max d²/min d² in [1e3, 1e4]; unrotated, W itself is diagonal. (The device loss and
/// gradient are the `quadratic` kernels, tested against the oracle above.)
#[test]
fn conditioned_quadratics_have_the_stated_spectrum() {
    let Some(ctx) = ctx(Precision::F64) else {
        return;
    };
    for rotated in [false, true] {
        let (n, b) = (12, 4);
        let q = Quadratic::conditioned(&ctx, n, b, 7, (1e3, 1e4), rotated).unwrap();
        for p in 0..b {
            let w = &q.w()[p * n * n..(p + 1) * n * n];
            let mut d2 = vec![];
            for i in 0..n {
                for j in 0..n {
                    let wwt: f64 = (0..n).map(|l| w[i * n + l] * w[j * n + l]).sum();
                    if i == j {
                        d2.push(wwt);
                    } else {
                        assert!(
                            wwt.abs() < 1e-9 * (1.0 + d2.iter().fold(0.0f64, |a, b| a.max(*b))),
                            "W Wᵀ not diagonal"
                        );
                    }
                    if !rotated && i != j {
                        assert_eq!(w[i * n + j], 0.0, "unrotated W must be diagonal");
                    }
                }
            }
            let kappa = d2.iter().fold(0.0f64, |a, b| a.max(*b))
                / d2.iter().fold(f64::MAX, |a, b| a.min(*b));
            assert!(
                (1e3 * (1.0 - 1e-9)..=1e4 * (1.0 + 1e-9)).contains(&kappa),
                "κ = {kappa}"
            );
        }
        let x0 = q.initial_point();
        let f0 = q.oracle_loss_grad(0, &x0[..n]).0;
        assert!(f0 > 0.0 && f0.is_finite());
    }
}

/// The public task kit's check on every built-in task, device and precision (the tolerances of
/// `check_cases`: f32 max(2e-5, 1e-5·√n), f64 1e-12; finite differences 1e-6 as in
/// `oracle_gradient_matches_finite_differences`), and proof that it can fail: a task whose oracle gradient is
/// 1 % off is caught by both comparisons.
#[test]
fn check_task_passes_every_builtin_task_and_catches_a_wrong_gradient() {
    use l2o::tasks::{CheckOptions, check_task};
    struct Wrong(Box<dyn Task>);
    impl Task for Wrong {
        fn name(&self) -> String {
            "wrong".into()
        }
        fn dim(&self) -> usize {
            self.0.dim()
        }
        fn batch(&self) -> usize {
            self.0.batch()
        }
        fn loss_and_grad(
            &self,
            ctx: &Context,
            theta: View,
            grad: View,
            out: ScalarOut,
        ) -> anyhow::Result<Vec<l2o::engine::Dispatch>> {
            self.0.loss_and_grad(ctx, theta, grad, out)
        }
        fn initial_point(&self) -> Vec<f64> {
            self.0.initial_point()
        }
        fn oracle_loss_grad(&self, b: usize, theta: &[f64]) -> (f64, Vec<f64>) {
            let (f, g) = self.0.oracle_loss_grad(b, theta);
            (f, g.iter().map(|v| v * 1.01).collect())
        }
    }
    each_device(|ctx| {
        for (name, n, b) in [
            ("quadratic", 7, 3),
            ("rosenbrock", 8, 3),
            ("logistic", 5, 4),
        ] {
            let task = make_task(ctx, name, n, b, 5).unwrap();
            let r = check_task(ctx, task.as_ref(), &CheckOptions::default()).unwrap();
            eprintln!("{r}");
            let tol = Tol {
                f32: (1e-5 * (n as f64).sqrt()).max(2e-5),
                f64: 1e-12,
            }
            .of(ctx.precision());
            r.within(tol, 1e-6).unwrap();
        }
        let wrong = Wrong(make_task(ctx, "quadratic", 6, 2, 5).unwrap());
        let r = check_task(ctx, &wrong, &CheckOptions::default()).unwrap();
        assert!(r.grad_err > 5e-3 && r.fd_err > 5e-3, "{r}");
        assert!(r.within(1e-3, 1e-3).is_err());
    });
}
