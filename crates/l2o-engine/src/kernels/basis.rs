//! The basis ring: the schedule of a Hilbert-space program on the device (`shaders/basis.wgsl`).
//!
//! L-BFGS, L-BFGS-π's step-size policy and the Hilbert LSTM touch their n-dimensional vectors only through inner
//! products and linear combinations of a small basis (L-BFGS: b = [s_{k−m}…s_{k−1}, y_{k−m}…y_{k−1}, g_k]). So
//! each step needs one pass computing the inner products of the newest vectors with the basis — the Gram matrix
//! G_jl = ⟨v_j, v_l⟩ is kept and only the rows of the new vectors are recomputed ([`BasisRing::rows`]) —, a
//! scalar program per problem on G, and one pass writing a combination Σ_j c_j v_j ([`BasisRing::combine`]).
//! This is "vector-free L-BFGS" (Chen, Wang & Zhou, "Large-scale L-BFGS using MapReduce", NeurIPS 2014) and the
//! Hilbert LSTM paper's own construction ("Designing L-BFGS inspired automatic optimizer network").
//!
//! Layout per problem b: the K vectors at `vecs[b·K·n + j·n + i]`, G at `gram[b·K² + j·K + l]` (row-major,
//! symmetric). Every entry is computed once from the stored vectors (no update formula accumulates error).
//! Sums run in a fixed order (coordinates ascending for n ≤ [`CH`]; above, each lane's interleaved coordinates
//! ascending, then the lanes in order): same inputs, same bits. The f64 references are [`reference`].

use anyhow::{Result, bail};

use crate::buffer::{DBuf, Dispatch, View, grid_x};
use crate::context::Context;
use crate::kernels::hilbert::Coefs;
use crate::shaders::{BASIS, BASIS_ROWS};

/// Up to this n the Gram pass is one thread per problem summing in coordinate order (one dispatch); above it
/// workgroups of 8 lanes each sum interleaved coordinates over segments of 8·[`SEG`] (`rows_lanes`), and a
/// second dispatch adds the lanes' partials in order.
pub const CH: usize = 256;
/// Coordinates per lane of one segment of `rows_lanes` (mirrors `SEG` in `shaders/basis.wgsl`).
pub const SEG: usize = 1024;
/// Most basis vectors of a ring (R·K accumulators per thread of the Gram pass).
pub const MAX_K: usize = 64;
/// New rows per Gram dispatch (more are split over several dispatches).
pub const MAX_R: usize = 4;

const ACCUM: u32 = 1;
const USE_STATUS: u32 = 2;
const OUT_RING: u32 = 4;

/// The constants of the `basis` family for K vectors and R new rows, and its generated `comb(b, first, step)`:
/// Σ_j c_j v_j at coordinates first, first + step, … with the K coefficients read once (j ascending, as the
/// loop form in the default defines).
fn defines(k: usize, r: usize) -> String {
    use std::fmt::Write as _;
    let mut s = format!(
        "const K: u32 = {k}u; const R: u32 = {r}u;\nfn comb(b: u32, first: u32, step: u32) {{\n    let n = p.n;\n\
         \x20   let v0 = b * p.v_stride;\n    let c0 = p.coef_off + b * p.coef_stride;\n"
    );
    for j in 0..k {
        let _ = writeln!(
            s,
            "    let k{j} = coef[c0 + {j}u];\n    let o{j} = v0 + {j}u * n;"
        );
    }
    s += "    for (var i = first; i < n; i = i + step) {\n        var s: Real = 0.0;\n";
    for j in 0..k {
        let _ = writeln!(s, "        s = s + k{j} * vecs[o{j} + i];");
    }
    s += "        put(b, i, s);\n    }\n}\n";
    s
}

/// Coordinates per thread of `combine` (its grid: n / (256·COMBINE_PER_THREAD) workgroups per problem).
const COMBINE_PER_THREAD: usize = 16;

/// The `basis_rows` constants and its generated `lanes(b, c, lo, hi, mid)` for K vectors and R new rows: one
/// named accumulator per output (so the software adapter keeps them in registers), the R new vectors and each
/// basis vector loaded once per coordinate block — as vec4s on [lo, mid) (aligned), through `load4` on [mid, hi)
/// — and the sums in the order of the loop form (coordinates ascending per lane).
pub fn lanes_source(k: usize, r: usize) -> String {
    use std::fmt::Write as _;
    let mut s = format!("const K: u32 = {k}u; const R: u32 = {r}u;");
    s += "\nfn lanes(b: u32, c: u32, lo: u32, hi: u32, mid: u32) {\n    let n = p.n;\n    let v0 = b * p.v_stride;\n";
    for a in 0..r {
        let _ = writeln!(s, "    let s{a} = v0 + slot({a}u) * n;");
    }
    for l in 0..k {
        let _ = writeln!(s, "    let o{l} = v0 + {l}u * n;");
    }
    for a in 0..r {
        for l in 0..k {
            let _ = writeln!(s, "    var a{a}_{l}: Real = 0.0;");
        }
    }
    for (range, load) in [("lo; i < mid", "vec4"), ("mid; i < hi", "load4")] {
        let _ = writeln!(s, "    for (var i = {range}; i = i + 32u) {{");
        let ld = |o: &str| match load {
            "vec4" => format!("vecs4[({o} + i) / 4u]"),
            _ => format!("load4({o}, i)"),
        };
        for a in 0..r {
            let _ = writeln!(s, "        let n{a} = {};", ld(&format!("s{a}")));
        }
        for l in 0..k {
            let _ = writeln!(s, "        let x{l} = {};", ld(&format!("o{l}")));
            for a in 0..r {
                let _ = writeln!(s, "        a{a}_{l} = a{a}_{l} + dot(n{a}, x{l});");
            }
        }
        s += "    }\n";
    }
    s += "    let o = (b * p.chunks + c) * RK;\n";
    for a in 0..r {
        for l in 0..k {
            let _ = writeln!(s, "    partial[o + {}u] = a{a}_{l};", a * k + l);
        }
    }
    s += "}\n";
    s
}

/// Partial sums per output of the Gram pass over n coordinates: 1 (n ≤ [`CH`]), else one per lane of
/// `rows_lanes` (8 per segment of 8·[`SEG`] coordinates).
/// (rows_small also only while its one thread per problem stays well inside the software adapter's 65,535 loop
/// iterations per invocation, [`Context::loop_budget`]: ≈ n·(R + K·(R + 1)) there, so not for n near 256 with K
/// above ~45.)
fn chunks_for(n: usize, k: usize) -> usize {
    let small = n <= CH && n * (MAX_R + k * (MAX_R + 1)) <= 60_000;
    if small { 1 } else { 8 * n.div_ceil(8 * SEG) }
}

/// Where [`BasisRing::combine`] writes: a slot of the ring itself, or a batched vector elsewhere
/// (`buf[off + b·stride + i]`).
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    Slot(usize),
    Vector(View<'a>),
}

/// K basis vectors of n coordinates for each of B problems, and their Gram matrices.
pub struct BasisRing {
    pub n: usize,
    pub batch: usize,
    pub k: usize,
    /// \[B\]\[K\]\[n\].
    pub vecs: DBuf,
    /// \[B\]\[K\]\[K\], row-major.
    pub gram: DBuf,
    partial: DBuf,
    no_status: DBuf,
}

impl BasisRing {
    /// A ring of zero vectors (and a zero Gram matrix).
    pub fn new(ctx: &Context, n: usize, batch: usize, k: usize) -> Result<Self> {
        if n == 0 || batch == 0 || !(1..=MAX_K).contains(&k) {
            bail!(
                "basis ring: n = {n}, B = {batch}, K = {k}: need n ≥ 1, B ≥ 1 and 1 ≤ K ≤ {MAX_K}"
            );
        }
        if batch > 65535 {
            bail!("basis ring: B = {batch} problems exceed one dispatch's 65535 workgroups");
        }
        let chunks = chunks_for(n, k);
        Ok(Self {
            n,
            batch,
            k,
            vecs: ctx.zeros("basis vectors", batch * k * n)?,
            gram: ctx.zeros("basis Gram matrices", batch * k * k)?,
            partial: ctx.zeros(
                "basis Gram partials",
                if chunks > 1 {
                    batch * chunks * MAX_R * k
                } else {
                    1
                },
            )?,
            no_status: ctx.upload_u32("no status", &[0])?,
        })
    }

    /// Slot j as a batched vector (to fill it with other kernels, or read it).
    pub fn slot(&self, j: usize) -> View<'_> {
        self.vecs.slot(j, self.k, self.n)
    }

    fn chunks(&self) -> usize {
        chunks_for(self.n, self.k)
    }

    fn defines(&self, r: usize) -> String {
        defines(self.k, r)
    }

    fn params(
        &self,
        ctx: &Context,
        flags: u32,
        slots: &[usize],
        coef: Option<&Coefs>,
        out: (usize, usize),
    ) -> wgpu::Buffer {
        let u = |x: usize| x as u32;
        let s = |a: usize| slots.get(a).map_or(u32::MAX, |&x| u(x));
        let (coef_off, coef_stride) = coef.map_or((0, 0), |c| (c.off, c.stride));
        ctx.params(&[
            u(self.n),
            u(self.batch),
            u(self.chunks()),
            flags,
            s(0),
            s(1),
            s(2),
            s(3),
            u(self.k * self.n),
            0,
            u(self.k * self.k),
            u(coef_off),
            u(coef_stride),
            u(out.0),
            u(out.1),
            // rows_lanes reads whole vec4s when every vector offset is a multiple of 4
            u32::from(self.n % 4 == 0),
        ])
    }

    /// Record the Gram rows of the vectors in `slots` (distinct, any number: ≤ [`MAX_R`] per pass): G\[s\]\[l\] and
    /// G\[l\]\[s\] = ⟨v_s, v_l⟩ for every s in `slots` and every l < K. One pass over the vectors per group of
    /// [`MAX_R`] slots (one dispatch for n ≤ [`CH`], two above). With `status`, problems whose status is not 0
    /// keep their G.
    pub fn rows(
        &self,
        ctx: &Context,
        slots: &[usize],
        status: Option<&DBuf>,
    ) -> Result<Vec<Dispatch>> {
        if slots.is_empty() {
            bail!("basis ring: no slots given for the Gram rows");
        }
        for (i, &s) in slots.iter().enumerate() {
            if s >= self.k || slots[..i].contains(&s) {
                bail!(
                    "basis ring: slots {slots:?} must be distinct and below K = {}",
                    self.k
                );
            }
        }
        let flags = if status.is_some() { USE_STATUS } else { 0 };
        let st = status.unwrap_or(&self.no_status);
        let chunks = self.chunks();
        let mut d = vec![];
        // a group's mirror entries are written unless the column is a slot of the same group: the rows of a later
        // group overwrite the mirrors of an earlier one with the same value (⟨a, b⟩ = ⟨b, a⟩ bit for bit)
        for group in slots.chunks(MAX_R) {
            let r = group.len();
            let params = self.params(ctx, flags, group, None, (0, 0));
            let defines = self.defines(r);
            let binds = [
                &params,
                &self.vecs.buf,
                &self.gram.buf,
                &self.partial.buf,
                &self.gram.buf,
                &self.gram.buf,
                &st.buf,
            ];
            if chunks == 1 {
                d.push(ctx.dispatch_with(
                    &BASIS,
                    "rows_small",
                    &defines,
                    &binds,
                    [self.batch.div_ceil(64) as u32, 1, 1],
                )?);
            } else {
                d.push(ctx.dispatch_with(
                    &BASIS_ROWS,
                    "rows_lanes",
                    &lanes_source(self.k, r),
                    &[
                        &params,
                        &self.vecs.buf,
                        &self.vecs.buf,
                        &self.partial.buf,
                        &st.buf,
                    ],
                    [grid_x(chunks / 8), self.batch as u32, 1],
                )?);
                d.push(ctx.dispatch_with(
                    &BASIS,
                    "rows_finish",
                    &defines,
                    &binds,
                    [(r * self.k).div_ceil(64) as u32, self.batch as u32, 1],
                )?);
            }
        }
        Ok(d)
    }

    /// Record out ← \[out\] + Σ_j c_j v_j for every problem, c_j = `coef.buf[coef.off + b·coef.stride + j]` (stride
    /// 0: the same coefficients for every problem). `Target::Slot` may be one of the inputs (each coordinate reads
    /// every vector before it is written). One dispatch.
    pub fn combine(
        &self,
        ctx: &Context,
        coef: Coefs,
        out: Target,
        accumulate: bool,
        status: Option<&DBuf>,
    ) -> Result<Dispatch> {
        let (n, b, k) = (self.n, self.batch, self.k);
        if coef.off + (b - 1) * coef.stride + k > coef.buf.len
            || (b > 1 && coef.stride != 0 && coef.stride < k)
        {
            bail!(
                "basis ring: {b} coefficient rows of K = {k} at offset {} (stride {}) do not fit a buffer of {}",
                coef.off,
                coef.stride,
                coef.buf.len
            );
        }
        if n.div_ceil(256) > 65535 {
            bail!(
                "basis ring: n = {n} exceeds one combination dispatch (at most 65535·256 coordinates)"
            );
        }
        let mut flags = if accumulate { ACCUM } else { 0 };
        if status.is_some() {
            flags |= USE_STATUS;
        }
        let (out_buf, out_loc) = match out {
            Target::Slot(j) => {
                if j >= k {
                    bail!("basis ring: slot {j} outside K = {k}");
                }
                flags |= OUT_RING;
                (&self.vecs, (j, 0))
            }
            Target::Vector(v) => {
                if v.offset + (b - 1) * v.stride + n > v.buf.len || (b > 1 && v.stride < n) {
                    bail!(
                        "basis ring: output of {b} × {n} at offset {} (stride {}) does not fit a buffer of {}",
                        v.offset,
                        v.stride,
                        v.buf.len
                    );
                }
                (v.buf, (v.offset, v.stride))
            }
        };
        let params = self.params(ctx, flags, &[], Some(&coef), out_loc);
        let st = status.unwrap_or(&self.no_status);
        ctx.dispatch_with(
            &BASIS,
            "combine",
            &self.defines(1),
            &[
                &params,
                &self.vecs.buf,
                &self.gram.buf,
                &self.partial.buf,
                &coef.buf.buf,
                &out_buf.buf,
                &st.buf,
            ],
            [grid_x(n.div_ceil(256 * COMBINE_PER_THREAD)), b as u32, 1],
        )
    }
}

/// The f64 references of the ring's kernels (the oracle of the device tests).
pub mod reference {
    use crate::oracle;

    /// G\[s\]\[l\] = G\[l\]\[s\] = ⟨v_s, v_l⟩ for s in `slots`, on one problem's vectors `vecs` (K × n) and its
    /// row-major G (K × K).
    pub fn rows(vecs: &[f64], n: usize, k: usize, slots: &[usize], gram: &mut [f64]) {
        for &s in slots {
            for l in 0..k {
                let v = oracle::dot(&vecs[s * n..(s + 1) * n], &vecs[l * n..(l + 1) * n]);
                gram[s * k + l] = v;
                gram[l * k + s] = v;
            }
        }
    }

    /// out ← \[out\] + Σ_j c_j v_j on one problem.
    pub fn combine(vecs: &[f64], n: usize, c: &[f64], out: &mut [f64], accumulate: bool) {
        for (i, o) in out.iter_mut().enumerate().take(n) {
            let s: f64 = c
                .iter()
                .enumerate()
                .map(|(j, cj)| cj * vecs[j * n + i])
                .sum();
            *o = if accumulate { *o + s } else { s };
        }
    }
}
