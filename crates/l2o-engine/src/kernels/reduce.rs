//! Launchers for `shaders/reduce.wgsl`: batched dot products, sums and Gram matrices with workgroup tree sums
//! and a deterministic two-pass reduction for n > 4096. Results land in a per-problem scalar buffer
//! (`[B][stride]`), where the next kernel reads them: no readback.

use anyhow::{Result, bail};

use crate::buffer::{DBuf, Dispatch, View, grid_x};
use crate::context::Context;
use crate::shaders::REDUCE;

/// Coordinates reduced by one workgroup in pass 1 of the `tree` variant (WG · ITEMS; see [`Reduction::chunk`]).
pub const CHUNK: usize = 4096;

/// The workgroup reduction of the chunked kernels (`shaders/tree.wgsl`, shared by [`dot`], [`sum`], [`gram`]
/// and [`crate::dots`]), one variant per adapter (family `reduce`, see [`crate::variants`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// 256 threads × 16 interleaved items, pairwise tree (GPUs: coalesced loads, log-depth combine).
    Tree,
    /// 64 threads × 512 contiguous items (read four at a time where the operands are 4-aligned), one barrier and
    /// an ordered sum by thread 0 (the software adapter: few, long-running workgroups).
    Seq,
}

impl Reduction {
    pub const NAMES: [&'static str; 2] = ["tree", "seq"];

    /// This context's variant (`L2O_KERNELS=reduce=…`, the autotune cache, else `seq` on a software adapter
    /// and `tree` on a GPU).
    pub fn of(ctx: &Context) -> Result<Self> {
        Ok(
            match ctx.variant("reduce", &Self::NAMES, "tree", "seq")?.as_str() {
                "tree" => Reduction::Tree,
                _ => Reduction::Seq,
            },
        )
    }

    /// The WGSL constants of the variant.
    pub fn defines(self) -> &'static str {
        match self {
            Reduction::Tree => {
                "const WG: u32 = 256u; const ITEMS: u32 = 16u; const CONTIG: bool = false; const TREE: bool = true;"
            }
            Reduction::Seq => {
                "const WG: u32 = 64u; const ITEMS: u32 = 512u; const CONTIG: bool = true; const TREE: bool = false;"
            }
        }
    }

    /// Largest n reduced by one thread per output (no workgroup, no barrier). On the software adapter a
    /// workgroup with a barrier costs ~20–40 µs to start (lavapipe runs it as a coroutine per 8 threads), more
    /// than a thread's sequential sum of a few thousand terms; on a GPU the chunked pass is better early.
    pub fn small_n(self) -> usize {
        match self {
            Reduction::Tree => SMALL_N,
            Reduction::Seq => 8192,
        }
    }

    /// Coordinates per workgroup of the chunked pass.
    pub fn chunk(self) -> usize {
        match self {
            Reduction::Tree => CHUNK,
            Reduction::Seq => 64 * 512,
        }
    }
}
/// Largest n reduced by one thread per output (four interleaved partial sums, no barriers): on the software
/// adapter a 256-thread tree costs ~20 µs per workgroup in barriers alone.
pub const SMALL_N: usize = 256;
/// Coordinates per thread of the blocked Gram (`SEG` in `shaders/reduce.wgsl`).
pub const GRAM_SEG: usize = 2000;
/// Largest k for [`gram`] (2m + 2 with m = 20, plus room for memory vectors).
pub const MAX_GRAM_K: usize = 64;

/// Where per-problem scalar results go: `buf[b·stride + col ..]`.
#[derive(Clone, Copy, Debug)]
pub struct ScalarOut<'a> {
    pub buf: &'a DBuf,
    pub stride: usize,
    pub col: usize,
}

impl ScalarOut<'_> {
    /// Fails unless `width` values per problem at `col` fit the buffer for `batch` problems. A column past the
    /// stride (see [`Self::from_row`]) addresses rows `col / stride` onwards.
    pub fn check(&self, batch: usize, width: usize) -> Result<()> {
        let (row0, col) = (self.col / self.stride.max(1), self.col % self.stride.max(1));
        if col + width > self.stride || (row0 + batch) * self.stride > self.buf.len {
            bail!(
                "scalar output: {batch} problems × stride {} with {width} values at column {} do not fit a buffer of {}",
                self.stride,
                self.col,
                self.buf.len
            );
        }
        Ok(())
    }

    /// The same column of the rows from `row` on: problem b writes where problem `row + b` of `self` would
    /// (element (row + b)·stride + col): a block of a batch handed to a task of its own (a mixture of task
    /// families).
    pub fn from_row(&self, row: usize) -> Self {
        Self {
            buf: self.buf,
            stride: self.stride,
            col: self.col + row * self.stride,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn reduce(
    ctx: &Context,
    mode: u32,
    n: usize,
    batch: usize,
    a: View,
    b: View,
    k: usize,
    vec_step: usize,
    out: ScalarOut,
    scale_col: Option<usize>,
) -> Result<Vec<Dispatch>> {
    let pairs = if mode == 2 { k * (k + 1) / 2 } else { 1 };
    let variant = Reduction::of(ctx)?;
    // The software adapter's Gram reads each block of four vectors once (`gram_block_main`, GRAM_SEG
    // coordinates per thread) instead of once per pair.
    let blocked = mode == 2 && variant == Reduction::Seq && n > variant.small_n();
    let chunks = if blocked {
        // one partial per thread: workgroups of 8 threads over 8·GRAM_SEG coordinates
        n.div_ceil(8 * GRAM_SEG) * 8
    } else {
        n.div_ceil(variant.chunk())
    };
    let aligned = [a.offset, a.stride, b.offset, b.stride, vec_step]
        .iter()
        .all(|x| x % 4 == 0);
    let partial = if chunks > 1 {
        ctx.zeros("reduce partials", batch * pairs * chunks)?
    } else {
        ctx.zeros("unused", 1)?
    };
    let u = |x: usize| x as u32;
    let params = ctx.params(&[
        u(n),
        u(a.offset),
        u(a.stride),
        u(b.offset),
        u(b.stride),
        u(chunks),
        u(k),
        u(out.col),
        u(out.stride),
        scale_col.map_or(u32::MAX, u),
        mode,
        u(vec_step),
        u(pairs),
        u(batch),
        aligned as u32,
        0,
    ]);
    let binds = [
        &params,
        &a.buf.buf,
        &b.buf.buf,
        &partial.buf,
        &out.buf.buf,
        &a.buf.buf,
        &b.buf.buf,
    ];
    let defines = variant.defines();
    if n <= variant.small_n() {
        // one thread per (pair, problem), no workgroup reduction
        return Ok(vec![ctx.dispatch_with(
            &REDUCE,
            "small_main",
            defines,
            &binds,
            [grid_x((pairs * batch).div_ceil(64)), 1, 1],
        )?]);
    }
    if blocked {
        // blocked Gram: each vector read ⌈k/4⌉ times, one thread per (segment, block pair, problem), then the
        // segments of each pair summed in order
        let nb = k.div_ceil(4);
        return Ok(vec![
            ctx.dispatch_with(
                &REDUCE,
                "gram_block_main",
                defines,
                &binds,
                [u(chunks.div_ceil(8)), u(nb * (nb + 1) / 2), u(batch)],
            )?,
            ctx.dispatch_with(
                &REDUCE,
                "finish_main",
                defines,
                &binds,
                [u(pairs), 1, u(batch)],
            )?,
        ]);
    }
    let mut d = vec![ctx.dispatch_with(
        &REDUCE,
        "partial_main",
        defines,
        &binds,
        [u(chunks), u(pairs), u(batch)],
    )?];
    if chunks > 1 {
        d.push(ctx.dispatch_with(
            &REDUCE,
            "finish_main",
            defines,
            &binds,
            [u(pairs), 1, u(batch)],
        )?);
    }
    Ok(d)
}

/// out\[b\] = scale_b · ⟨a_b, b_b⟩ for every problem b; scale_b = out.buf\[b\]\[scale_col\] or 1.
pub fn dot(
    ctx: &Context,
    n: usize,
    batch: usize,
    a: View,
    b: View,
    out: ScalarOut,
    scale_col: Option<usize>,
) -> Result<Vec<Dispatch>> {
    a.check("dot: a", n, batch)?;
    b.check("dot: b", n, batch)?;
    out.check(batch, 1)?;
    if let Some(c) = scale_col
        && c >= out.stride
    {
        bail!("dot: scale column {c} outside stride {}", out.stride);
    }
    reduce(ctx, 0, n, batch, a, b, 1, 0, out, scale_col)
}

/// out\[b\] = Σ_i a_b\[i\].
pub fn sum(
    ctx: &Context,
    n: usize,
    batch: usize,
    a: View,
    out: ScalarOut,
) -> Result<Vec<Dispatch>> {
    a.check("sum", n, batch)?;
    out.check(batch, 1)?;
    reduce(ctx, 1, n, batch, a, a, 1, 0, out, None)
}

/// The k×k Gram matrix of the k vectors v_j = `first` shifted by j·vec_step, written row-major (k² values) at
/// out.col of each problem. For a buffer laid out \[B\]\[k\]\[n\] use `buf.slot(0, k, n)` and vec_step = n.
pub fn gram(
    ctx: &Context,
    n: usize,
    batch: usize,
    k: usize,
    first: View,
    vec_step: usize,
    out: ScalarOut,
) -> Result<Vec<Dispatch>> {
    if k == 0 || k > MAX_GRAM_K {
        bail!("gram: k = {k} must be in 1..={MAX_GRAM_K}");
    }
    let last = View {
        buf: first.buf,
        offset: first.offset + (k - 1) * vec_step,
        stride: first.stride,
    };
    first.check("gram: first vector", n, batch)?;
    last.check("gram: last vector", n, batch)?;
    out.check(batch, k * k)?;
    reduce(ctx, 2, n, batch, first, first, k, vec_step, out, None)
}
