//! Launchers for `shaders/hilbert.wgsl`: inner products of listed vector pairs ([`dots`], a Gram matrix being
//! the pairs of a basis: [`gram_pairs`]) and multi-output linear combinations of listed vectors ([`combine`]),
//! with vectors addressed by operand tables into two stores. These are the Hilbert-space operations of seed 000:
//! the Hilbert LSTM's forward and reverse sweeps are made of them and of per-problem scalar kernels.

use anyhow::{Result, bail};

use crate::buffer::{DBuf, Dispatch, grid_x};
use crate::context::Context;
use crate::kernels::reduce::{Reduction, ScalarOut};
use crate::shaders::HILBERT;

/// Largest n for which [`dots`] uses one thread per (pair, problem) with a sequential sum, on GPUs (`tree`
/// reductions); see [`Reduction::small_n`] for the software adapter.
pub const SMALL_N: usize = 512;
/// Most inputs of one [`combine`] dispatch.
pub const MAX_INPUTS: usize = 32;
const OFFSET_LIMIT: usize = 1 << 30;

/// Which store a vector lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    X,
    Y,
}

/// A batched vector: element i of problem b is `store[offset + b·stride_of_store + i]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Operand {
    pub store: Store,
    pub offset: usize,
}

impl Operand {
    pub fn x(offset: usize) -> Self {
        Self {
            store: Store::X,
            offset,
        }
    }
    pub fn y(offset: usize) -> Self {
        Self {
            store: Store::Y,
            offset,
        }
    }
}

/// The two vector stores of a dispatch and their per-problem strides (Y optional).
#[derive(Clone, Copy, Debug)]
pub struct Stores<'a> {
    pub x: &'a DBuf,
    pub x_stride: usize,
    pub y: Option<(&'a DBuf, usize)>,
}

impl Stores<'_> {
    fn code(&self, what: &str, op: Operand, n: usize, batch: usize) -> Result<u32> {
        let (buf, stride) = match op.store {
            Store::X => (self.x, self.x_stride),
            Store::Y => match self.y {
                Some(y) => y,
                None => bail!("{what}: operand in store Y but no Y store was given"),
            },
        };
        let end = op.offset + (batch - 1) * stride + n;
        if end > buf.len || op.offset >= OFFSET_LIMIT || (batch > 1 && stride < n) {
            bail!(
                "{what}: wrong dimensions: {batch} problems × {n} coordinates at offset {} (stride {stride}) do not \
                 fit a store of {} elements",
                op.offset,
                buf.len
            );
        }
        Ok(op.offset as u32 | if op.store == Store::Y { 1 << 31 } else { 0 })
    }
}

/// One inner product: ⟨a, b⟩ → column `col` (and `mirror`, if any) of each problem's scalar row.
#[derive(Clone, Copy, Debug)]
pub struct Pair {
    pub a: Operand,
    pub b: Operand,
    pub col: usize,
    pub mirror: Option<usize>,
}

/// The pairs i ≤ j of the Gram matrix of `basis`, written symmetric, row-major (k² columns from `col0`).
pub fn gram_pairs(basis: &[Operand], col0: usize) -> Vec<Pair> {
    let k = basis.len();
    let mut v = vec![];
    for i in 0..k {
        for j in i..k {
            v.push(Pair {
                a: basis[i],
                b: basis[j],
                col: col0 + i * k + j,
                mirror: (i != j).then_some(col0 + j * k + i),
            });
        }
    }
    v
}

fn bind_y<'a>(
    ctx: &Context,
    st: &Stores<'a>,
    dummy: &'a mut Option<DBuf>,
) -> Result<(&'a DBuf, usize)> {
    Ok(match st.y {
        Some(y) => y,
        None => (dummy.insert(ctx.zeros("no Y store", 1)?), 0),
    })
}

/// Record the inner products of `pairs` for B problems of n coordinates into `out` (pair columns are relative to
/// `out.col`: pair q of problem b lands at `out.col + b·out.stride + q.col`; one dispatch for
/// n ≤ [`SMALL_N`] or one chunk, two otherwise). Deterministic: fixed summation order, no atomics.
pub fn dots(
    ctx: &Context,
    n: usize,
    batch: usize,
    st: &Stores,
    pairs: &[Pair],
    out: ScalarOut,
) -> Result<Vec<Dispatch>> {
    if n == 0 || batch == 0 || pairs.is_empty() {
        bail!(
            "dots: empty problem (n = {n}, batch = {batch}, {} pairs)",
            pairs.len()
        );
    }
    let mut tab = Vec::with_capacity(4 * pairs.len());
    for (q, pr) in pairs.iter().enumerate() {
        // columns are relative to out.col; every row b writes out.col + b·stride + column
        let cols = out.col + pr.col.max(pr.mirror.unwrap_or(0));
        if cols >= out.stride || batch * out.stride > out.buf.len {
            bail!(
                "dots: pair {q} writes column {cols} outside the scalar rows (stride {}, {} problems, buffer {})",
                out.stride,
                batch,
                out.buf.len
            );
        }
        tab.push(st.code(&format!("dots: pair {q} a"), pr.a, n, batch)?);
        tab.push(st.code(&format!("dots: pair {q} b"), pr.b, n, batch)?);
        tab.push(pr.col as u32);
        tab.push(pr.mirror.map_or(u32::MAX, |m| m as u32));
    }
    let variant = Reduction::of(ctx)?;
    let small = n <= variant.small_n().max(SMALL_N);
    let chunks = if small {
        1
    } else {
        n.div_ceil(variant.chunk())
    };
    let partial = ctx.zeros(
        "dots partials",
        if chunks > 1 {
            batch * pairs.len() * chunks
        } else {
            1
        },
    )?;
    let tabuf = ctx.upload_u32("dots table", &tab)?;
    let mut dummy = None;
    let (y, y_stride) = bind_y(ctx, st, &mut dummy)?;
    let status = ctx.upload_u32("no status", &[0])?;
    let u = |x: usize| x as u32;
    let params = ctx.params(&[
        u(n),
        u(batch),
        u(st.x_stride),
        u(y_stride),
        u(pairs.len()),
        0,
        0,
        u(chunks),
        u(out.col),
        u(out.stride),
        0,
        0,
        0,
        0,
        0,
        0,
    ]);
    let binds = [
        &params,
        &tabuf.buf,
        &st.x.buf,
        &y.buf,
        &partial.buf,
        &out.buf.buf,
        &status.buf,
    ];
    let defines = variant.defines();
    if small {
        return Ok(vec![ctx.dispatch_with(
            &HILBERT,
            "dots_small",
            defines,
            &binds,
            [u(pairs.len().div_ceil(64)), u(batch), 1],
        )?]);
    }
    let mut d = vec![ctx.dispatch_with(
        &HILBERT,
        "dots_partial",
        defines,
        &binds,
        [u(chunks), u(pairs.len()), u(batch)],
    )?];
    if chunks > 1 {
        d.push(ctx.dispatch_with(
            &HILBERT,
            "dots_finish",
            defines,
            &binds,
            [u(pairs.len()), 1, u(batch)],
        )?);
    }
    Ok(d)
}

/// An output of [`combine`]: overwritten, or accumulated into.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    pub op: Operand,
    pub accumulate: bool,
}

/// Where [`combine`] reads its coefficients: `buf[off + b·stride + o·nin + j]` (stride 0: shared by all problems).
#[derive(Clone, Copy, Debug)]
pub struct Coefs<'a> {
    pub buf: &'a DBuf,
    pub off: usize,
    pub stride: usize,
}

/// Record out_o ← \[out_o\] + Σ_j coef\[b\]\[o\]\[j\]·in_j for every output o and problem b (one dispatch). Inputs are
/// read before outputs are written at each coordinate, so outputs may alias inputs. With `status`, problems whose
/// status is not 0 are skipped.
#[allow(clippy::too_many_arguments)]
pub fn combine(
    ctx: &Context,
    n: usize,
    batch: usize,
    st: &Stores,
    inputs: &[Operand],
    outputs: &[Output],
    coef: Coefs,
    status: Option<&DBuf>,
) -> Result<Dispatch> {
    if n == 0 || batch == 0 || inputs.is_empty() || outputs.is_empty() {
        bail!(
            "combine: empty problem (n = {n}, batch = {batch}, {} inputs, {} outputs)",
            inputs.len(),
            outputs.len()
        );
    }
    if inputs.len() > MAX_INPUTS {
        bail!(
            "combine: at most {MAX_INPUTS} inputs per dispatch, got {}",
            inputs.len()
        );
    }
    let width = inputs.len() * outputs.len();
    let last = coef.off + (batch - 1) * coef.stride + width;
    if last > coef.buf.len || (coef.stride != 0 && coef.stride < width && batch > 1) {
        bail!(
            "combine: {batch} coefficient rows of {width} at offset {} (stride {}) do not fit a buffer of {}",
            coef.off,
            coef.stride,
            coef.buf.len
        );
    }
    let mut tab = vec![];
    for (j, &op) in inputs.iter().enumerate() {
        tab.push(st.code(&format!("combine: input {j}"), op, n, batch)?);
    }
    for (o, out) in outputs.iter().enumerate() {
        let c = st.code(&format!("combine: output {o}"), out.op, n, batch)?;
        tab.push(c | if out.accumulate { 1 << 30 } else { 0 });
    }
    let tabuf = ctx.upload_u32("combine table", &tab)?;
    let mut dummy = None;
    let (y, y_stride) = bind_y(ctx, st, &mut dummy)?;
    let unused = ctx.zeros("unused", 1)?;
    let no_status;
    let status_buf = match status {
        Some(s) => s,
        None => {
            no_status = ctx.upload_u32("no status", &[0])?;
            &no_status
        }
    };
    let u = |x: usize| x as u32;
    let params = ctx.params(&[
        u(n),
        u(batch),
        u(st.x_stride),
        u(y_stride),
        u(outputs.len()),
        u(inputs.len()),
        0,
        0,
        0,
        0,
        u(coef.off),
        u(coef.stride),
        status.is_some() as u32,
        0,
        0,
        0,
    ]);
    ctx.dispatch_with(
        &HILBERT,
        "combine",
        Reduction::of(ctx)?.defines(),
        &[
            &params,
            &tabuf.buf,
            &st.x.buf,
            &y.buf,
            &unused.buf,
            &coef.buf.buf,
            &status_buf.buf,
        ],
        [grid_x(n.div_ceil(256)), u(batch), 1],
    )
}
