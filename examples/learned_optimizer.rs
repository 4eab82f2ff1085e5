//! Use a trained L2L optimizer on your own parameters, inside your own wgpu program.
//!
//! ```sh
//! cargo run --release --example learned_optimizer -- out/quadratic/train/checkpoint.l2o
//! ```
//! Without a checkpoint argument the example meta-trains a small LSTM for a few epochs first.
//!
//! It shows both ways to step parameters with [`LstmStepper`]: host slices (`step_host`: upload θ and ∇f,
//! one readback) and the host program's own device buffers (`step_buffers`: wrap your `wgpu::Buffer`s, nothing
//! is read back).

use anyhow::{Context as _, Result};
use l2o::engine::{Context, Elem, Precision, wgpu};
use l2o::meta::l2l::LstmConfig;
use l2o::meta::l2l::optimizer::LstmStepper;
use l2o::meta::state::TrainConfig;
use l2o::meta::{checkpoint, train};

/// The user's problem: f(x) = Σ a_i (x_i − c_i)², with its gradient.
fn loss_grad(x: &[f64], a: &[f64], c: &[f64]) -> (f64, Vec<f64>) {
    let f = x
        .iter()
        .zip(a)
        .zip(c)
        .map(|((x, a), c)| a * (x - c) * (x - c))
        .sum();
    let g = x
        .iter()
        .zip(a)
        .zip(c)
        .map(|((x, a), c)| 2.0 * a * (x - c))
        .collect();
    (f, g)
}

fn main() -> Result<()> {
    // 1. The host program's own device (here: any Vulkan adapter, the software one in CI).
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12;
    let instance = wgpu::Instance::new(desc);
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .context(
                "no GPU adapter (on Debian/Ubuntu: apt-get install mesa-vulkan-drivers libvulkan1)",
            )?;
    // l2o's kernels bind up to 10 storage buffers: ask for the adapter's limits (wgpu's defaults allow 8).
    let desc = wgpu::DeviceDescriptor {
        required_limits: adapter.limits(),
        ..Default::default()
    };
    let (device, queue) = pollster::block_on(adapter.request_device(&desc))?;
    let ctx = Context::from_wgpu(device.clone(), queue.clone(), Precision::F32)?;

    // 2. A trained optimizer: the best φ of a checkpoint, or a quick training run.
    let (cfg, phi) = match std::env::args().nth(1) {
        Some(path) => {
            let s = checkpoint::load(std::path::Path::new(&path))?;
            (s.lstm, s.best_phi)
        }
        None => {
            eprintln!(
                "no checkpoint given: meta-training a small LSTM on 10-d quadratics for 8 epochs"
            );
            let lstm = LstmConfig {
                hidden: 20,
                preprocess: Some(10.0),
                scale: 1.0,
            };
            let tc = TrainConfig {
                task: "quadratic".into(),
                dim: 10,
                batch: 32,
                horizon: 40,
                unroll: 20,
                epochs: 8,
                meta_optimizer: "adam".into(),
                meta_lr: 0.003,
                meta_lr_final: None,
                seed: 1,
                val_batch: 32,
                validate_every: 4,
                max_nonfinite: 10,
                shards: 1,
                task_options: Default::default(),
            };
            let mut s = l2o::meta::l2l::train::new_state(lstm, tc)?;
            train::train(&ctx, &mut s, None, &mut |_, _, _| {}, &mut |_, _| {})?;
            (s.lstm, s.best_phi)
        }
    };

    // 3a. Host slices: the gradient is computed on the host, the LSTM step runs on the device.
    let n = 50;
    let a: Vec<f64> = (0..n).map(|i| 0.5 + (i % 7) as f64 * 0.25).collect();
    let c: Vec<f64> = (0..n).map(|i| ((i * 37) % 11) as f64 / 5.0 - 1.0).collect();
    let mut x = vec![0.0; n];
    let mut stepper = LstmStepper::new(&ctx, &cfg, &phi, n, 1)?;
    let f0 = loss_grad(&x, &a, &c).0;
    for _ in 0..50 {
        let (_, g) = loss_grad(&x, &a, &c);
        stepper.step_host(&ctx, &mut x, &g)?;
    }
    println!(
        "host slices:   f = {f0:.4} → {:.4e} after 50 learned steps",
        loss_grad(&x, &a, &c).0
    );

    // 3b. The host program's own buffers: θ and ∇f live in wgpu buffers it created; l2o binds them directly.
    let usage =
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
    let mk = |label| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (n * 4) as u64,
            usage,
            mapped_at_creation: false,
        })
    };
    let theta = ctx.wrap(mk("my theta"), n, Elem::Real)?;
    let grad = ctx.wrap(mk("my grad"), n, Elem::Real)?;
    stepper.reset(&ctx)?;
    let mut x = vec![0.0; n];
    ctx.write(&theta, 0, &x)?;
    for _ in 0..50 {
        // (a real program would compute the gradient with its own kernels, writing `grad` on the device)
        let (_, g) = loss_grad(&x, &a, &c);
        ctx.write(&grad, 0, &g)?;
        stepper.step_buffers(&ctx, &theta, &grad)?;
        x = ctx.read(&theta)?; // only because this example's gradient is computed on the host
    }
    println!(
        "wgpu buffers:  f = {f0:.4} → {:.4e} after 50 learned steps",
        loss_grad(&x, &a, &c).0
    );
    Ok(())
}
