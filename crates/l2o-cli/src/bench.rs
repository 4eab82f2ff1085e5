//! `l2o bench`: each benchmark family of `l2o-bench` behind one flag, printing its table (and `--markdown`).

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use l2o_engine::Context;

use crate::{DeviceArgs, cluster, list};

/// The end every benchmark command shares: the text table, the skipped configurations, and the Markdown file
/// when asked for.
pub(crate) fn report_bench(
    table: &str,
    skipped: &[String],
    markdown: Option<(&PathBuf, String)>,
) -> Result<()> {
    println!("{table}");
    for s in skipped {
        println!("skipped: {s}");
    }
    if let Some((p, md)) = markdown {
        std::fs::write(p, md).with_context(|| format!("writing {}", p.display()))?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

pub(crate) fn bench_cmd(
    dev: &DeviceArgs,
    sizes: &str,
    batches: &str,
    markdown: Option<&PathBuf>,
) -> Result<()> {
    let ctx = dev.open()?;
    let cfg = l2o_bench::bench::BenchConfig {
        sizes: list(sizes, "size")?,
        batches: list(batches, "batch")?,
        ..Default::default()
    };
    let (rows, skipped) = l2o_bench::bench::run_kernel_bench(&ctx, &cfg, &mut |r| {
        eprintln!("  {} n={} B={} done", r.kernel, r.n, r.batch)
    })?;
    let md = markdown.map(|p| (p, l2o_bench::bench::to_markdown(&rows, &ctx.describe())));
    report_bench(&l2o_bench::bench::format_table(&rows), &skipped, md)
}

pub(crate) fn mlp_bench_cmd(
    dev: &DeviceArgs,
    sizes: &str,
    batches: &str,
    data: Option<&std::path::Path>,
    markdown: Option<&PathBuf>,
) -> Result<()> {
    let ctx = dev.open()?;
    let data = std::sync::Arc::new(l2o_tasks::idx::load_mnist(&l2o_tasks::idx::data_dir(
        data,
    )?)?);
    let archs = vec![vec![20], vec![40], vec![20, 20]];
    let rows = l2o_bench::mlp_bench::run_mlp_bench(
        &ctx,
        data,
        &archs,
        &list::<usize>(batches, "batch")?,
        &list::<usize>(sizes, "images per network")?,
    )?;
    let md = markdown.map(|p| {
        let table = l2o_bench::mlp_bench::format_mlp_table(&rows, true);
        (
            p,
            format!(
                "Adapter: `{}`; minibatch M = 128 images per network.\n\n{table}",
                ctx.describe()
            ),
        )
    });
    report_bench(
        &l2o_bench::mlp_bench::format_mlp_table(&rows, false),
        &[],
        md,
    )
}

pub(crate) fn hlstm_bench_cmd(
    dev: &DeviceArgs,
    sizes: &str,
    batches: &str,
    markdown: Option<&PathBuf>,
) -> Result<()> {
    let ctx = dev.open()?;
    let mut skipped = vec![];
    let rows = l2o_bench::hlstm_bench::run_hlstm_bench(
        &ctx,
        &list::<usize>(sizes, "size")?,
        &list::<usize>(batches, "batch")?,
        3,
        &mut |n, b, e| skipped.push(format!("n = {n}, B = {b}: {e:#}")),
    )?;
    skipped.dedup(); // both cells refuse the same size
    let md = l2o_bench::hlstm_bench::hlstm_markdown(&rows, &ctx.describe());
    let file = markdown.map(|p| {
        let mut m = md.clone();
        for s in &skipped {
            m.push_str(&format!("\nskipped: {s}"));
        }
        (p, m)
    });
    report_bench(&md, &skipped, file)
}

/// A benchmark over `--sizes` × `--batches` that returns its Markdown table: open the device, run it, print the
/// table (and write it to `--markdown`).
pub(crate) fn grid_bench_cmd(
    dev: &DeviceArgs,
    sizes: &str,
    batches: &str,
    markdown: Option<&PathBuf>,
    bench: impl FnOnce(&Context, &[usize], &[usize]) -> Result<String>,
) -> Result<()> {
    let ctx = dev.open()?;
    let md = bench(
        &ctx,
        &list::<usize>(sizes, "size")?,
        &list::<usize>(batches, "batch")?,
    )?;
    report_bench(&md, &[], markdown.map(|p| (p, md.clone())))
}

/// `l2o bench --host`: a host-computed task against the built-in task it copies.
pub(crate) fn host_table(ctx: &Context, sizes: &[usize], batches: &[usize]) -> Result<String> {
    let rows = l2o_bench::host_bench::run_host_bench(ctx, sizes, batches, 50, 3)?;
    Ok(l2o_bench::host_bench::host_markdown(&rows, &ctx.describe()))
}

/// `l2o bench --lbfgs`: batched L-BFGS with each direction against the f64 CPU reference.
pub(crate) fn lbfgs_table(ctx: &Context, sizes: &[usize], batches: &[usize]) -> Result<String> {
    let rows = l2o_bench::lbfgs_bench::run_lbfgs_bench(ctx, "rosenbrock", sizes, batches, 200)?;
    Ok(l2o_bench::lbfgs_bench::lbfgs_markdown(
        &rows,
        &ctx.describe(),
        "rosenbrock",
    ))
}

/// `l2o bench --policy`: L-BFGS-π meta-gradients against the f64 CPU reference.
pub(crate) fn policy_table(ctx: &Context, sizes: &[usize], batches: &[usize]) -> Result<String> {
    let rows = l2o_bench::policy_bench::run_policy_bench(ctx, sizes, batches, 50, 2)?;
    Ok(l2o_bench::policy_bench::policy_markdown(
        &rows,
        &ctx.describe(),
    ))
}

pub(crate) fn meta_bench_cmd(
    dev: &DeviceArgs,
    sizes: &str,
    batches: &str,
    markdown: Option<&PathBuf>,
) -> Result<()> {
    let ctx = dev.open()?;
    if cluster::is_mpi() {
        return dist_bench_cmd(&ctx, markdown);
    }
    let cfg = l2o_bench::meta_bench::MetaBenchConfig {
        sizes: list(sizes, "size")?,
        batches: list(batches, "batch")?,
        ..Default::default()
    };
    let (rows, skipped) = l2o_bench::meta_bench::run_meta_bench(&ctx, &cfg, &mut |r| {
        eprintln!(
            "  n={} B={}: {:.3e} coordinate-steps/s on the device",
            r.n, r.batch, r.gpu_coord_steps_per_s
        )
    })?;
    let md = markdown.map(|p| {
        (
            p,
            l2o_bench::meta_bench::meta_markdown(&rows, &ctx.describe()),
        )
    });
    report_bench(
        &l2o_bench::meta_bench::format_meta_table(&rows),
        &skipped,
        md,
    )
}

/// `mpirun -np P l2o bench --meta`: the distributed meta-training loop of every learned optimizer, P shards on P
/// ranks, with its collectives timed; rank 0 reports.
pub(crate) fn dist_bench_cmd(ctx: &Context, markdown: Option<&PathBuf>) -> Result<()> {
    let g = cluster::group();
    let rows = l2o_bench::dist_bench::run_dist_bench(ctx, g.as_ref(), 3, &mut |r| {
        if g.is_root() {
            eprintln!(
                "  {}: epoch {:.3} s, collective {:.3} ms per unroll",
                r.optimizer,
                r.epoch_s,
                1e3 * r.collective_s_per_unroll
            )
        }
    })?;
    if !g.is_root() {
        return Ok(());
    }
    let md = l2o_bench::dist_bench::dist_markdown(&rows, &ctx.describe());
    report_bench(&md, &[], markdown.map(|p| (p, md.clone())))
}
