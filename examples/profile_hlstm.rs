//! Time each dispatch of one HLSTM forward step and reverse step on the device (by kernel label):
//! `cargo run --release --example profile_hlstm [n] [batch] [cell]`.
use l2o::engine::{Context, ContextOptions, Precision};
use l2o::meta::hlstm::device::HlstmDevice;
use l2o::meta::hlstm::{HlstmConfig, MetaLoss};
use l2o::tasks::make_task;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let (n, b, cell) = (
        *args.first().unwrap_or(&50),
        *args.get(1).unwrap_or(&16),
        *args.get(2).unwrap_or(&2) as u32,
    );
    let ctx = Context::new(&ContextOptions {
        backend: Some("vulkan".into()),
        adapter: None,
        precision: Precision::F32,
        kernels: None,
        local_rank: None,
    })?;
    let cfg = HlstmConfig {
        cell,
        ..Default::default()
    };
    let t = 10;
    let w = vec![1.0; t];
    let dev = HlstmDevice::new(&ctx, &cfg, n, b, t, &w, MetaLoss::Log { floor: 1e-8 }, true)?;
    dev.set_phi(&ctx, &cfg.init(1))?;
    let task = make_task(&ctx, "quadratic", n, b, 1)?;
    let theta = ctx.upload("theta", &task.initial_point())?;
    let grad = ctx.zeros("grad", n * b)?;
    let ev = task.loss_and_grad(&ctx, theta.view(n), grad.view(n), dev.loss_out(4))?;
    let mut all = dev.forward_step(&ctx, 3, &theta, &grad, ev, None)?;
    all.push(dev.loss_weights(&ctx)?);
    all.extend(dev.reverse_step(&ctx, 3, true)?);
    all.push(dev.carry(&ctx)?);
    ctx.submit(&all)?;
    ctx.wait()?;
    let reps = 20;
    let mut total = 0.0;
    for d in &all {
        let t0 = Instant::now();
        for _ in 0..reps {
            ctx.submit(std::slice::from_ref(d))?;
        }
        ctx.wait()?;
        let ms = t0.elapsed().as_secs_f64() * 1e3 / reps as f64;
        total += ms;
        println!("{:>16} {:?}: {ms:.3} ms", d.label, d);
    }
    println!(
        "n = {n}, B = {b}, cell {cell}: {total:.2} ms for one forward + one reverse step (separate submits)"
    );
    let t0 = Instant::now();
    for _ in 0..reps {
        ctx.submit(&all)?;
    }
    ctx.wait()?;
    println!(
        "in one submit: {:.2} ms",
        t0.elapsed().as_secs_f64() * 1e3 / reps as f64
    );
    Ok(())
}
