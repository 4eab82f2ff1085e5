//! Criterion benchmarks of the engine kernels on the test device (`L2O_BACKEND`, default Vulkan):
//! dot, gram4 (4×4 Gram of [B][4][n]), lincomb (out ← out + c1·σ·v1 + c2·v2) and the L-BFGS two-loop
//! recursion (m = 5, full ring), n = 1e3 … 1e7, B = 1 … 256, f32. Combinations that exceed the device limits
//! (e.g. 128 MiB max_storage_buffer_binding_size on lavapipe) are skipped with a note.
//!
//! One iteration = one call as an optimizer step pays it: the recorded dispatches submitted once; the timed
//! loop submits `iters` calls and waits for the queue once at the end. Throughput is the vector traffic of one
//! call (see `l2o_bench::bench`).
//!
//! `cargo bench --bench kernels`; `L2O_BENCH_QUICK=1` restricts to n ∈ {1e3, 1e5}, B ∈ {1, 16};
//! `L2O_BENCH_CPU=1` also measures the f64 CPU oracle on the same inputs. Filter as usual:
//! `cargo bench --bench kernels -- two-loop`.

use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use l2o::engine::Precision;
use l2o_bench::bench::{KERNELS, KernelCase, check_fits};

fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

fn kernels(c: &mut Criterion) {
    let Some(ctx) = l2o::testing::ctx(Precision::F32) else {
        eprintln!(
            "kernels bench: no device (L2O_SKIP_GPU_TESTS=1 and no adapter): nothing to measure"
        );
        return;
    };
    let quick = flag("L2O_BENCH_QUICK");
    let cpu = flag("L2O_BENCH_CPU");
    let (sizes, batches): (&[usize], &[usize]) = if quick {
        (&[1_000, 100_000], &[1, 16])
    } else {
        (
            &[1_000, 10_000, 100_000, 1_000_000, 10_000_000],
            &[1, 16, 256],
        )
    };
    eprintln!(
        "kernels bench on {} ({}){}",
        ctx.describe(),
        ctx.precision(),
        if quick { ", quick" } else { "" }
    );
    for kernel in KERNELS {
        let mut group = c.benchmark_group(kernel);
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_millis(1000))
            .nresamples(10_000)
            .sampling_mode(SamplingMode::Flat);
        for &n in sizes {
            for &batch in batches {
                let id = format!("n={n}/B={batch}");
                if let Some(why) = check_fits(&ctx, kernel, n, batch) {
                    eprintln!("skipped {why}");
                    continue;
                }
                let mut case = match KernelCase::prepare(&ctx, kernel, n, batch) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("skipped {kernel} {id}: {e:#}");
                        continue;
                    }
                };
                group.throughput(Throughput::Bytes(case.bytes as u64));
                group.bench_function(BenchmarkId::new("gpu", &id), |b| {
                    b.iter_custom(|iters| case.run_gpu(&ctx, iters).expect("device call failed"))
                });
                if cpu {
                    group.bench_function(BenchmarkId::new("cpu-f64-oracle", &id), |b| {
                        b.iter_custom(|iters| case.run_cpu(iters))
                    });
                }
            }
        }
        group.finish();
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);
