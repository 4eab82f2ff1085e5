//! Kernel benchmark behind `l2o bench` (and reused by `benches/kernels.rs`): each engine kernel on the device
//! against its f64 CPU oracle, on the same inputs, over a grid of dimensions n and batch sizes B.
//!
//! What is timed:
//! - **device**: the kernel's dispatches are recorded once, warmed up (submit + wait), then submitted `reps`
//!   times (one [`Context::submit`] each) with a single [`Context::wait`] at the end; time per call =
//!   elapsed / reps. This includes the per-submit dispatch overhead, which is what an optimizer step pays.
//! - **CPU**: the f64 oracle ([`l2o_engine::oracle`], [`l2o_optim::lbfgs::reference::two_loop`]) over all B
//!   problems, one thread, repeated the same way.
//!
//! `bytes` is the vector traffic of one device call at the device precision, counted as the dispatches bind
//! their operands: each vector operand of each dispatch read once per use and each vector result written once
//! (per-problem scalars and reduction partials are ignored). So "gram4" counts 20·B·n elements, not 4·B·n: the
//! reduce kernel gives each of the 10 pairs (i ≤ j) its own workgroup, which loads both vectors of its pair
//! (the f64 oracle does the same 10 inner products). Both GB/s columns divide that same count, so they compare
//! work, not the f64 oracle's own (twice wider) memory traffic.
//!
//! ```no_run
//! use l2o_bench::bench::{BenchConfig, format_table, run_kernel_bench};
//! use l2o_engine::{Context, ContextOptions, Precision};
//! let ctx = Context::new(&ContextOptions::with_precision(Precision::F32))?;
//! let (rows, skipped) = run_kernel_bench(&ctx, &BenchConfig::default(), &mut |r| eprintln!("{} n={} B={}", r.kernel, r.n, r.batch))?;
//! print!("{}", format_table(&rows));
//! for s in skipped { println!("skipped: {s}"); }
//! # anyhow::Ok(())
//! ```

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use l2o_engine::{Context, DBuf, Dispatch, ScalarOut, Scalars, Term, lbfgs_cols as lc, oracle};
use l2o_optim::lbfgs::{reference, two_loop};
use l2o_optim::vector_free as vf;

/// The kernels [`run_kernel_bench`] knows, in table order.
pub const KERNELS: [&str; 5] = ["dot", "gram4", "lincomb", "two-loop", "two-loop-gram"];

/// L-BFGS history length of the "two-loop" benchmark (full ring: 5 pairs in use).
pub const TWO_LOOP_M: usize = 5;

/// Host memory (generated f64 inputs plus the device copy, which lives in host RAM on a software adapter)
/// above which a combination is skipped.
pub const MAX_HOST_BYTES: f64 = 2.0 * 1024.0 * 1024.0 * 1024.0;

/// Target wall time of one automatically sized measurement, and the repetition cap.
const TARGET_S: f64 = 0.3;
const MAX_REPS: usize = 20_000;

/// One measured (kernel, n, B) combination.
#[derive(Clone, Debug)]
pub struct BenchRow {
    pub kernel: String,
    pub n: usize,
    pub batch: usize,
    /// Device precision ("f32" / "f64").
    pub precision: String,
    /// Device time per call, µs (dispatch overhead included).
    pub gpu_us: f64,
    /// f64 CPU oracle time per call over all B problems, µs.
    pub cpu_us: f64,
    /// Bytes read + written per call by the kernel (see the module docs).
    pub bytes: f64,
    pub gpu_gbps: f64,
    pub cpu_gbps: f64,
    /// batch / device time per call.
    pub problems_per_s: f64,
    /// cpu_us / gpu_us: > 1 means the device is faster.
    pub ratio: f64,
}

/// The grid to measure.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub sizes: Vec<usize>,
    pub batches: Vec<usize>,
    /// Repetitions per measurement; 0 = automatic (each measurement takes about 0.3 s).
    pub reps: usize,
    /// Subset of [`KERNELS`].
    pub kernels: Vec<String>,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            sizes: vec![1_000, 100_000, 1_000_000],
            batches: vec![1, 16, 256],
            reps: 0,
            kernels: KERNELS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// Device buffers (one per operand, [B][k][n] layouts) that a combination allocates, as (label, elements).
fn device_buffers(kernel: &str, n: usize, batch: usize) -> Vec<(&'static str, usize)> {
    let bn = batch * n;
    match kernel {
        "dot" => vec![("a", bn), ("b", bn)],
        "gram4" => vec![("vectors [B][4][n]", 4 * bn)],
        "lincomb" => vec![("out", bn), ("v1", bn), ("v2", bn)],
        "two-loop-gram" => vec![("basis [B][2m+1][n]", (2 * TWO_LOOP_M + 1) * bn), ("d", bn)],
        "two-loop" => vec![
            ("g", bn),
            ("d", bn),
            ("s history [B][m][n]", TWO_LOOP_M * bn),
            ("y history [B][m][n]", TWO_LOOP_M * bn),
        ],
        _ => vec![],
    }
}

/// Vector elements moved per device call (see the module docs), in units of B·n.
fn traffic(kernel: &str) -> f64 {
    let m = TWO_LOOP_M as f64;
    match kernel {
        "dot" => 2.0,
        "gram4" => 20.0,  // 10 pairs i ≤ j, each workgroup loads v_i and v_j
        "lincomb" => 4.0, // read out, v1, v2; write out
        // d ← −g (2); per pair: sᵀd (2), d −= α y (3); d ← γ d (2); per pair: yᵀd (2), d += (α − β) s (4: s is
        // bound as two terms)
        "two-loop" => 2.0 + 5.0 * m + 2.0 + 6.0 * m,
        // one iteration of vector-free L-BFGS (l2o_optim::vector_free): the Gram rows of the 3 new vectors (s, y,
        // g) read the 2m + 1 basis vectors once and the 3 new ones again; the combination reads 2m + 1, writes d
        "two-loop-gram" => (2.0 * m + 1.0 + 3.0) + (2.0 * m + 1.0 + 1.0),
        _ => 0.0,
    }
}

/// Why (kernel, n, B) cannot run on this context, or `None` when it fits the device limits and host memory.
pub fn check_fits(ctx: &Context, kernel: &str, n: usize, batch: usize) -> Option<String> {
    if n == 0 || batch == 0 {
        return Some(format!("{kernel} n={n} B={batch}: empty problem"));
    }
    let sz = ctx.precision().size() as u64;
    let lim = ctx.limits.max_storage_buffer_binding_size;
    let mut elems = 0usize;
    for (label, len) in device_buffers(kernel, n, batch) {
        elems += len;
        let bytes = len as u64 * sz;
        if bytes > lim {
            return Some(format!(
                "{kernel} n={n} B={batch}: {label} needs {:.1} MiB > max_storage_buffer_binding_size {:.1} MiB",
                bytes as f64 / 1048576.0,
                lim as f64 / 1048576.0
            ));
        }
    }
    let host = elems as f64 * (8.0 + sz as f64);
    if host > MAX_HOST_BYTES {
        return Some(format!(
            "{kernel} n={n} B={batch}: needs ~{:.1} GiB of host memory (limit {:.0} GiB)",
            host / 1073741824.0,
            MAX_HOST_BYTES / 1073741824.0
        ));
    }
    None
}

/// Deterministic uniform values in [−1, 1) (SplitMix64), so runs are comparable and need no RNG dependency.
struct Gen(u64);
impl Gen {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
    fn vec(&mut self, len: usize) -> Vec<f64> {
        (0..len).map(|_| self.next()).collect()
    }
}

/// A zero buffer of `len` elements filled from per-problem host slices (no concatenated host copy).
fn upload_parts<'a>(
    ctx: &Context,
    label: &str,
    len: usize,
    parts: impl IntoIterator<Item = &'a [f64]>,
) -> Result<DBuf> {
    let buf = ctx.zeros(label, len)?;
    let mut off = 0;
    for p in parts {
        ctx.write(&buf, off, p)?;
        off += p.len();
    }
    anyhow::ensure!(off == len, "{label}: wrote {off} of {len} elements");
    Ok(buf)
}

enum Host {
    Dot {
        a: Vec<Vec<f64>>,
        b: Vec<Vec<f64>>,
    },
    Gram {
        v: Vec<[Vec<f64>; 4]>,
    },
    Lincomb {
        out: Vec<Vec<f64>>,
        v1: Vec<Vec<f64>>,
        v2: Vec<Vec<f64>>,
        c1s: Vec<f64>,
        c2: f64,
    },
    TwoLoop {
        g: Vec<Vec<f64>>,
        s: Vec<Vec<Vec<f64>>>,
        y: Vec<Vec<Vec<f64>>>,
        rho: Vec<Vec<f64>>,
        gamma: Vec<f64>,
    },
}

/// Inputs of the two-loop benchmarks, per problem: g, the m pairs (y_i = s_i + 0.3·noise keeps sᵀy > 0 like
/// real curvature pairs), ρ_i = 1/sᵀy and γ = sᵀy/yᵀy of the newest pair.
#[allow(clippy::type_complexity)]
fn two_loop_inputs(
    rng: &mut Gen,
    n: usize,
    batch: usize,
) -> (
    Vec<Vec<f64>>,
    Vec<Vec<Vec<f64>>>,
    Vec<Vec<Vec<f64>>>,
    Vec<Vec<f64>>,
    Vec<f64>,
) {
    let m = TWO_LOOP_M;
    let g: Vec<Vec<f64>> = (0..batch).map(|_| rng.vec(n)).collect();
    let s: Vec<Vec<Vec<f64>>> = (0..batch)
        .map(|_| (0..m).map(|_| rng.vec(n)).collect())
        .collect();
    let y: Vec<Vec<Vec<f64>>> = s
        .iter()
        .map(|sb| {
            sb.iter()
                .map(|si| si.iter().map(|x| x + 0.3 * rng.next()).collect())
                .collect()
        })
        .collect();
    let mut rho = vec![vec![0.0; m]; batch];
    let mut gamma = vec![1.0; batch];
    for b in 0..batch {
        for i in 0..m {
            rho[b][i] = 1.0 / oracle::dot(&s[b][i], &y[b][i]);
        }
        let newest = m - 1;
        gamma[b] =
            oracle::dot(&s[b][newest], &y[b][newest]) / oracle::dot(&y[b][newest], &y[b][newest]);
    }
    (g, s, y, rho, gamma)
}

/// One prepared (kernel, n, B) combination: device buffers, recorded dispatches and the same inputs on the host.
pub struct KernelCase {
    pub kernel: String,
    pub n: usize,
    pub batch: usize,
    /// Bytes read + written per device call (see the module docs).
    pub bytes: f64,
    dispatches: Vec<Dispatch>,
    _bufs: Vec<DBuf>,
    _ring: Option<l2o_engine::BasisRing>,
    host: Host,
}

impl KernelCase {
    /// Generate inputs, upload them and record the kernel's dispatches. Fails for an unknown kernel or when a
    /// buffer exceeds the device limits (call [`check_fits`] first to skip those without allocating).
    pub fn prepare(ctx: &Context, kernel: &str, n: usize, batch: usize) -> Result<Self> {
        if !KERNELS.contains(&kernel) {
            bail!(
                "unknown kernel {kernel:?}: expected one of {}",
                KERNELS.join(", ")
            );
        }
        if let Some(why) = check_fits(ctx, kernel, n, batch) {
            bail!("{why}");
        }
        let mut rng = Gen(0x5EED ^ ((n as u64) << 20) ^ batch as u64);
        let bytes = traffic(kernel) * (batch * n * ctx.precision().size()) as f64;
        let per = |rng: &mut Gen| -> Vec<Vec<f64>> { (0..batch).map(|_| rng.vec(n)).collect() };
        let mut keep_ring = None;
        let (dispatches, bufs, host) = match kernel {
            "dot" => {
                let (a, b) = (per(&mut rng), per(&mut rng));
                let da = upload_parts(ctx, "a", batch * n, a.iter().map(|v| v.as_slice()))?;
                let db = upload_parts(ctx, "b", batch * n, b.iter().map(|v| v.as_slice()))?;
                let scal = ctx.zeros("dot out", batch)?;
                let d = l2o_engine::dot(
                    ctx,
                    n,
                    batch,
                    da.view(n),
                    db.view(n),
                    ScalarOut {
                        buf: &scal,
                        stride: 1,
                        col: 0,
                    },
                    None,
                )?;
                (d, vec![da, db, scal], Host::Dot { a, b })
            }
            "gram4" => {
                let v: Vec<[Vec<f64>; 4]> = (0..batch)
                    .map(|_| std::array::from_fn(|_| rng.vec(n)))
                    .collect();
                let dv = upload_parts(
                    ctx,
                    "vectors",
                    4 * batch * n,
                    v.iter().flat_map(|p| p.iter().map(|x| x.as_slice())),
                )?;
                let scal = ctx.zeros("gram out", batch * 16)?;
                let d = l2o_engine::gram(
                    ctx,
                    n,
                    batch,
                    4,
                    dv.slot(0, 4, n),
                    n,
                    ScalarOut {
                        buf: &scal,
                        stride: 16,
                        col: 0,
                    },
                )?;
                (d, vec![dv, scal], Host::Gram { v })
            }
            "lincomb" => {
                // out ← out + c1·σ_b·v1 + c2·v2, small coefficients so repeated calls stay finite
                let (out, v1, v2) = (per(&mut rng), per(&mut rng), per(&mut rng));
                let (c1, c2) = (1e-3, -1e-3);
                let sig: Vec<f64> = (0..batch).map(|b| 0.5 + (b % 7) as f64 * 0.1).collect();
                let dout = upload_parts(ctx, "out", batch * n, out.iter().map(|v| v.as_slice()))?;
                let d1 = upload_parts(ctx, "v1", batch * n, v1.iter().map(|v| v.as_slice()))?;
                let d2 = upload_parts(ctx, "v2", batch * n, v2.iter().map(|v| v.as_slice()))?;
                let scal = ctx.upload("sigma", &sig)?;
                let sc = Scalars {
                    scal: &scal,
                    stride: 1,
                    status: None,
                    mask_col: None,
                };
                let terms = [Term::scaled(d1.view(n), c1, 0), Term::new(d2.view(n), c2)];
                let d = l2o_engine::lincomb(
                    ctx,
                    n,
                    batch,
                    dout.view(n),
                    Some((1.0, None)),
                    &terms,
                    sc,
                )?;
                let c1s = sig.iter().map(|s| c1 * s).collect();
                (
                    vec![d],
                    vec![dout, d1, d2, scal],
                    Host::Lincomb {
                        out,
                        v1,
                        v2,
                        c1s,
                        c2,
                    },
                )
            }
            "two-loop-gram" => {
                let m = TWO_LOOP_M;
                let (g, s, y, rho, gamma) = two_loop_inputs(&mut rng, n, batch);
                let k = 2 * m + 1;
                let ring = l2o_engine::BasisRing::new(ctx, n, batch, k)?;
                for b in 0..batch {
                    let base = b * k * n;
                    for i in 0..m {
                        ctx.write(&ring.vecs, base + vf::s_slot(i) * n, &s[b][i])?;
                        ctx.write(&ring.vecs, base + vf::y_slot(m, i) * n, &y[b][i])?;
                    }
                    ctx.write(&ring.vecs, base + vf::g_slot(m) * n, &g[b])?;
                }
                // the Gram matrix of the whole basis once (not timed); each timed call then does what one iteration
                // does: the rows of the newest pair and the gradient, the scalar recursion, the combination
                let all: Vec<usize> = (0..k).collect();
                ctx.submit(&ring.rows(ctx, &all, None)?)?;
                let eps = ctx.upload("curvature eps", &[1e-10])?;
                let status = ctx.upload_u32("status", &vec![0; batch])?;
                let coef = ctx.zeros("coefficients", batch * (k + 1))?;
                let dd = ctx.zeros("d", batch * n)?;
                let mut d = ring.rows(
                    ctx,
                    &[vf::s_slot(m - 1), vf::y_slot(m, m - 1), vf::g_slot(m)],
                    None,
                )?;
                d.extend(vf::direction(
                    ctx,
                    &ring,
                    m,
                    m - 1,
                    m,
                    &eps,
                    &status,
                    coef.view(k + 1),
                    None,
                    dd.view(n),
                )?);
                keep_ring = Some(ring);
                (
                    d,
                    vec![eps, status, coef, dd],
                    Host::TwoLoop {
                        g,
                        s,
                        y,
                        rho,
                        gamma,
                    },
                )
            }
            "two-loop" => {
                let m = TWO_LOOP_M;
                let (g, s, y, rho, gamma) = two_loop_inputs(&mut rng, n, batch);
                let stride = lc::stride(m);
                let mut scal = vec![0.0; batch * stride];
                for b in 0..batch {
                    for i in 0..m {
                        scal[b * stride + lc::rho(i)] = rho[b][i];
                    }
                    scal[b * stride + lc::GAMMA] = gamma[b];
                }
                let dg = upload_parts(ctx, "g", batch * n, g.iter().map(|v| v.as_slice()))?;
                let dd = ctx.zeros("d", batch * n)?;
                let ds = upload_parts(
                    ctx,
                    "s",
                    batch * m * n,
                    s.iter().flat_map(|p| p.iter().map(|x| x.as_slice())),
                )?;
                let dy = upload_parts(
                    ctx,
                    "y",
                    batch * m * n,
                    y.iter().flat_map(|p| p.iter().map(|x| x.as_slice())),
                )?;
                let dscal = ctx.upload("scalars", &scal)?;
                let sc = Scalars {
                    scal: &dscal,
                    stride,
                    status: None,
                    mask_col: None,
                };
                let d = two_loop(
                    ctx,
                    n,
                    batch,
                    m,
                    dg.view(n),
                    dd.view(n),
                    &ds,
                    &dy,
                    sc,
                    m - 1,
                    m,
                )?;
                (
                    d,
                    vec![dg, dd, ds, dy, dscal],
                    Host::TwoLoop {
                        g,
                        s,
                        y,
                        rho,
                        gamma,
                    },
                )
            }
            _ => unreachable!(),
        };
        ctx.check()?;
        Ok(Self {
            kernel: kernel.to_string(),
            n,
            batch,
            bytes,
            dispatches,
            _bufs: bufs,
            _ring: keep_ring,
            host,
        })
    }

    /// Number of recorded dispatches of one call.
    pub fn dispatch_count(&self) -> usize {
        self.dispatches.len()
    }

    /// Submit the call `reps` times (one submit each), wait once; total elapsed time.
    pub fn run_gpu(&self, ctx: &Context, reps: u64) -> Result<Duration> {
        let t = Instant::now();
        for _ in 0..reps {
            ctx.submit(&self.dispatches)?;
        }
        ctx.wait()?;
        Ok(t.elapsed())
    }

    /// The f64 oracle over all B problems, `reps` times; total elapsed time.
    pub fn run_cpu(&mut self, reps: u64) -> Duration {
        let t = Instant::now();
        for _ in 0..reps {
            match &mut self.host {
                Host::Dot { a, b } => {
                    for (x, y) in a.iter().zip(b.iter()) {
                        black_box(oracle::dot(black_box(x), black_box(y)));
                    }
                }
                Host::Gram { v } => {
                    for p in v.iter() {
                        let vecs: [&[f64]; 4] = std::array::from_fn(|j| p[j].as_slice());
                        black_box(oracle::gram(black_box(&vecs)));
                    }
                }
                Host::Lincomb {
                    out,
                    v1,
                    v2,
                    c1s,
                    c2,
                } => {
                    for b in 0..out.len() {
                        oracle::lincomb(&mut out[b], Some(1.0), &[(c1s[b], &v1[b]), (*c2, &v2[b])]);
                        black_box(&out[b]);
                    }
                }
                Host::TwoLoop {
                    g,
                    s,
                    y,
                    rho,
                    gamma,
                } => {
                    let m = TWO_LOOP_M;
                    for b in 0..g.len() {
                        black_box(reference::two_loop(
                            &g[b],
                            &s[b],
                            &y[b],
                            &rho[b],
                            gamma[b],
                            m - 1,
                            m,
                        ));
                    }
                }
            }
        }
        t.elapsed()
    }

    /// Warm up, then measure the device time per call in seconds (`reps` = 0: automatic).
    pub fn time_gpu(&self, ctx: &Context, reps: usize) -> Result<f64> {
        self.run_gpu(ctx, 1)?; // first dispatch: driver-side compilation, allocation
        let reps = if reps > 0 {
            reps
        } else {
            auto_reps(|k| Ok(self.run_gpu(ctx, k)?.as_secs_f64()))?
        };
        Ok(self.run_gpu(ctx, reps as u64)?.as_secs_f64() / reps as f64)
    }

    /// Warm up, then measure the CPU oracle time per call in seconds (`reps` = 0: automatic).
    pub fn time_cpu(&mut self, reps: usize) -> f64 {
        self.run_cpu(1);
        let reps = if reps > 0 {
            reps
        } else {
            auto_reps(|k| Ok::<_, anyhow::Error>(self.run_cpu(k).as_secs_f64()))
                .expect("infallible")
        };
        self.run_cpu(reps as u64).as_secs_f64() / reps as f64
    }

    /// One measured row.
    pub fn measure(&mut self, ctx: &Context, reps: usize) -> Result<BenchRow> {
        let gpu = self.time_gpu(ctx, reps)?;
        let cpu = self.time_cpu(reps);
        Ok(BenchRow {
            kernel: self.kernel.clone(),
            n: self.n,
            batch: self.batch,
            precision: ctx.precision().to_string(),
            gpu_us: gpu * 1e6,
            cpu_us: cpu * 1e6,
            bytes: self.bytes,
            gpu_gbps: self.bytes / gpu / 1e9,
            cpu_gbps: self.bytes / cpu / 1e9,
            problems_per_s: self.batch as f64 / gpu,
            ratio: cpu / gpu,
        })
    }
}

/// Repetitions so that one measurement takes about [`TARGET_S`]: time 1, 4, 16, … calls until a probe lasts
/// ≥ 20 ms, then extrapolate.
fn auto_reps(mut probe: impl FnMut(u64) -> Result<f64>) -> Result<usize> {
    let mut k = 1u64;
    loop {
        let t = probe(k)?;
        if t >= 0.02 || k as usize >= MAX_REPS {
            let per = (t / k as f64).max(1e-9);
            return Ok(((TARGET_S / per).round() as usize).clamp(1, MAX_REPS));
        }
        k *= 4;
    }
}

/// Measure every (kernel, n, B) of `cfg` in order: kernels × sizes × batches. `progress` sees each row as it is
/// measured. Combinations that exceed the device limits or ~2 GiB of host memory are skipped and returned with
/// the reason; any other error aborts.
pub fn run_kernel_bench(
    ctx: &Context,
    cfg: &BenchConfig,
    progress: &mut dyn FnMut(&BenchRow),
) -> Result<(Vec<BenchRow>, Vec<String>)> {
    for k in &cfg.kernels {
        if !KERNELS.contains(&k.as_str()) {
            bail!(
                "unknown kernel {k:?}: expected one of {}",
                KERNELS.join(", ")
            );
        }
    }
    let (mut rows, mut skipped) = (vec![], vec![]);
    for kernel in &cfg.kernels {
        for &n in &cfg.sizes {
            for &batch in &cfg.batches {
                if let Some(why) = check_fits(ctx, kernel, n, batch) {
                    skipped.push(why);
                    continue;
                }
                let mut case = match KernelCase::prepare(ctx, kernel, n, batch) {
                    Ok(c) => c,
                    Err(e) if is_limit_error(&e) => {
                        skipped.push(format!("{kernel} n={n} B={batch}: {e:#}"));
                        continue;
                    }
                    Err(e) => return Err(e.context(format!("preparing {kernel} n={n} B={batch}"))),
                };
                let row = case.measure(ctx, cfg.reps)?;
                progress(&row);
                rows.push(row);
            }
        }
    }
    Ok((rows, skipped))
}

fn is_limit_error(e: &anyhow::Error) -> bool {
    let s = format!("{e:#}");
    [
        "max_storage_buffer_binding_size",
        "max_buffer_size",
        "exceed the device limit",
        "Out of Memory",
        "OutOfMemory",
    ]
    .iter()
    .any(|k| s.contains(k))
}

fn fmt_n(n: usize) -> String {
    if n >= 10_000 && n.is_power_of_two() {
        return format!("2^{}", n.trailing_zeros());
    }
    let mut v = n;
    let mut e = 0;
    while v >= 10 && v.is_multiple_of(10) {
        v /= 10;
        e += 1;
    }
    if e >= 3 {
        format!("{v}e{e}")
    } else {
        n.to_string()
    }
}

fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let a = x.abs();
    if a >= 1e7 {
        format!("{x:.2e}")
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 0.01 || a == 0.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.1e}")
    }
}

const HEADER: [&str; 10] = [
    "kernel",
    "n",
    "B",
    "prec",
    "gpu µs/call",
    "cpu µs/call",
    "gpu GB/s",
    "cpu GB/s",
    "problems/s",
    "cpu/gpu",
];

fn cells(r: &BenchRow) -> [String; 10] {
    [
        r.kernel.clone(),
        fmt_n(r.n),
        r.batch.to_string(),
        r.precision.clone(),
        fmt_num(r.gpu_us),
        fmt_num(r.cpu_us),
        fmt_num(r.gpu_gbps),
        fmt_num(r.cpu_gbps),
        fmt_num(r.problems_per_s),
        format!("{:.2}", r.ratio),
    ]
}

/// An aligned plain-text table: a header line naming the columns, a rule, one line per row (text left-aligned,
/// numbers right-aligned). "cpu/gpu" > 1 means the device is faster than the f64 CPU oracle.
pub fn format_table(rows: &[BenchRow]) -> String {
    let body: Vec<[String; 10]> = rows.iter().map(cells).collect();
    let mut w: Vec<usize> = HEADER.iter().map(|h| h.chars().count()).collect();
    for r in &body {
        for (j, c) in r.iter().enumerate() {
            w[j] = w[j].max(c.chars().count());
        }
    }
    let line = |cols: &[String]| -> String {
        let mut s = String::new();
        for (j, c) in cols.iter().enumerate() {
            let pad = w[j] - c.chars().count();
            if j > 0 {
                s.push_str("  ");
            }
            if j == 0 || j == 3 {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
        }
        s.trim_end().to_string()
    };
    let head: Vec<String> = HEADER.iter().map(|h| h.to_string()).collect();
    let mut out = line(&head);
    out.push('\n');
    out.push_str(&"-".repeat(w.iter().sum::<usize>() + 2 * (w.len() - 1)));
    out.push('\n');
    for r in &body {
        out.push_str(&line(r));
        out.push('\n');
    }
    out
}

/// A Markdown section for BENCHMARKS.md: the adapter, how the numbers were taken, and the table.
pub fn to_markdown(rows: &[BenchRow], adapter_description: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Adapter: `{adapter_description}`\n");
    let _ = writeln!(
        s,
        "Device time per call: dispatches recorded once, submitted repeatedly (one submit per call, one wait at the \
         end), so dispatch overhead is included. CPU: the f64 oracle over all B problems on one thread, same inputs. \
         GB/s = vector bytes read + written per call at the device precision (the same count for both columns). \
         cpu/gpu > 1: the device is faster.\n"
    );
    let _ = writeln!(s, "| {} |", HEADER.join(" | "));
    let align: Vec<&str> = (0..HEADER.len())
        .map(|j| if j == 0 || j == 3 { ":--" } else { "--:" })
        .collect();
    let _ = writeln!(s, "|{}|", align.join("|"));
    for r in rows {
        let _ = writeln!(s, "| {} |", cells(r).join(" | "));
    }
    s
}
