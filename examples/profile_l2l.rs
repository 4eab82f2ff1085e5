//! Time the pieces of one L2L unroll on the device (forward step, reverse sweep, outer-product reduction,
//! chunk sum): `cargo run --release --example profile_l2l`.
use l2o::engine::{Context, ContextOptions, Precision};
use l2o::meta::gpu::LstmBuffers;
use l2o::meta::lstm::LstmConfig;
use std::time::Instant;
fn main() -> anyhow::Result<()> {
    let ctx = Context::new(&ContextOptions {
        backend: Some("vulkan".into()),
        adapter: None,
        precision: Precision::F32,
    })?;
    let cfg = LstmConfig::default();
    let (n, b, t) = (10, 128, 20);
    let bufs = LstmBuffers::new(&ctx, &cfg, n, b, t, &vec![1.0; t], true)?;
    bufs.set_phi(&ctx, &cfg.init(1))?;
    let theta = ctx.upload("t", &vec![0.5; n * b])?;
    let grad = ctx.upload("g", &vec![0.3; n * b])?;
    let status = ctx.upload_u32("s", &vec![0; b])?;
    let fwd: Vec<_> = (0..t)
        .map(|s| {
            bufs.forward(&ctx, &theta, &grad, &status, s, (s, s + 1), true)
                .unwrap()
        })
        .collect();
    let rev = bufs.reverse(&ctx, &theta, &grad, &status)?;
    for _ in 0..2 {
        ctx.submit(&fwd)?;
        ctx.submit(&rev)?;
        ctx.wait()?;
    }
    let t0 = Instant::now();
    for _ in 0..5 {
        ctx.submit(&fwd)?;
    }
    ctx.wait()?;
    println!(
        "forward: {:.3} ms per step",
        t0.elapsed().as_secs_f64() * 1e3 / (5.0 * t as f64)
    );
    let t0 = Instant::now();
    for _ in 0..5 {
        ctx.submit(&rev[0..1])?;
    }
    ctx.wait()?;
    println!(
        "reverse: {:.3} ms per unroll",
        t0.elapsed().as_secs_f64() * 1e3 / 5.0
    );
    let t0 = Instant::now();
    for _ in 0..5 {
        ctx.submit(&rev[1..2])?;
    }
    ctx.wait()?;
    println!(
        "outer: {:.3} ms per unroll",
        t0.elapsed().as_secs_f64() * 1e3 / 5.0
    );
    let t0 = Instant::now();
    for _ in 0..5 {
        ctx.submit(&rev[2..])?;
    }
    ctx.wait()?;
    println!(
        "sum: {:.3} ms per unroll",
        t0.elapsed().as_secs_f64() * 1e3 / 5.0
    );
    Ok(())
}
