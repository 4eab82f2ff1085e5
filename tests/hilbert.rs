//! The Hilbert-space vector kernels (`shaders/hilbert.wgsl`: listed inner products and multi-output linear
//! combinations over two stores) against their f64 oracles on the device, over odd sizes (both sides of the
//! small-n path at n = 512 and of the one-chunk path at 4096) and batches, in f32 and f64.

use l2o::engine::{self, Coefs, Operand, Output, Pair, ScalarOut, Stores, oracle};
use l2o::testing::{Tol, each_device};
use rand::{Rng, SeedableRng, rngs::StdRng};

const SIZES: [usize; 8] = [1, 7, 255, 512, 513, 4097, 9000, 100003];
const BATCHES: [usize; 3] = [1, 3, 64];

fn randn(rng: &mut StdRng, len: usize) -> Vec<f64> {
    (0..len)
        .map(|_| rng.sample::<f64, _>(rand_distr::StandardNormal))
        .collect()
}

fn sizes_for(b: usize) -> impl Iterator<Item = usize> {
    SIZES.into_iter().filter(move |&n| n < 9000 || b <= 3)
}

/// Sums of n products: the sequential small-n path (n ≤ 512) has f32 error ≲ n·u relative to Σ|a_i b_i| in the
/// worst case and ~√n·u typically; the chunked path ~√n·u. 1e-5·√n (as for the `reduce` kernels) covers both with
/// margin (at n = 512: 2.3e-4, i.e. ~4000 u), while an index error gives O(1). f64: 1e-12.
fn dot_tol(c: &engine::Context, n: usize) -> f64 {
    Tol {
        f32: 1e-5 * (n as f64).sqrt(),
        f64: 1e-12,
    }
    .of(c.precision())
}

/// A Gram matrix of vectors in X (with mirror columns) and cross products of Y-vectors with X-vectors.
#[test]
fn dots_match_oracle() {
    each_device(|c| {
        let mut rng = StdRng::seed_from_u64(11);
        for b in BATCHES {
            for n in sizes_for(b) {
                let (kx, ky) = (5, 2);
                // X: [B][kx + 1][n] (one unused slot, so offsets are not trivially 0..), Y: [B][ky][n]
                let xs = randn(&mut rng, b * (kx + 1) * n);
                let ys = randn(&mut rng, b * ky * n);
                let (dx, dy) = (c.upload("x", &xs).unwrap(), c.upload("y", &ys).unwrap());
                let st = Stores {
                    x: &dx,
                    x_stride: (kx + 1) * n,
                    y: Some((&dy, ky * n)),
                };
                let basis: Vec<Operand> = (0..kx).map(|j| Operand::x((j + 1) * n)).collect();
                let mut pairs = engine::gram_pairs(&basis, 0);
                for a in 0..ky {
                    for j in 0..kx {
                        pairs.push(Pair {
                            a: Operand::y(a * n),
                            b: basis[j],
                            col: kx * kx + a * kx + j,
                            mirror: None,
                        });
                    }
                }
                let stride = kx * kx + ky * kx + 1;
                let scal = c.upload("scal", &vec![7.0; b * stride]).unwrap();
                let out = ScalarOut {
                    buf: &scal,
                    stride,
                    col: 0,
                };
                c.submit(&engine::dots(c, n, b, &st, &pairs, out).unwrap())
                    .unwrap();
                let got = c.read(&scal).unwrap();
                for p in 0..b {
                    let xv = |j: usize| {
                        let o = p * (kx + 1) * n + (j + 1) * n;
                        &xs[o..o + n]
                    };
                    let yv = |a: usize| &ys[p * ky * n + a * n..p * ky * n + (a + 1) * n];
                    let check = |col: usize, u: &[f64], v: &[f64]| {
                        let scale: f64 = u.iter().zip(v).map(|(a, b)| (a * b).abs()).sum();
                        let e =
                            (got[p * stride + col] - oracle::dot(u, v)).abs() / scale.max(1e-300);
                        assert!(
                            e < dot_tol(c, n),
                            "{} n={n} b={b} problem {p} column {col}: err {e:e}",
                            c.precision()
                        );
                    };
                    for i in 0..kx {
                        for j in 0..kx {
                            check(i * kx + j, xv(i), xv(j));
                        }
                    }
                    for a in 0..ky {
                        for j in 0..kx {
                            check(kx * kx + a * kx + j, yv(a), xv(j));
                        }
                    }
                    assert_eq!(got[p * stride + stride - 1], 7.0, "unlisted column touched");
                }
            }
        }
    });
}

/// Per-problem coefficients, accumulate and overwrite, outputs aliasing inputs, outputs in both stores, a shared
/// coefficient table, and frozen problems.
#[test]
fn combine_matches_oracle() {
    each_device(|c| {
        let mut rng = StdRng::seed_from_u64(12);
        for b in BATCHES {
            for n in sizes_for(b) {
                let (kx, ky) = (4, 2);
                let xs = randn(&mut rng, b * kx * n);
                let ys = randn(&mut rng, b * ky * n);
                let (dx, dy) = (c.upload("x", &xs).unwrap(), c.upload("y", &ys).unwrap());
                let st = Stores {
                    x: &dx,
                    x_stride: kx * n,
                    y: Some((&dy, ky * n)),
                };
                // inputs: x0, x1, x2, y0; outputs: x1 (accumulate: aliases input 1), y1 (overwrite), x3 (overwrite)
                let inputs = [
                    Operand::x(0),
                    Operand::x(n),
                    Operand::x(2 * n),
                    Operand::y(0),
                ];
                let outputs = [
                    Output {
                        op: Operand::x(n),
                        accumulate: true,
                    },
                    Output {
                        op: Operand::y(n),
                        accumulate: false,
                    },
                    Output {
                        op: Operand::x(3 * n),
                        accumulate: false,
                    },
                ];
                let width = inputs.len() * outputs.len();
                let shared = b == 3;
                let coef = randn(&mut rng, if shared { width } else { b * width });
                let dcoef = c.upload("coef", &coef).unwrap();
                // problem 1 is frozen when there is one
                let status: Vec<u32> = (0..b).map(|p| (p == 1) as u32).collect();
                let dstatus = c.upload_u32("status", &status).unwrap();
                let d = engine::combine(
                    c,
                    n,
                    b,
                    &st,
                    &inputs,
                    &outputs,
                    Coefs {
                        buf: &dcoef,
                        off: 0,
                        stride: if shared { 0 } else { width },
                    },
                    Some(&dstatus),
                )
                .unwrap();
                c.submit(&[d]).unwrap();
                let gx = c.read(&dx).unwrap();
                let gy = c.read(&dy).unwrap();
                for p in 0..b {
                    let xv = |j: usize| &xs[p * kx * n + j * n..p * kx * n + (j + 1) * n];
                    let yv = |j: usize| &ys[p * ky * n + j * n..p * ky * n + (j + 1) * n];
                    let ins = [xv(0), xv(1), xv(2), yv(0)];
                    let row = |o: usize| {
                        let base = if shared { 0 } else { p * width };
                        &coef[base + o * inputs.len()..base + (o + 1) * inputs.len()]
                    };
                    let want = |o: usize, keep: Option<f64>, old: &[f64]| {
                        let mut out = old.to_vec();
                        let terms: Vec<(f64, &[f64])> =
                            row(o).iter().copied().zip(ins.iter().copied()).collect();
                        oracle::lincomb(&mut out, keep, &terms);
                        out
                    };
                    let frozen = p == 1;
                    let cases = [
                        (
                            &gx[p * kx * n + n..p * kx * n + 2 * n],
                            xv(1),
                            want(0, Some(1.0), xv(1)),
                        ),
                        (
                            &gy[p * ky * n + n..p * ky * n + 2 * n],
                            yv(1),
                            want(1, None, yv(1)),
                        ),
                        (
                            &gx[p * kx * n + 3 * n..p * kx * n + 4 * n],
                            xv(3),
                            want(2, None, xv(3)),
                        ),
                    ];
                    for (o, (got, old, want)) in cases.iter().enumerate() {
                        let expect: &[f64] = if frozen { old } else { want };
                        // each output is a sum of ≤ 5 terms: f32 rounding ≲ 5u relative to Σ|c_j v_j| ≤ ~10·max
                        let e = oracle::max_rel_err(got, expect);
                        let tol = Tol {
                            f32: 1e-5,
                            f64: 1e-14,
                        }
                        .of(c.precision());
                        assert!(
                            e < tol,
                            "{} n={n} b={b} problem {p} output {o}: err {e:e}",
                            c.precision()
                        );
                    }
                    // untouched inputs stay (up to the upload's rounding to the device precision)
                    assert!(oracle::max_rel_err(&gx[p * kx * n..p * kx * n + n], xv(0)) < 1e-7);
                    assert!(oracle::max_rel_err(&gy[p * ky * n..p * ky * n + n], yv(0)) < 1e-7);
                }
            }
        }
    });
}

/// Dimension and table errors are reported, not panics.
#[test]
fn hilbert_errors_are_clear() {
    let Some(c) = l2o::testing::ctx(engine::Precision::F32) else {
        return;
    };
    let x = c.zeros("x", 10).unwrap();
    let scal = c.zeros("scal", 4).unwrap();
    let st = Stores {
        x: &x,
        x_stride: 10,
        y: None,
    };
    let out = ScalarOut {
        buf: &scal,
        stride: 4,
        col: 0,
    };
    let pair = |a: Operand| Pair {
        a,
        b: Operand::x(0),
        col: 0,
        mirror: None,
    };
    let e = engine::dots(&c, 6, 1, &st, &[pair(Operand::x(5))], out).unwrap_err();
    assert!(format!("{e}").contains("do not fit"), "{e}");
    let e = engine::dots(&c, 5, 1, &st, &[pair(Operand::y(0))], out).unwrap_err();
    assert!(format!("{e}").contains("no Y store"), "{e}");
    let e = engine::combine(
        &c,
        5,
        1,
        &st,
        &[Operand::x(0)],
        &[Output {
            op: Operand::x(5),
            accumulate: false,
        }],
        Coefs {
            buf: &scal,
            off: 4,
            stride: 0,
        },
        None,
    )
    .unwrap_err();
    assert!(format!("{e}").contains("coefficient"), "{e}");
}
