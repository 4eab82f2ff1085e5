//! The basis ring (`shaders/basis.wgsl`: Gram rows of the newest vectors in one pass, one combination of the
//! basis) against its f64 references on every adapter, precision and variant set, over odd sizes (one chunk of
//! 256 coordinates and several), batches, ring sizes and groups of new rows (1 … 4 per pass, and more than 4
//! split over passes), with frozen problems left untouched.

use l2o::engine::kernels::basis::{BasisRing, Target, reference};
use l2o::engine::{Coefs, View, oracle};
use l2o::testing::{Tol, each_device};
use rand::{Rng, SeedableRng, rngs::StdRng};

const SIZES: [usize; 6] = [1, 7, 256, 257, 1000, 20011];

fn randn(rng: &mut StdRng, len: usize) -> Vec<f64> {
    (0..len)
        .map(|_| rng.sample::<f64, _>(rand_distr::StandardNormal))
        .collect()
}

/// f32: a chunk of 256 products summed in order, then up to n/256 chunk sums in order: error ≲ (256 + n/256)·u
/// relative to Σ|a_i b_i| ≤ ‖a‖‖b‖ in the worst case, ~√ of that typically. Measured against ‖a‖‖b‖ (the scale
/// of a Gram entry), 1e-5·√n covers it with margin at every size here (n = 20011: 1.4e-3 ≈ 12,000 u) while a
/// wrong index or a missed vector gives O(1). f64: 1e-12.
fn tol(c: &l2o::engine::Context, n: usize) -> f64 {
    Tol {
        f32: 1e-5 * (n as f64).sqrt().max(1.0),
        f64: 1e-12,
    }
    .of(c.precision())
}

#[test]
fn gram_rows_match_reference() {
    each_device(|c| {
        let mut rng = StdRng::seed_from_u64(5);
        // K = 64 (L-BFGS with m = 31): at n = 256 one thread per problem would run past the software adapter's
        // 65,535 loop iterations per invocation; the ring takes the lane kernel there
        for (b, k) in [(1, 1), (3, 11), (5, 7), (2, 64)] {
            let sizes: &[usize] = if k == 64 { &[7, 256, 1000] } else { &SIZES };
            for &n in sizes {
                // every group size 1..=4, and 6 slots (two passes); frozen: problem 1 (when B > 1)
                let groups: Vec<Vec<usize>> = vec![
                    vec![k - 1],
                    (0..k.min(2)).collect(),
                    (0..k.min(3)).rev().collect(),
                    (0..k.min(4)).collect(),
                    (0..k.min(6))
                        .map(|j| (j * 5 + 1) % k)
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .collect(),
                ];
                for slots in groups {
                    let ring = BasisRing::new(c, n, b, k).unwrap();
                    let vecs = randn(&mut rng, b * k * n);
                    c.write(&ring.vecs, 0, &vecs).unwrap();
                    let g0: Vec<f64> = (0..b * k * k).map(|i| i as f64 + 0.5).collect();
                    c.write(&ring.gram, 0, &g0).unwrap();
                    let status = c
                        .upload_u32(
                            "status",
                            &(0..b as u32).map(|i| (i == 1) as u32).collect::<Vec<_>>(),
                        )
                        .unwrap();
                    c.submit(&ring.rows(c, &slots, Some(&status)).unwrap())
                        .unwrap();
                    let got = c.read(&ring.gram).unwrap();
                    for p in 0..b {
                        let v = &vecs[p * k * n..(p + 1) * k * n];
                        let mut want = g0[p * k * k..(p + 1) * k * k].to_vec();
                        if p != 1 {
                            reference::rows(v, n, k, &slots, &mut want);
                        }
                        let norms: Vec<f64> = (0..k)
                            .map(|j| {
                                oracle::dot(&v[j * n..(j + 1) * n], &v[j * n..(j + 1) * n]).sqrt()
                            })
                            .collect();
                        for i in 0..k {
                            for l in 0..k {
                                let (g, w) = (got[p * k * k + i * k + l], want[i * k + l]);
                                let scale = (norms[i] * norms[l]).max(1e-300);
                                let err = if p == 1 {
                                    (g - w).abs()
                                } else {
                                    (g - w).abs() / scale
                                };
                                assert!(
                                    err <= tol(c, n),
                                    "B = {b}, K = {k}, n = {n}, slots {slots:?}, problem {p}: G[{i}][{l}] = {g}, want {w} (err {err:.2e})"
                                );
                            }
                        }
                    }
                }
            }
        }
    });
}

/// One problem's combination output `got` (n values) against `want`. Each output is a sum of K terms of size
/// ~|c_j v_j| (v_j standard normal: |v_j| ≲ 4): the f32 error is ≲ K·u of 1 + 4·Σ|c_j|; the bound allows (K + 1)·1e-6
/// (≈ 8·(K + 1) u), a wrong coefficient or vector gives O(1). f64: (K + 1)·1e-14.
fn check_combination(
    c: &l2o::engine::Context,
    got: &[f64],
    want: &[f64],
    coefs: &[f64],
    what: &str,
) {
    let k = coefs.len();
    let scale = 1.0 + coefs.iter().map(|x| x.abs()).sum::<f64>() * 4.0;
    let t = Tol {
        f32: 1e-6 * (k as f64 + 1.0),
        f64: 1e-14 * (k as f64 + 1.0),
    }
    .of(c.precision());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() / scale <= t, "{what}, i = {i}: {g} vs {w}");
    }
}

/// A value as the device stores it (rounded to its precision).
fn stored(c: &l2o::engine::Context, x: f64) -> f64 {
    let pr = c.precision();
    pr.decode(&pr.encode(&[x]))[0]
}

#[test]
fn combination_matches_reference() {
    each_device(|c| {
        let mut rng = StdRng::seed_from_u64(6);
        for (b, k) in [(1, 1), (3, 11), (4, 5)] {
            for n in SIZES {
                let ring = BasisRing::new(c, n, b, k).unwrap();
                let vecs = randn(&mut rng, b * k * n);
                c.write(&ring.vecs, 0, &vecs).unwrap();
                // coefficients [B][k + 2] at column 2 (so offsets and strides are not trivial)
                let cs = randn(&mut rng, b * (k + 2));
                let coef = c.upload("coef", &cs).unwrap();
                let co = Coefs {
                    buf: &coef,
                    off: 2,
                    stride: k + 2,
                };
                let status = c
                    .upload_u32(
                        "status",
                        &(0..b as u32).map(|i| (i == 2) as u32).collect::<Vec<_>>(),
                    )
                    .unwrap();
                for accumulate in [false, true] {
                    // into a vector outside the ring: [B][n + 3] at offset 1
                    let init = randn(&mut rng, b * (n + 3) + 1);
                    let out = c.upload("out", &init).unwrap();
                    let view = View {
                        buf: &out,
                        offset: 1,
                        stride: n + 3,
                    };
                    c.submit(&[ring
                        .combine(c, co, Target::Vector(view), accumulate, Some(&status))
                        .unwrap()])
                        .unwrap();
                    let got = c.read(&out).unwrap();
                    for p in 0..b {
                        let v = &vecs[p * k * n..(p + 1) * k * n];
                        let o = 1 + p * (n + 3);
                        let mut want = init[o..o + n].to_vec();
                        if p != 2 {
                            reference::combine(
                                v,
                                n,
                                &cs[p * (k + 2) + 2..(p + 1) * (k + 2)],
                                &mut want,
                                accumulate,
                            );
                        }
                        check_combination(
                            c,
                            &got[o..o + n],
                            &want,
                            &cs[p * (k + 2) + 2..(p + 1) * (k + 2)],
                            &format!("B = {b}, K = {k}, n = {n}, acc {accumulate}, problem {p}"),
                        );
                        // the padding around each output is untouched
                        assert_eq!(got[o + n], stored(c, init[o + n]));
                    }
                }
                // into a slot of the ring that is also an input: v_last ← Σ_j c_j v_j (reads before it writes)
                let last = k - 1;
                c.submit(&[ring
                    .combine(c, co, Target::Slot(last), false, None)
                    .unwrap()])
                    .unwrap();
                let got = c.read(&ring.vecs).unwrap();
                for p in 0..b {
                    let v = &vecs[p * k * n..(p + 1) * k * n];
                    let mut want = vec![0.0; n];
                    reference::combine(
                        v,
                        n,
                        &cs[p * (k + 2) + 2..(p + 1) * (k + 2)],
                        &mut want,
                        false,
                    );
                    let base = p * k * n + last * n;
                    check_combination(
                        c,
                        &got[base..base + n],
                        &want,
                        &cs[p * (k + 2) + 2..(p + 1) * (k + 2)],
                        &format!("slot output, B = {b}, K = {k}, n = {n}, problem {p}"),
                    );
                    for i in 0..n {
                        // the other slots are unchanged
                        if last > 0 {
                            assert_eq!(got[p * k * n + i], stored(c, vecs[p * k * n + i]));
                        }
                    }
                }
            }
        }
    });
}

#[test]
fn bad_inputs_are_errors() {
    each_device(|c| {
        let e = |r: anyhow::Result<BasisRing>| r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e(BasisRing::new(c, 0, 1, 3)).contains("n = 0"));
        assert!(e(BasisRing::new(c, 4, 1, 0)).contains("K = 0"));
        assert!(e(BasisRing::new(c, 4, 1, 65)).contains("K = 65"));
        let ring = BasisRing::new(c, 10, 2, 3).unwrap();
        let msg = |r: anyhow::Result<Vec<l2o::engine::Dispatch>>| {
            r.err().map(|e| e.to_string()).unwrap_or_default()
        };
        assert!(msg(ring.rows(c, &[3], None)).contains("below K = 3"));
        assert!(msg(ring.rows(c, &[1, 1], None)).contains("distinct"));
        assert!(msg(ring.rows(c, &[], None)).contains("no slots"));
        let coef = c.zeros("coef", 4).unwrap();
        let co = Coefs {
            buf: &coef,
            off: 0,
            stride: 3,
        };
        let err = ring
            .combine(c, co, Target::Slot(0), false, None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("coefficient rows"), "{err}");
        let coef = c.zeros("coef", 6).unwrap();
        let co = Coefs {
            buf: &coef,
            off: 0,
            stride: 3,
        };
        assert!(
            ring.combine(c, co, Target::Slot(3), false, None)
                .err()
                .unwrap()
                .to_string()
                .contains("slot 3")
        );
        let small = c.zeros("out", 15).unwrap();
        let v = View {
            buf: &small,
            offset: 0,
            stride: 10,
        };
        assert!(
            ring.combine(c, co, Target::Vector(v), false, None)
                .err()
                .unwrap()
                .to_string()
                .contains("does not fit")
        );
    });
}
