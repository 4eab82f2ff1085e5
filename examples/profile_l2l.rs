//! Time the pieces of one L2L unroll on the device by kernel (forward steps, reverse sweep, ∂L/∂φ reduction,
//! final sum), for the kernel set `L2O_LSTM_KERNELS` chooses: `cargo run --release --example profile_l2l
//! [n] [batch] [T]` (default 10 128 20, the `bench --meta` case).
use l2o::engine::{Context, ContextOptions, Dispatch, Precision};
use l2o::meta::l2l::LstmConfig;
use l2o::meta::l2l::device::LstmBuffers;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().unwrap())
        .collect();
    let (n, b, t) = (
        *a.first().unwrap_or(&10),
        *a.get(1).unwrap_or(&128),
        *a.get(2).unwrap_or(&20),
    );
    let ctx = Context::new(&ContextOptions {
        backend: Some("vulkan".into()),
        adapter: None,
        precision: Precision::F32,
        kernels: None,
        local_rank: None,
    })?;
    let cfg = LstmConfig::default();
    let bufs = LstmBuffers::new(&ctx, &cfg, n, b, t, &vec![1.0; t], true)?;
    println!(
        "{} — n = {n}, B = {b}, T = {t}, kernels {}",
        ctx.describe(),
        bufs.kernels.name()
    );
    bufs.set_phi(&ctx, &cfg.init(1))?;
    let theta = ctx.upload("t", &vec![0.5; n * b])?;
    let grad = ctx.upload("g", &vec![0.3; n * b])?;
    let status = ctx.upload_u32("s", &vec![0; b])?;
    let fwd: Vec<Dispatch> = (0..t)
        .map(|s| bufs.forward(&ctx, &theta, &grad, &status, s, (s, s + 1), true))
        .collect::<anyhow::Result<_>>()?;
    let rev = bufs.reverse(&ctx, &theta, &grad, &status)?;
    for _ in 0..2 {
        ctx.submit(&fwd)?;
        ctx.submit(&rev)?;
        ctx.wait()?;
    }
    let mut labels: Vec<&str> = vec![];
    for d in fwd.iter().chain(&rev) {
        if !labels.contains(&d.label) {
            labels.push(d.label);
        }
    }
    let (h, k) = (cfg.hidden as f64, (n * b) as f64);
    for label in labels {
        let ds: Vec<Dispatch> = fwd
            .iter()
            .chain(&rev)
            .filter(|d| d.label == label)
            .cloned()
            .collect();
        let reps = 5;
        let t0 = Instant::now();
        for _ in 0..reps {
            ctx.submit(&ds)?;
        }
        ctx.wait()?;
        let s = t0.elapsed().as_secs_f64() / reps as f64;
        // multiply-adds per coordinate-step: forward 4H(D+H) + 8H², reverse the same again + 12H² (transposed),
        // ∂φ one per parameter
        let fma = match label {
            "forward" => 4.0 * h * (2.0 + h) + 8.0 * h * h,
            "reverse" | "reverse_step" => 2.0 * (4.0 * h * (2.0 + h) + 8.0 * h * h) - 8.0 * h,
            "outer_partial" | "dphi_step" => cfg.layout().len as f64,
            _ => 0.0,
        };
        let gflops = 2.0 * fma * k * t as f64 / s / 1e9;
        println!(
            "{label:>14}: {:8.3} ms per unroll ({} dispatches){}",
            s * 1e3,
            ds.len(),
            if fma > 0.0 {
                format!(", {gflops:.1} GFLOP/s")
            } else {
                String::new()
            }
        );
    }
    Ok(())
}
