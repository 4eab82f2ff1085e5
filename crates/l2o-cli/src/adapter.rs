//! `l2o info` (the adapters, their limits and features) and `l2o autotune` (kernel variants per adapter).


use anyhow::{Result, bail};
use l2o_engine::{Context, ContextOptions};

use crate::DeviceArgs;

pub(crate) fn autotune_cmd(
    dev: &DeviceArgs,
    families: &str,
    quick: bool,
    dry: bool,
    data: Option<&std::path::Path>,
) -> Result<()> {
    let fams: Vec<String> = families
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let probe = dev.context()?;
    let base = ContextOptions {
        precision: probe.precision(),
        ..dev.options()?
    };
    eprintln!("device: {} — {}", probe.describe(), probe.precision());
    drop(probe);
    let (rows, notes) = l2o_bench::autotune::autotune(&base, &fams, quick, !dry, data, &mut |t| {
        println!("{} ({}):", t.family, t.workload);
        for (name, s) in &t.times {
            println!(
                "  {name:<28} {:>10.1} µs{}",
                s * 1e6,
                if name == t.best() {
                    "  ← fastest"
                } else {
                    ""
                }
            );
        }
    })?;
    for n in notes {
        println!("{n}");
    }
    if rows.is_empty() {
        bail!("nothing was tuned");
    }
    Ok(())
}

pub(crate) fn info(dev: &DeviceArgs) -> Result<()> {
    let adapters = Context::adapters(dev.backend.as_deref())?;
    println!("adapters seen:");
    if adapters.is_empty() {
        println!("  (none)");
    }
    for a in &adapters {
        println!(
            "  {} [{} / {}] driver: {} f64: {}",
            a.name,
            a.backend,
            a.device_type,
            a.driver,
            if a.f64 { "yes" } else { "no" }
        );
    }
    let ctx = dev.context()?;
    let l = &ctx.limits;
    println!("chosen: {}", ctx.describe());
    println!("  why: {}", ctx.reason);
    println!(
        "  precision: {} (f64 supported: {})",
        ctx.precision(),
        if ctx.supports_f64() { "yes" } else { "no" }
    );
    println!(
        "  max_storage_buffer_binding_size: {} MiB",
        l.max_storage_buffer_binding_size / (1 << 20)
    );
    println!("  max_buffer_size: {} MiB", l.max_buffer_size / (1 << 20));
    println!(
        "  max_compute_workgroups_per_dimension: {}",
        l.max_compute_workgroups_per_dimension
    );
    println!(
        "  max_compute_invocations_per_workgroup: {}",
        l.max_compute_invocations_per_workgroup
    );
    println!(
        "  max_compute_workgroup_storage_size: {} KiB",
        l.max_compute_workgroup_storage_size / 1024
    );
    println!(
        "  max_storage_buffers_per_shader_stage: {}",
        l.max_storage_buffers_per_shader_stage
    );
    Ok(())
}
