//! The MNIST MLP optimizee: device loss and gradient against the f64 oracle on synthetic image data (so the
//! test needs no data files), the oracle gradient against finite differences, and the real data when present.

use l2o::engine::{Precision, ScalarOut};
use l2o::tasks::idx::MnistData;
use l2o::tasks::{Activation, Mlp, MlpConfig, Task};
use l2o::testing::{Tol, each_device};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// 300 training and 50 test images of 7×7 random pixels with random labels.
fn synthetic() -> MnistData {
    synthetic_of(7, 7)
}

/// Random images of rows × cols pixels: 7 × 7 rows start mid-word (the first layer's ∂W reads pixel by pixel);
/// 12 × 12 rows start on a 4-byte word, as MNIST's 28 × 28 do (∂W₁ then reads a word of four pixels per
/// thread), and span three chunks of the software adapter's products, the last one partial.
fn synthetic_of(rows: usize, cols: usize) -> MnistData {
    let mut r = StdRng::seed_from_u64(17);
    let px = rows * cols;
    let mut bytes =
        |len: usize, max: u8| -> Vec<u8> { (0..len).map(|_| r.random_range(0..max)).collect() };
    MnistData {
        train_images: bytes(300 * px, 255),
        train_labels: bytes(300, 10),
        test_images: bytes(50 * px, 255),
        test_labels: bytes(50, 10),
        rows,
        cols,
    }
}

fn configs() -> Vec<MlpConfig> {
    vec![
        MlpConfig {
            hidden: vec![20],
            activation: Activation::Sigmoid,
            minibatch: 13,
            full_batch: false,
            test_split: false,
        },
        MlpConfig {
            hidden: vec![7, 5],
            activation: Activation::Relu,
            minibatch: 33,
            full_batch: false,
            test_split: false,
        },
        MlpConfig {
            hidden: vec![9],
            activation: Activation::Tanh,
            minibatch: 40,
            full_batch: true,
            test_split: true,
        },
    ]
}

/// Device loss and gradient = f64 oracle on the same minibatch, for two successive draws, B ∈ {1, 3}, on 7 × 7
/// and 12 × 12 images. Tolerance relative to the largest gradient entry: f32 1e-5 (sums of ≤ 144·150 products
/// through at most three layers), f64 1e-12.
#[test]
fn mlp_loss_and_gradient_match_oracle() {
    for (rows, cols) in [(7, 7), (12, 12)] {
        let mut cfgs = configs();
        if rows == 12 {
            // ∂W₁ (one thread per word of pixels) sums over the images in chunks of 128: two chunks, the
            // second partial
            cfgs.push(MlpConfig {
                hidden: vec![20],
                activation: Activation::Sigmoid,
                minibatch: 150,
                full_batch: false,
                test_split: false,
            });
        }
        oracle_case(std::sync::Arc::new(synthetic_of(rows, cols)), cfgs);
    }
}

fn oracle_case(data: std::sync::Arc<MnistData>, cfgs: Vec<MlpConfig>) {
    each_device(|c| {
        for cfg in cfgs.clone() {
            for bt in [1usize, 3] {
                let task = Mlp::new(c, data.clone(), cfg.clone(), bt, 5).unwrap();
                let n = task.dim();
                let mut r = StdRng::seed_from_u64(3);
                let theta: Vec<f64> = task
                    .initial_point()
                    .iter()
                    .map(|v| v + 0.05 * r.sample::<f64, _>(rand_distr::StandardNormal))
                    .collect();
                let dt = c.upload("theta", &theta).unwrap();
                let dg = c.zeros("grad", bt * n).unwrap();
                let scal = c.zeros("f", bt).unwrap();
                let d = task
                    .loss_and_grad(
                        c,
                        dt.view(n),
                        dg.view(n),
                        ScalarOut {
                            buf: &scal,
                            stride: 1,
                            col: 0,
                        },
                    )
                    .unwrap();
                for draw in 0..2u32 {
                    c.submit(&d).unwrap();
                    let (f, g) = (c.read(&scal).unwrap(), c.read(&dg).unwrap());
                    for b in 0..bt {
                        let (fw, gw) = task.oracle_at(b, &theta[b * n..(b + 1) * n], draw);
                        let tol = Tol {
                            f32: 1e-5,
                            f64: 1e-12,
                        }
                        .of(c.precision());
                        assert!(
                            (f[b] - fw).abs() / fw.abs() < tol,
                            "{} {cfg:?} B={bt} draw {draw}: loss {} vs {fw}",
                            c.precision(),
                            f[b]
                        );
                        let e = l2o::engine::oracle::max_rel_err(&g[b * n..(b + 1) * n], &gw);
                        assert!(
                            e < tol,
                            "{} {cfg:?} B={bt} b={b} draw {draw}: gradient error {e:e}",
                            c.precision()
                        );
                    }
                }
            }
        }
    });
}

/// The oracle's gradient against central differences of its loss (f64, h = 1e-5: rounding noise ~u·f/h ≈ 2e-11,
/// truncation ~h²·f‴ ≈ 1e-10), 1e-6 relative to max(|g_j|, 1e-3·‖g‖∞), on random coordinates.
#[test]
fn mlp_oracle_gradient_matches_finite_differences() {
    let data = std::sync::Arc::new(synthetic());
    let Some(c) = l2o::testing::ctx(Precision::F32) else {
        return;
    };
    for cfg in configs() {
        let task = Mlp::new(&c, data.clone(), cfg.clone(), 1, 9).unwrap();
        let theta = task.initial_point();
        let (_, g) = task.oracle_at(0, &theta, 0);
        let gmax = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let mut r = StdRng::seed_from_u64(1);
        for _ in 0..40 {
            let j = r.random_range(0..theta.len());
            let h = 1e-5;
            let mut tp = theta.clone();
            tp[j] += h;
            let mut tm = theta.clone();
            tm[j] -= h;
            let fd = (task.oracle_at(0, &tp, 0).0 - task.oracle_at(0, &tm, 0).0) / (2.0 * h);
            let e = (fd - g[j]).abs() / g[j].abs().max(1e-3 * gmax);
            assert!(e < 1e-6, "{cfg:?} θ[{j}]: fd {fd} vs {} ({e:e})", g[j]);
        }
    }
}

/// On the real MNIST (skipped with a message when the files are absent): the seed's 1×20 sigmoid network has
/// n = 15,910 parameters and a loss near ln 10 at initialisation; device = oracle on the first minibatch.
#[test]
fn mlp_on_real_mnist() {
    let Some(dir) = l2o::tasks::idx::test_data_dir() else {
        eprintln!("SKIPPED: MNIST data not found (set L2O_DATA)");
        return;
    };
    let data = l2o::tasks::idx::load_mnist(&dir).unwrap();
    let Some(c) = l2o::testing::ctx(Precision::F32) else {
        return;
    };
    let task = Mlp::new(&c, std::sync::Arc::new(data), MlpConfig::default(), 2, 1).unwrap();
    assert_eq!(task.dim(), 15_910);
    let n = task.dim();
    let theta = task.initial_point();
    let dt = c.upload("theta", &theta).unwrap();
    let dg = c.zeros("grad", 2 * n).unwrap();
    let scal = c.zeros("f", 2).unwrap();
    let d = task
        .loss_and_grad(
            &c,
            dt.view(n),
            dg.view(n),
            ScalarOut {
                buf: &scal,
                stride: 1,
                col: 0,
            },
        )
        .unwrap();
    c.submit(&d).unwrap();
    let f = c.read(&scal).unwrap();
    let (fw, gw) = task.oracle_at(1, &theta[n..], 0);
    assert!(
        (f[1] - fw).abs() / fw < 1e-5 && (fw - 10f64.ln()).abs() < 0.5,
        "loss {} vs {fw}",
        f[1]
    );
    let g = c.read(&dg).unwrap();
    assert!(l2o::engine::oracle::max_rel_err(&g[n..], &gw) < 1e-5);
}

/// Two runs of one optimizer on the same minibatch task give the same trace bit for bit (the driver rewinds the
/// minibatch stream with `Task::reset`), and they differ from a run without the rewind, so every optimizer
/// compared on one task object sees the same minibatches.
#[test]
fn runs_on_one_minibatch_task_see_the_same_minibatches() {
    use l2o::optim::{FirstOrder, Kind, RunOptions, run};
    let data = std::sync::Arc::new(synthetic());
    let c = l2o::testing::ctx(Precision::F32).expect("an adapter");
    let cfg = configs().remove(0);
    let task = Mlp::new(&c, data, cfg, 2, 9).unwrap();
    let o = RunOptions::fixed(5);
    let go = || {
        run(
            &c,
            &task,
            &mut FirstOrder::new(Kind::Sgd, 0.1),
            &o,
            &mut |_| {},
        )
        .unwrap()
    };
    let (a, b) = (go(), go());
    assert_eq!(a.f, b.f);
    // without the rewind the stream continues: the first loss is on another minibatch
    let out = c.zeros("f", 2).unwrap();
    let th = c.upload("theta", &task.initial_point()).unwrap();
    let g = c.zeros("g", 2 * task.dim()).unwrap();
    let d = task
        .loss_and_grad(
            &c,
            th.view(task.dim()),
            g.view(task.dim()),
            ScalarOut {
                buf: &out,
                stride: 1,
                col: 0,
            },
        )
        .unwrap();
    c.submit(&d).unwrap();
    let f_next = c.read(&out).unwrap();
    assert_ne!(
        f_next[0], a.f[0][0],
        "the stream must advance between evaluations"
    );
}

/// Full batch: each network gets a fixed group of M images, the ⌊N/M⌋ groups are disjoint and network b uses
/// group b mod ⌊N/M⌋ (300 synthetic training images, M = 100: 3 groups for 4 networks).
#[test]
fn full_batch_networks_use_disjoint_image_groups() {
    let data = std::sync::Arc::new(synthetic());
    let c = l2o::testing::ctx(Precision::F32).expect("an adapter");
    let cfg = MlpConfig {
        hidden: vec![5],
        activation: Activation::Sigmoid,
        minibatch: 100,
        full_batch: true,
        test_split: false,
    };
    let task = Mlp::new(&c, data, cfg, 4, 3).unwrap();
    let g: Vec<std::collections::BTreeSet<u32>> = (0..4)
        .map(|b| task.minibatch(b, 0).into_iter().collect())
        .collect();
    assert!(g.iter().all(|s| s.len() == 100));
    assert!(g[0].is_disjoint(&g[1]) && g[1].is_disjoint(&g[2]) && g[0].is_disjoint(&g[2]));
    assert_eq!(g[3], g[0]);
    assert_eq!(
        task.minibatch(1, 0),
        task.minibatch(1, 7),
        "full batch: the same images every draw"
    );
}
