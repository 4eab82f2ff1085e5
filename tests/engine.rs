//! Engine kernels against their f64 oracles on the device (the software adapter in CI), over odd sizes and
//! batches, in f32 and (where the adapter has it) f64.

use l2o::engine::{self, Context, Precision, ScalarOut, Scalars, Term, oracle};
use l2o::testing::{Tol, ctx, each_device};
use rand::{Rng, SeedableRng, rngs::StdRng};

const SIZES: [usize; 6] = [1, 7, 255, 256, 257, 100003];
const BATCHES: [usize; 3] = [1, 3, 64];

fn randn(rng: &mut StdRng, len: usize) -> Vec<f64> {
    (0..len)
        .map(|_| rng.sample::<f64, _>(rand_distr::StandardNormal))
        .collect()
}

/// Reductions: f32 sums of n terms have error growing like √n·u relative to Σ|a_i b_i| (u = 6e-8) for the
/// pairwise tree, and at worst like (16 + 64 + 64 + n/4096)·u ≈ 2e-5 for the ordered `seq` variant at n = 1e5;
/// 1e-5·√n relative to that scale leaves a wide margin for both yet catches any wrong index or missing chunk
/// (which give O(1) errors). f64: 1e-12.
fn reduce_tol(p: Precision, n: usize) -> f64 {
    Tol {
        f32: 1e-5 * (n as f64).sqrt(),
        f64: 1e-12,
    }
    .of(p)
}

fn sizes_for(b: usize) -> impl Iterator<Item = usize> {
    // 100003 × 64 problems is 25 MB per vector in f32; keep the big size to B ≤ 3 to bound test time.
    SIZES.into_iter().filter(move |&n| n < 100000 || b <= 3)
}

#[test]
fn dot_and_sum_match_oracle() {
    each_device(|c| {
        let mut rng = StdRng::seed_from_u64(1);
        for b in BATCHES {
            for n in sizes_for(b) {
                let x = randn(&mut rng, b * n);
                let y = randn(&mut rng, b * n);
                let (dx, dy) = (c.upload("x", &x).unwrap(), c.upload("y", &y).unwrap());
                let stride = 3;
                let scal = c.upload("scal", &vec![2.0; b * stride]).unwrap();
                let mut d = engine::dot(
                    c,
                    n,
                    b,
                    dx.view(n),
                    dy.view(n),
                    ScalarOut {
                        buf: &scal,
                        stride,
                        col: 1,
                    },
                    Some(0),
                )
                .unwrap();
                d.extend(
                    engine::sum(
                        c,
                        n,
                        b,
                        dx.view(n),
                        ScalarOut {
                            buf: &scal,
                            stride,
                            col: 2,
                        },
                    )
                    .unwrap(),
                );
                c.submit(&d).unwrap();
                let got = c.read(&scal).unwrap();
                for p in 0..b {
                    let (xs, ys) = (&x[p * n..(p + 1) * n], &y[p * n..(p + 1) * n]);
                    let scale: f64 = xs.iter().zip(ys).map(|(a, b)| (a * b).abs()).sum();
                    let want = 2.0 * oracle::dot(xs, ys); // scaled by column 0 (= 2)
                    let e = (got[p * stride + 1] - want).abs() / (2.0 * scale);
                    assert!(
                        e < reduce_tol(c.precision(), n),
                        "dot {} n={n} b={b}: err {e:e}",
                        c.precision()
                    );
                    let s_scale: f64 = xs.iter().map(|a| a.abs()).sum();
                    let e = (got[p * stride + 2] - oracle::sum(xs)).abs() / s_scale;
                    assert!(
                        e < reduce_tol(c.precision(), n),
                        "sum {} n={n} b={b}: err {e:e}",
                        c.precision()
                    );
                    assert_eq!(got[p * stride], 2.0, "column 0 must be untouched");
                }
            }
        }
    });
}

#[test]
fn gram_matches_oracle() {
    each_device(|c| {
        let mut rng = StdRng::seed_from_u64(2);
        for (b, k) in [(1, 1), (3, 4), (64, 4), (3, 12), (1, 42)] {
            // + sizes over the software adapter's one-thread limit (8192) that are 4-aligned (vec4 loads) with
            // a partial last segment, and one segment plus 4
            for n in sizes_for(b).chain([20004, 8196]) {
                if n > 300 && k > 12 {
                    continue;
                }
                let v = randn(&mut rng, b * k * n);
                let dv = c.upload("v", &v).unwrap();
                let stride = k * k + 2;
                let scal = c.zeros("scal", b * stride).unwrap();
                let d = engine::gram(
                    c,
                    n,
                    b,
                    k,
                    dv.slot(0, k, n),
                    n,
                    ScalarOut {
                        buf: &scal,
                        stride,
                        col: 1,
                    },
                )
                .unwrap();
                c.submit(&d).unwrap();
                let got = c.read(&scal).unwrap();
                for p in 0..b {
                    let vecs: Vec<&[f64]> = (0..k)
                        .map(|j| &v[(p * k + j) * n..(p * k + j + 1) * n])
                        .collect();
                    let want = oracle::gram(&vecs);
                    for i in 0..k {
                        for j in 0..k {
                            let scale = (want[i * k + i] * want[j * k + j]).sqrt();
                            let e =
                                (got[p * stride + 1 + i * k + j] - want[i * k + j]).abs() / scale;
                            assert!(
                                e < reduce_tol(c.precision(), n),
                                "gram {} n={n} b={b} k={k} ({i},{j}): {e:e}",
                                c.precision()
                            );
                        }
                    }
                }
            }
        }
    });
}

#[test]
fn lincomb_matches_oracle_with_device_coefficients_status_and_mask() {
    each_device(|c| {
        let mut rng = StdRng::seed_from_u64(3);
        for b in BATCHES {
            for n in sizes_for(b) {
                let k = 3; // three input vectors in one [B][3][n] buffer
                let v = randn(&mut rng, b * k * n);
                let out0 = randn(&mut rng, b * n);
                let stride = 4; // columns: σ0, σ1, keep, mask
                let mut s = randn(&mut rng, b * stride);
                for p in 0..b {
                    s[p * stride + 3] = if p % 5 == 4 { 0.0 } else { 1.0 };
                }
                let status: Vec<u32> = (0..b).map(|p| if p % 7 == 6 { 1 } else { 0 }).collect();
                let (dv, dout) = (c.upload("v", &v).unwrap(), c.upload("out", &out0).unwrap());
                let (ds, dst) = (
                    c.upload("s", &s).unwrap(),
                    c.upload_u32("status", &status).unwrap(),
                );
                let sc = Scalars {
                    scal: &ds,
                    stride,
                    status: Some(&dst),
                    mask_col: Some(3),
                };
                let terms = [
                    Term::scaled(dv.slot(0, k, n), 0.5, 0),
                    Term::scaled(dv.slot(1, k, n), -2.0, 1),
                    Term::new(dv.slot(2, k, n), 1.5),
                ];
                let d = engine::lincomb(c, n, b, dout.view(n), Some((0.25, Some(2))), &terms, sc)
                    .unwrap();
                c.submit(&[d]).unwrap();
                let got = c.read(&dout).unwrap();
                for p in 0..b {
                    let mut want = out0[p * n..(p + 1) * n].to_vec();
                    let frozen = status[p] != 0 || s[p * stride + 3] == 0.0;
                    if !frozen {
                        let sl = |j: usize| &v[(p * k + j) * n..(p * k + j + 1) * n];
                        let ss = &s[p * stride..];
                        oracle::lincomb(
                            &mut want,
                            Some(0.25 * ss[2]),
                            &[(0.5 * ss[0], sl(0)), (-2.0 * ss[1], sl(1)), (1.5, sl(2))],
                        );
                    }
                    let e = oracle::max_rel_err(&got[p * n..(p + 1) * n], &want);
                    // a handful of roundings per element: 1e-6 (f32), 1e-14 (f64)
                    assert!(
                        e < Tol {
                            f32: 1e-6,
                            f64: 1e-14
                        }
                        .of(c.precision()),
                        "lincomb {} n={n} b={b} p={p}: {e:e}",
                        c.precision()
                    );
                }
            }
        }
    });
}

#[test]
fn bad_inputs_are_errors() {
    let Some(c) = ctx(Precision::F32) else { return };
    let x = c.upload("x", &[1.0; 10]).unwrap();
    let scal = c.zeros("s", 4).unwrap();
    // a view that runs past the buffer
    let e = engine::dot(
        &c,
        6,
        2,
        x.view(6),
        x.view(6),
        ScalarOut {
            buf: &scal,
            stride: 2,
            col: 0,
        },
        None,
    )
    .unwrap_err();
    assert!(format!("{e}").contains("wrong dimensions"), "{e}");
    // output column outside the stride
    assert!(
        engine::sum(
            &c,
            5,
            2,
            x.view(5),
            ScalarOut {
                buf: &scal,
                stride: 2,
                col: 2
            }
        )
        .is_err()
    );
    // NaN upload
    let e = c.upload("theta", &[1.0, f64::NAN]).unwrap_err();
    assert!(format!("{e}").contains("not finite"), "{e}");
    // larger than max_storage_buffer_binding_size: refused with the limit named, before allocating
    let lim = c.limits.max_storage_buffer_binding_size as usize;
    let e = c.zeros("huge", lim / 4 + 1).unwrap_err();
    assert!(
        format!("{e}").contains("max_storage_buffer_binding_size"),
        "{e}"
    );
    // lincomb aliasing its output
    let sc = Scalars {
        scal: &scal,
        stride: 2,
        status: None,
        mask_col: None,
    };
    assert!(engine::lincomb(&c, 5, 2, x.view(5), None, &[Term::new(x.view(5), 1.0)], sc).is_err());
    // f64 asked on a backend without it: GL has no SHADER_F64 (skip if GL is not available)
    if let Ok(Some(_)) = Context::adapters(Some("gl")).map(|v| v.into_iter().next()) {
        let o = engine::ContextOptions {
            backend: Some("gl".into()),
            adapter: None,
            precision: Precision::F64,
            kernels: None,
            local_rank: None,
        };
        let e = Context::new(&o).err().expect("GL adapter must refuse f64");
        assert!(format!("{e}").contains("SHADER_F64"), "{e}");
    }
    // unknown adapter name
    let o = engine::ContextOptions {
        backend: Some("vulkan".into()),
        adapter: Some("no-such-gpu".into()),
        precision: Precision::F32,
        kernels: None,
        local_rank: None,
    };
    assert!(format!("{}", Context::new(&o).err().unwrap()).contains("no-such-gpu"));
    c.check().unwrap();
}

/// A GPU validation error (here: a dispatch bound to a too-small buffer is caught by our checks, so provoke
/// one through raw wgpu) surfaces as an anyhow error at the next call instead of a panic.
#[test]
fn gpu_errors_become_errors() {
    let Some(c) = ctx(Precision::F32) else { return };
    // Destroyed buffer used in a submit → validation error captured by the uncaptured-error handler.
    let x = c.upload("x", &[1.0; 8]).unwrap();
    let scal = c.zeros("s", 1).unwrap();
    let d = engine::sum(
        &c,
        8,
        1,
        x.view(8),
        ScalarOut {
            buf: &scal,
            stride: 1,
            col: 0,
        },
    )
    .unwrap();
    x.buf.destroy();
    let r = c.submit(&d).and_then(|_| c.wait());
    assert!(r.is_err(), "using a destroyed buffer must be reported");
    // and the context still works afterwards
    let y = c.upload("y", &[1.0; 8]).unwrap();
    let d = engine::sum(
        &c,
        8,
        1,
        y.view(8),
        ScalarOut {
            buf: &scal,
            stride: 1,
            col: 0,
        },
    )
    .unwrap();
    c.submit(&d).unwrap();
    assert_eq!(c.read(&scal).unwrap()[0], 8.0);
}

/// The f64 prelude's exp/log (Vulkan's f64 builtins are garbage) against Rust's f64, over the full range.
#[test]
fn f64_transcendentals_match_rust() {
    use l2o::engine::shaders::{Layout, ShaderFamily};
    static MATH: ShaderFamily = ShaderFamily {
        name: "mathcheck",
        body: "@group(0) @binding(0) var<storage, read> x: array<Real>;\n\
               @group(0) @binding(1) var<storage, read_write> y: array<Real>;\n\
               @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {\n\
                 let i = g.x; if (i >= arrayLength(&x)) { return; }\n\
                 y[2u * i] = l2o_exp(x[i]); y[2u * i + 1u] = l2o_log(abs(x[i]) + 1e-30); }",
        layout: &[Layout::Read, Layout::ReadWrite],
        entries: &["main"],
        default_defines: "",
    };
    each_device(|c| {
        let mut xs: Vec<f64> = (-7000..=7000).map(|i| i as f64 * 0.1).collect(); // exp over [-700, 700]
        xs.extend((-300..=300).map(|e| 10f64.powf(e as f64 / 10.0))); // log over [1e-30, 1e30]
        xs.extend([0.0, 1e-300, -1e-300, 0.5, 1.0, 2.0]);
        let dx = c.upload("x", &xs).unwrap();
        let dy = c.zeros("y", 2 * xs.len()).unwrap();
        let d = c
            .dispatch(
                &MATH,
                "main",
                &[&dx.buf, &dy.buf],
                [xs.len().div_ceil(64) as u32, 1, 1],
            )
            .unwrap();
        c.submit(&[d]).unwrap();
        let y = c.read(&dy).unwrap();
        // f64: a few ulps from range reduction and Newton; f32: the builtins' ulps plus the rounding of x itself
        // to f32, which perturbs exp(x) by |x|·2^-24 relative (so the bound grows with |x|).
        let tol0 = Tol {
            f32: 2e-6,
            f64: 1e-14,
        }
        .of(c.precision());
        for (i, &x) in xs.iter().enumerate() {
            let (e, l) = (x.exp(), (x.abs() + 1e-30).ln());
            let f32_ok = e < 1e38 && e > 1e-37;
            let tol = if c.precision() == Precision::F32 {
                tol0 + 1.2e-7 * x.abs()
            } else {
                tol0
            };
            if x.abs() <= 700.0 && (c.precision() == Precision::F64 || f32_ok) {
                let err = (y[2 * i] - e).abs() / e.max(1e-300);
                assert!(
                    err < tol,
                    "{}: exp({x}) = {} vs {e}: {err:e}",
                    c.precision(),
                    y[2 * i]
                );
            }
            if (1e-37..1e37).contains(&(x.abs() + 1e-30))
                && (c.precision() == Precision::F64 || x.abs() > 1e-30)
            {
                let err = (y[2 * i + 1] - l).abs() / l.abs().max(1.0);
                assert!(
                    err < tol,
                    "{}: log({}) = {} vs {l}: {err:e}",
                    c.precision(),
                    x.abs() + 1e-30,
                    y[2 * i + 1]
                );
            }
        }
    });
}

/// No adapter at all (a backend this platform does not have): the error tells the user what to install.
#[test]
fn no_adapter_is_a_helpful_error() {
    let backend = if cfg!(target_os = "macos") {
        "dx12"
    } else {
        "metal"
    };
    let o = engine::ContextOptions {
        backend: Some(backend.into()),
        adapter: None,
        precision: Precision::F32,
        kernels: None,
        local_rank: None,
    };
    let e = Context::new(&o)
        .err()
        .expect("no adapter expected on this backend");
    let msg = format!("{e}");
    assert!(
        msg.contains("mesa-vulkan-drivers") && msg.contains("Metal"),
        "{msg}"
    );
}

/// A destroyed (lost) device: later calls return errors instead of panicking or hanging.
#[test]
fn lost_device_is_an_error_not_a_hang() {
    let Some(c) = ctx(Precision::F32) else { return };
    let x = c.upload("x", &[1.0; 8]).unwrap();
    let scal = c.zeros("s", 1).unwrap();
    let d = engine::sum(
        &c,
        8,
        1,
        x.view(8),
        ScalarOut {
            buf: &scal,
            stride: 1,
            col: 0,
        },
    )
    .unwrap();
    c.device.destroy();
    let r = c.submit(&d).and_then(|_| c.read(&scal));
    assert!(r.is_err(), "reading from a destroyed device must fail");
}

/// A user's kernel family named like a library family (`reduce`), with other bindings and another body, must
/// neither break the library's kernels nor be broken by them: pipelines and layouts are cached by what they are
/// made of, not by name.
#[test]
fn a_user_family_named_like_a_library_family_breaks_nothing() {
    use l2o::engine::shaders::{Layout, ShaderFamily};
    static USER_REDUCE: ShaderFamily = ShaderFamily {
        name: "reduce",
        body: "@group(0) @binding(0) var<uniform> k: vec4<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<Real>;
@compute @workgroup_size(1)
fn partial_main() { out[0] = Real(k.x) + 0.5; }",
        layout: &[Layout::Uniform, Layout::ReadWrite],
        entries: &["partial_main"],
        default_defines: "",
    };
    each_device(|c| {
        let n = 20_000; // the chunked reduction (partial_main + finish_main) on every variant
        let x: Vec<f64> = (0..n).map(|i| ((i % 7) as f64) - 3.0).collect();
        let want: f64 = x.iter().sum();
        for round in 0..2 {
            // the user's family first (round 0) and after the library's (round 1)
            let k = c.params(&[3, 0, 0, 0]);
            let out = c.zeros("user out", 1).unwrap();
            let d = c
                .dispatch(&USER_REDUCE, "partial_main", &[&k, &out.buf], [1, 1, 1])
                .unwrap();
            c.submit(&[d]).unwrap();
            assert_eq!(c.read(&out).unwrap()[0], 3.5, "user family, round {round}");
            let dx = c.upload("x", &x).unwrap();
            let s = c.zeros("sum", 1).unwrap();
            let d = engine::sum(
                c,
                n,
                1,
                dx.view(n),
                ScalarOut {
                    buf: &s,
                    stride: 1,
                    col: 0,
                },
            )
            .unwrap();
            c.submit(&d).unwrap();
            assert_eq!(c.read(&s).unwrap()[0], want, "library sum, round {round}");
        }
    });
}

/// Kernels generated at run time: two families with one name and different generated bodies both run, each
/// with its own result (the cache keys on contents); a generated source that does not compile is an error.
#[test]
fn families_built_at_run_time_run_side_by_side() {
    use l2o::engine::shaders::{Layout, ShaderFamily};
    let make = |k: u32| {
        ShaderFamily::leak(
            "generated",
            format!(
                "@group(0) @binding(0) var<storage, read_write> out: array<Real>;\n\
                 @compute @workgroup_size(1) fn main() {{ out[0] = Real({k}u); }}"
            ),
            vec![Layout::ReadWrite],
            &["main"],
        )
        .unwrap()
    };
    let (two, five) = (make(2), make(5));
    assert!(ShaderFamily::leak("bad", "fn main( {", vec![Layout::ReadWrite], &["main"]).is_err());
    each_device(|c| {
        for (fam, want) in [(two, 2.0), (five, 5.0), (two, 2.0)] {
            let out = c.zeros("out", 1).unwrap();
            let d = c.dispatch(fam, "main", &[&out.buf], [1, 1, 1]).unwrap();
            c.submit(&[d]).unwrap();
            assert_eq!(c.read(&out).unwrap()[0], want);
        }
    });
}

#[test]
fn status_codes_round_trip_and_print() {
    use l2o::engine::status::{self, Status};
    for (code, s, text) in [
        (status::RUNNING, Status::Running, "running"),
        (status::CONVERGED, Status::Converged, "converged"),
        (status::DIVERGED, Status::Diverged, "diverged"),
        (
            status::LINE_SEARCH_FAILED,
            Status::LineSearchFailed,
            "line search failed",
        ),
        (
            status::AT_PRECISION,
            Status::AtPrecision,
            "converged at the working precision",
        ),
    ] {
        assert_eq!(Status::from_code(code), Some(s));
        assert_eq!(s.code(), code);
        assert_eq!(s.to_string(), text);
        assert_eq!(status::name(code), text);
    }
    assert_eq!(status::COUNT, 5, "every code has a row above");
    assert!(Status::Converged.converged() && Status::AtPrecision.converged());
    assert!(!Status::LineSearchFailed.converged() && !Status::Running.converged());
    assert_eq!(Status::from_code(7), None);
    assert_eq!(status::name(7), "unknown");
}
