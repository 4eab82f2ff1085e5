//! Launcher for `shaders/lincomb.wgsl`: out_b ← [c_out·σ_b·out_b] + Σ_j c_j·σ_b(col_j)·in_{j,b} with
//! per-problem coefficients σ read from a device scalar buffer (see the shader for the exact rule).

use anyhow::{Result, bail};

use crate::buffer::{DBuf, Dispatch, View, grid_flat};
use crate::context::Context;
use crate::shaders::LINCOMB;

/// One term c·σ_b(col)·v_b.
#[derive(Clone, Copy, Debug)]
pub struct Term<'a> {
    pub v: View<'a>,
    pub c: f64,
    pub col: Option<usize>,
}

impl<'a> Term<'a> {
    pub fn new(v: View<'a>, c: f64) -> Self {
        Self { v, c, col: None }
    }
    pub fn scaled(v: View<'a>, c: f64, col: usize) -> Self {
        Self {
            v,
            c,
            col: Some(col),
        }
    }
}

/// Per-problem context of a linear combination: the scalar buffer the σ columns index, the status buffer that
/// freezes finished problems, and an optional mask column (skip problem b when scal\[b\]\[mask\] = 0).
#[derive(Clone, Copy, Debug)]
pub struct Scalars<'a> {
    pub scal: &'a DBuf,
    pub stride: usize,
    pub status: Option<&'a DBuf>,
    pub mask_col: Option<usize>,
}

/// Maximum number of input terms of one dispatch.
pub const MAX_TERMS: usize = 4;

/// How elements are split over threads (family `lincomb`, see [`crate::variants`]). Both compute every element
/// with the same expression: their results are identical.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One element per thread, 256-thread workgroups (GPUs: coalesced).
    Grid,
    /// 256 contiguous elements per thread (four at a time where aligned), 64-thread workgroups (the software
    /// adapter: few long-running threads, vector loads).
    Seg,
}

impl Layout {
    pub const NAMES: [&'static str; 2] = ["grid", "seg"];

    pub fn of(ctx: &Context) -> Result<Self> {
        Ok(
            match ctx
                .variant("lincomb", &Self::NAMES, "grid", "seg")?
                .as_str()
            {
                "grid" => Layout::Grid,
                _ => Layout::Seg,
            },
        )
    }

    pub fn defines(self) -> &'static str {
        match self {
            Layout::Grid => {
                "const LWG: u32 = 256u; const LITEMS: u32 = 1u; const LSEG: bool = false;"
            }
            Layout::Seg => {
                "const LWG: u32 = 64u; const LITEMS: u32 = 256u; const LSEG: bool = true;"
            }
        }
    }

    /// Threads per workgroup and elements per thread.
    fn shape(self) -> (usize, usize) {
        match self {
            Layout::Grid => (256, 1),
            Layout::Seg => (64, 256),
        }
    }
}

/// Record out ← \[keep\] + Σ terms. `keep` = Some((c_out, col)) accumulates into the current value of out.
pub fn lincomb(
    ctx: &Context,
    n: usize,
    batch: usize,
    out: View,
    keep: Option<(f64, Option<usize>)>,
    terms: &[Term],
    sc: Scalars,
) -> Result<Dispatch> {
    if terms.len() > MAX_TERMS {
        bail!(
            "lincomb: at most {MAX_TERMS} terms per dispatch, got {}",
            terms.len()
        );
    }
    out.check("lincomb: out", n, batch)?;
    for (j, t) in terms.iter().enumerate() {
        t.v.check(&format!("lincomb: term {j}"), n, batch)?;
        if t.v.buf.id == out.buf.id {
            bail!(
                "lincomb: term {j} aliases the output buffer; use the accumulate term for the output itself"
            );
        }
    }
    let cols = terms
        .iter()
        .filter_map(|t| t.col)
        .chain(keep.and_then(|k| k.1))
        .chain(sc.mask_col);
    for c in cols {
        if c >= sc.stride || batch * sc.stride > sc.scal.len {
            bail!(
                "lincomb: scalar column {c} / stride {} do not fit the scalar buffer",
                sc.stride
            );
        }
    }
    let layout = Layout::of(ctx)?;
    // the four-at-a-time path needs every operand 4-aligned and every bound buffer at least one vec4 long
    let aligned = std::iter::once(out)
        .chain(terms.iter().map(|t| t.v))
        .all(|v| v.offset % 4 == 0 && v.stride % 4 == 0 && v.buf.len >= 4);
    let mut consts = vec![keep.map_or(0.0, |k| k.0)];
    consts.extend(terms.iter().map(|t| t.c));
    consts.resize(1 + MAX_TERMS, 0.0);
    let cst = ctx.upload("lincomb consts", &consts)?;
    let none = u32::MAX;
    let col = |c: Option<usize>| c.map_or(none, |c| c as u32);
    let t = |j: usize| terms.get(j);
    // threads per problem (one element or run each), problems packed into workgroups one after another
    let (wg, items) = layout.shape();
    let per = n.div_ceil(items);
    let groups = grid_flat((batch * per).div_ceil(wg));
    let mut words = vec![
        n as u32,
        batch as u32,
        out.offset as u32,
        out.stride as u32,
        terms.len() as u32,
        keep.is_some() as u32,
        sc.stride as u32,
        col(sc.mask_col),
        col(keep.and_then(|k| k.1)),
        sc.status.is_some() as u32,
        aligned as u32,
        per as u32,
    ];
    words.extend((0..4).map(|j| t(j).map_or(0, |t| t.v.offset as u32)));
    words.extend((0..4).map(|j| t(j).map_or(0, |t| t.v.stride as u32)));
    words.extend((0..4).map(|j| t(j).map_or(none, |t| col(t.col))));
    let params = ctx.params(&words);
    let dummy_status;
    let status = match sc.status {
        Some(s) => &s.buf,
        None => {
            dummy_status = ctx.upload_u32("no status", &[0])?;
            &dummy_status.buf
        }
    };
    let input = |j: usize| t(j).map_or(&cst.buf, |t| &t.v.buf.buf);
    // unused vec4 bindings get placeholders: one written (out4), one read (the inputs)
    let (quad_out, quad_in) = (
        ctx.zeros("lincomb unused out4", 4)?,
        ctx.zeros("lincomb unused in4", 4)?,
    );
    let input4 = |j: usize| if aligned { input(j) } else { &quad_in.buf };
    ctx.dispatch_with(
        &LINCOMB,
        "lincomb_main",
        layout.defines(),
        &[
            &params,
            &cst.buf,
            &out.buf.buf,
            input(0),
            input(1),
            input(2),
            input(3),
            &sc.scal.buf,
            status,
            if aligned { &out.buf.buf } else { &quad_out.buf },
            input4(0),
            input4(1),
            input4(2),
            input4(3),
        ],
        groups,
    )
}
