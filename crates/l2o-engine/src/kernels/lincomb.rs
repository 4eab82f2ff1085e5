//! Launcher for `shaders/lincomb.wgsl`: out_b ← [c_out·σ_b·out_b] + Σ_j c_j·σ_b(col_j)·in_{j,b} with
//! per-problem coefficients σ read from a device scalar buffer (see the shader for the exact rule).

use anyhow::{Result, bail};

use crate::buffer::{DBuf, Dispatch, View, grid_x};
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
/// freezes finished problems, and an optional mask column (skip problem b when scal[b][mask] = 0).
#[derive(Clone, Copy, Debug)]
pub struct Scalars<'a> {
    pub scal: &'a DBuf,
    pub stride: usize,
    pub status: Option<&'a DBuf>,
    pub mask_col: Option<usize>,
}

/// Maximum number of input terms of one dispatch.
pub const MAX_TERMS: usize = 4;

/// Record out ← [keep] + Σ terms. `keep` = Some((c_out, col)) accumulates into the current value of out.
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
    let mut consts = vec![keep.map_or(0.0, |k| k.0)];
    consts.extend(terms.iter().map(|t| t.c));
    consts.resize(1 + MAX_TERMS, 0.0);
    let cst = ctx.upload("lincomb consts", &consts)?;
    let none = u32::MAX;
    let col = |c: Option<usize>| c.map_or(none, |c| c as u32);
    let t = |j: usize| terms.get(j);
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
        0,
        0,
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
    ctx.dispatch(
        &LINCOMB,
        "lincomb_main",
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
        ],
        [grid_x(n.div_ceil(256)), batch as u32, 1],
    )
}
