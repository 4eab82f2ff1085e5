//! Launchers for `shaders/hilbert.wgsl`: inner products of listed vector pairs ([`dots`], a Gram matrix being
//! the pairs of a basis: [`gram_pairs`]) and multi-output linear combinations of listed vectors ([`combine`]),
//! with vectors addressed by operand tables into two stores. These are the Hilbert-space operations of seed 000:
//! the Hilbert LSTM's forward and reverse sweeps are made of them and of per-problem scalar kernels.

use anyhow::{Result, bail};

use crate::buffer::{DBuf, Dispatch, grid_flat, grid_x};
use crate::context::Context;
use crate::kernels::reduce::{Reduction, ScalarOut};
use crate::shaders::{HILBERT, HILBERT_GEN};

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
    }
    let variant = Reduction::of(ctx)?;
    let small = n <= variant.small_n().max(SMALL_N);
    let chunks = if small {
        1
    } else {
        n.div_ceil(variant.chunk())
    };
    // the software adapter at small n: one thread per problem, generated per pair structure
    let (tab, generated) = if small && variant == Reduction::Seq {
        let (tab, src) = per_problem_table(st, n, batch, pairs)?;
        (tab, Some(src))
    } else {
        let mut tab = Vec::with_capacity(4 * pairs.len());
        for (q, pr) in pairs.iter().enumerate() {
            tab.push(st.code(&format!("dots: pair {q} a"), pr.a, n, batch)?);
            tab.push(st.code(&format!("dots: pair {q} b"), pr.b, n, batch)?);
            tab.push(pr.col as u32);
            tab.push(pr.mirror.map_or(u32::MAX, |m| m as u32));
        }
        (tab, None)
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
    if let Some(src) = generated {
        return Ok(vec![ctx.dispatch_with(
            &HILBERT_GEN,
            "dots",
            &src,
            &binds,
            [grid_x(batch.div_ceil(DOTS_WG)), 1, 1],
        )?]);
    }
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

/// Problems per workgroup of the generated per-problem inner products (8: a workgroup runs on one core of the
/// software adapter, 8 lanes wide).
const DOTS_WG: usize = 8;

/// The table and source of [`dots`] on the software adapter for n ≤ [`Reduction::small_n`]: one thread per
/// problem computes every pair, reading each distinct vector once per coordinate (a Gram matrix of k vectors reads
/// k vectors, not k(k+1)), generated per pair structure by [`dots_source`]; the same sums as `dots_small` (four
/// interleaved partial sums, (s0 + s1) + (s2 + s3)), so the same bits. Table: the distinct operands' codes, then
/// each pair's (column, mirror).
fn per_problem_table(
    st: &Stores,
    n: usize,
    batch: usize,
    pairs: &[Pair],
) -> Result<(Vec<u32>, String)> {
    let mut ops: Vec<Operand> = vec![];
    let mut idx = |o: Operand| match ops.iter().position(|&p| p == o) {
        Some(i) => i,
        None => {
            ops.push(o);
            ops.len() - 1
        }
    };
    let shape: Vec<(usize, usize)> = pairs.iter().map(|p| (idx(p.a), idx(p.b))).collect();
    let mut tab = vec![];
    for (j, &o) in ops.iter().enumerate() {
        tab.push(st.code(&format!("dots: operand {j}"), o, n, batch)?);
    }
    for pr in pairs {
        tab.push(pr.col as u32);
        tab.push(pr.mirror.map_or(u32::MAX, |m| m as u32));
    }
    let stores: Vec<Store> = ops.iter().map(|o| o.store).collect();
    Ok((tab, dots_source(&stores, &shape)))
}

/// The WGSL of the per-problem inner products for operands in `stores` (operand j's code at tab[j]) and pairs
/// (a, b) of operand indices (pair q's column and mirror at tab[nops + 2q ..]): straight-line, one vec4
/// accumulator per pair over the coordinates ≡ 0, 1, 2, 3 (mod 4), as `dots_small` sums them.
pub fn dots_source(stores: &[Store], pairs: &[(usize, usize)]) -> String {
    use std::fmt::Write as _;
    let nops = stores.len();
    let st = |j: usize| if stores[j] == Store::Y { "ys" } else { "xs" };
    let mut s = String::from(HILBERT_HEAD);
    let _ = writeln!(
        s,
        "@compute @workgroup_size({DOTS_WG})\n\
         fn dots(@builtin(global_invocation_id) gid: vec3<u32>) {{\n\
         \x20   p = pb;\n\
         \x20   let b = gid.x;\n\
         \x20   if (b >= p.batch) {{ return; }}\n\
         \x20   let n = p.n;\n\
         \x20   let n4 = n - n % 4u;"
    );
    for j in 0..nops {
        let _ = writeln!(s, "    let i{j} = base(tab[{j}u], b);");
    }
    for q in 0..pairs.len() {
        let _ = writeln!(s, "    var s{q} = vec4<Real>(0.0);");
    }
    s.push_str("    for (var i = 0u; i < n4; i = i + 4u) {\n");
    for j in 0..nops {
        let a = st(j);
        let _ = writeln!(
            s,
            "        let a{j} = vec4<Real>({a}[i{j} + i], {a}[i{j} + i + 1u], {a}[i{j} + i + 2u], {a}[i{j} + i + 3u]);"
        );
    }
    for (q, &(x, y)) in pairs.iter().enumerate() {
        let _ = writeln!(s, "        s{q} = s{q} + a{x} * a{y};");
    }
    s.push_str("    }\n");
    for (lane, c) in ["x", "y", "z"].iter().enumerate() {
        let _ = writeln!(s, "    if (n4 + {lane}u < n) {{");
        for j in 0..nops {
            let _ = writeln!(s, "        let t{j} = {}[i{j} + n4 + {lane}u];", st(j));
        }
        for (q, &(x, y)) in pairs.iter().enumerate() {
            let _ = writeln!(s, "        s{q}.{c} = s{q}.{c} + t{x} * t{y};");
        }
        s.push_str("    }\n");
    }
    s.push_str("    let o = p.out_off + b * p.out_stride;\n");
    for q in 0..pairs.len() {
        let _ = writeln!(
            s,
            "    put(o, {}u, (s{q}.x + s{q}.y) + (s{q}.z + s{q}.w));",
            nops + 2 * q
        );
    }
    s.push_str("}\n");
    s.push_str(
        "fn put(o: u32, t: u32, v: Real) {\n\
         \x20   scal[o + tab[t]] = v;\n\
         \x20   let m = tab[t + 1u];\n\
         \x20   if (m != L2O_NONE) { scal[o + m] = v; }\n\
         }\n",
    );
    s
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
    let per = combine_threads_per_problem(ctx, n, batch);
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
        u(per),
        0,
        0,
    ]);
    let groups = grid_flat((batch * per).div_ceil(COMBINE_WG));
    ctx.dispatch_with(
        &HILBERT_GEN,
        "combine",
        &combine_source(inputs.len(), outputs.len()),
        &[
            &params,
            &tabuf.buf,
            &st.x.buf,
            &y.buf,
            &unused.buf,
            &coef.buf.buf,
            &status_buf.buf,
        ],
        groups,
    )
}

/// Threads per workgroup of [`combine`].
const COMBINE_WG: usize = 64;

/// Threads per problem of [`combine`]: each thread loads its problem's coefficients once and walks the coordinates
/// r, r + R, r + 2R, … So that the coefficients are not re-read per coordinate the batch is spread over about as
/// many threads as the adapter runs at once: 256 on the software adapter (2 cores × 8 lanes, a few deep), 16,384
/// elsewhere; never more threads per problem than coordinates.
fn combine_threads_per_problem(ctx: &Context, n: usize, batch: usize) -> usize {
    let target: usize = if ctx.is_software() { 256 } else { 16_384 };
    target.div_ceil(batch).clamp(1, n)
}

/// The WGSL of [`combine`] for `nin` inputs and `nout` outputs (the whole shader; pipelines are cached per shape):
/// straight-line code with every coefficient and input in a named register — a loop over a private array with a
/// run-time index is 5–20× slower on the software adapter (docs/design.md, "What the software adapter rewards"). Thread (b, r)
/// of R = `q0` threads per problem loads the nout·nin coefficients of problem b, then for each of its
/// coordinates i ≡ r (mod R) reads every input before writing any output:
///     out_o[i] ← [out_o[i]] + Σ_j coef[coef_off + b·coef_stride + o·nin + j] · in_j[i]   (j in order).
pub fn combine_source(nin: usize, nout: usize) -> String {
    use std::fmt::Write as _;
    let mut s = String::from(HILBERT_HEAD);
    let _ = writeln!(
        s,
        "@compute @workgroup_size({COMBINE_WG})\n\
         fn combine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {{\n\
         \x20   p = pb;\n\
         \x20   let lin = gid.x + gid.y * nwg.x * {COMBINE_WG}u;\n\
         \x20   let b = lin / p.q0;\n\
         \x20   let r = lin % p.q0;\n\
         \x20   if (b >= p.batch) {{ return; }}\n\
         \x20   if (p.use_status == 1u && status[b] != 0u) {{ return; }}\n\
         \x20   let cb = p.coef_off + b * p.coef_stride;"
    );
    for j in 0..nin {
        let _ = writeln!(
            s,
            "    let ci{j} = tab[p.tab0 + {j}u];\n    let bi{j} = base(ci{j}, b);"
        );
    }
    for o in 0..nout {
        let _ = writeln!(
            s,
            "    let co{o} = tab[p.tab0 + {}u];\n    let bo{o} = base(co{o}, b);\n    let ac{o} = (co{o} & ACCUM) != 0u;",
            nin + o
        );
        for j in 0..nin {
            let _ = writeln!(s, "    let k{o}_{j} = scal[cb + {}u];", o * nin + j);
        }
    }
    s.push_str("    for (var i = r; i < p.n; i = i + p.q0) {\n");
    for j in 0..nin {
        let _ = writeln!(s, "        let x{j} = load(ci{j}, bi{j} + i);");
    }
    for o in 0..nout {
        let _ = writeln!(
            s,
            "        var v{o}: Real = 0.0;\n        if (ac{o}) {{ v{o} = load(co{o}, bo{o} + i); }}"
        );
        for j in 0..nin {
            let _ = writeln!(s, "        v{o} = v{o} + k{o}_{j} * x{j};");
        }
        let _ = writeln!(s, "        store(co{o}, bo{o} + i, v{o});");
    }
    s.push_str("    }\n}\n");
    s
}

/// Bindings, parameters and addressing of the generated [`combine`] and per-problem [`dots`] (shared with
/// `shaders/hilbert.wgsl`).
const HILBERT_HEAD: &str = include_str!("../../../../shaders/hilbert_common.wgsl");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::precision::Precision;
    use crate::shaders::validate_precision;

    /// The generated combination validates with naga in both precisions for every shape the Hilbert LSTM and the
    /// tests launch (1 × 1 up to the limit), no device needed; and it is straight-line: no run-time indexed
    /// private array, one coefficient register per (output, input).
    #[test]
    fn generated_combine_validates_for_every_shape() {
        for (nin, nout) in [(1, 1), (2, 2), (4, 3), (13, 3), (16, 7), (13, 13), (MAX_INPUTS, 1)] {
            let src = combine_source(nin, nout);
            for p in [Precision::F32, Precision::F64] {
                validate_precision(&HILBERT_GEN, p, &src, &["combine"])
                    .unwrap_or_else(|e| panic!("{nin} × {nout}: {e}"));
            }
            assert!(!src.contains("array<Real,"), "{nin} × {nout}: private array");
            assert_eq!(src.matches("scal[cb + ").count(), nin * nout);
        }
    }

    /// The generated per-problem inner products validate in both precisions for a Gram matrix (X and Y
    /// operands) and a cross-product table, and read each operand once per coordinate.
    #[test]
    fn generated_dots_validate() {
        let gram: Vec<(usize, usize)> = (0..5).flat_map(|i| (i..5).map(move |j| (i, j))).collect();
        let cross: Vec<(usize, usize)> = (0..3).flat_map(|i| (3..7).map(move |j| (i, j))).collect();
        for (stores, pairs) in [
            (vec![Store::X, Store::Y, Store::X, Store::X, Store::Y], gram),
            (vec![Store::Y; 7], cross),
            (vec![Store::X], vec![(0, 0)]),
        ] {
            let src = dots_source(&stores, &pairs);
            for p in [Precision::F32, Precision::F64] {
                validate_precision(&HILBERT_GEN, p, &src, &["dots"]).unwrap_or_else(|e| panic!("{e}"));
            }
            assert_eq!(src.matches("        let a").count(), stores.len());
        }
    }
}
