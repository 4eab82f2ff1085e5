//! WGSL sources (as consts, compiled once per precision by the [`Context`](crate::Context) pipeline cache) and
//! the bind-group layout of each kernel family. Every family shares one layout across its entry points.

use crate::precision::Precision;

pub const PRELUDE_F32: &str = include_str!("../../../shaders/prelude_f32.wgsl");
pub const PRELUDE_F64: &str = include_str!("../../../shaders/prelude_f64.wgsl");
/// Constants shared by every family (NONE, the shared scalar columns).
pub const COMMON: &str = include_str!("../../../shaders/common.wgsl");

/// Every name the engine puts in front of a family's body (precision prelude and common constants). All but
/// `Real` carry the `l2o_` / `L2O_` prefix, so a user's kernel may define any other name — `F`, `N`, `exp2` —
/// without a clash:
/// - `Real` — `f32` or `f64`, the context's precision;
/// - `L2O_REAL_MAX` — the largest finite `Real`; `L2O_EPS` — its machine epsilon; `l2o_is_finite(x)`;
/// - `l2o_exp`, `l2o_log`, `l2o_tanh` — exp, log, tanh in `Real` (on f64 built from + − × ÷, because WGSL's
///   f64 transcendentals are wrong on Vulkan); `l2o_pow2i` (f64 only);
/// - `L2O_PHI_VEC4` — vec4s of the L2L φ uniform;
/// - `L2O_NONE` (`0xffffffff`: "no column") and the per-problem scalar columns `L2O_F`, `L2O_G2`, `L2O_ITER`,
///   `L2O_NFEV` (mirrored by `l2o_engine::cols`).
pub const PRELUDE_NAMES: &[&str] = &[
    "Real",
    "L2O_REAL_MAX",
    "L2O_EPS",
    "l2o_is_finite",
    "l2o_exp",
    "l2o_log",
    "l2o_tanh",
    "l2o_pow2i",
    "L2O_PHI_VEC4",
    "L2O_NONE",
    "L2O_F",
    "L2O_G2",
    "L2O_ITER",
    "L2O_NFEV",
];

/// How a binding is declared in WGSL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    Uniform,
    Read,
    ReadWrite,
}

use Layout::{Read as R, ReadWrite as W, Uniform as U};

/// One `shaders/<name>.wgsl` file: its source (without prelude) and bindings 0.. in order.
#[derive(Debug)]
pub struct ShaderFamily {
    pub name: &'static str,
    pub body: &'static str,
    pub layout: &'static [Layout],
    /// Entry points, all validated by the naga tests.
    pub entries: &'static [&'static str],
    /// Compile-time constants a family's body expects (see [`ShaderFamily::source_with`]); the naga tests
    /// validate the body with these.
    pub default_defines: &'static str,
}

impl ShaderFamily {
    /// A family built at run time (generated WGSL, a source read from a file): validated with naga in both
    /// precisions, then kept for the life of the process — like the pipelines compiled from it, which the
    /// context caches by the family's contents. Build each distinct kernel once, not per call.
    pub fn leak(
        name: impl Into<String>,
        body: impl Into<String>,
        layout: Vec<Layout>,
        entries: &[&str],
    ) -> anyhow::Result<&'static ShaderFamily> {
        let leak_str = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let entries: Vec<&'static str> = entries.iter().map(|e| leak_str(e.to_string())).collect();
        let family = ShaderFamily {
            name: leak_str(name.into()),
            body: leak_str(body.into()),
            layout: Box::leak(layout.into_boxed_slice()),
            entries: Box::leak(entries.into_boxed_slice()),
            default_defines: "",
        };
        validate(&family)?;
        Ok(Box::leak(Box::new(family)))
    }

    /// The full WGSL for a precision: prelude (defines `Real` and the `l2o_`-prefixed helpers, see
    /// [`PRELUDE_NAMES`]) + common (the `L2O_` constants) + body.
    pub fn source(&self, precision: Precision) -> String {
        self.source_with(precision, self.default_defines)
    }

    /// The WGSL with `defines` (constant declarations, e.g. `const H: u32 = 20u;`) between prelude and body.
    pub fn source_with(&self, precision: Precision, defines: &str) -> String {
        let prelude = match precision {
            Precision::F32 => PRELUDE_F32,
            Precision::F64 => PRELUDE_F64,
        };
        format!("{prelude}\n{COMMON}\n{defines}\n{}", self.body)
    }
}

/// The constants `tree.wgsl` expects, for validation (the launchers pass the adapter's
/// [`crate::kernels::reduce::Reduction`]).
const TREE_DEFINES: &str = "const WG: u32 = 256u; const ITEMS: u32 = 16u; const CONTIG: bool = false; const TREE: bool = true;";

pub static REDUCE: ShaderFamily = ShaderFamily {
    name: "reduce",
    body: concat!(
        include_str!("../../../shaders/tree.wgsl"),
        include_str!("../../../shaders/reduce.wgsl")
    ),
    layout: &[R, R, R, W, W, R, R],
    entries: &["partial_main", "finish_main", "small_main"],
    default_defines: TREE_DEFINES,
};

/// The basis ring (`shaders/basis.wgsl`, launchers in [`crate::kernels::basis`]): Gram rows of the newest
/// vectors of a per-problem basis in one pass, and one combination of the basis. K and R are per launch.
pub static BASIS: ShaderFamily = ShaderFamily {
    name: "basis",
    body: concat!(
        include_str!("../../../shaders/basis_common.wgsl"),
        include_str!("../../../shaders/basis.wgsl")
    ),
    layout: &[R, W, W, W, W, W, R],
    entries: &["rows_small", "rows_finish", "combine"],
    default_defines: "const K: u32 = 11u; const R: u32 = 3u;
fn comb(b: u32, first: u32, step: u32) {
    let v0 = b * p.v_stride;
    let c0 = p.coef_off + b * p.coef_stride;
    for (var i = first; i < p.n; i = i + step) {
        var s: Real = 0.0;
        for (var j = 0u; j < K; j = j + 1u) { s = s + coef[c0 + j] * vecs[v0 + j * p.n + i]; }
        put(b, i, s);
    }
}",
};

/// The Gram rows of a [`BASIS`] ring for n > `kernels::basis::CH` (`shaders/basis_rows.wgsl`): vectors read-only
/// (once as Real, once as vec4), the per-lane partials, the status. The launcher generates `lanes` per (K, R)
/// (`kernels::basis::lanes_source`); the default defines are a loop form of the same sums.
pub static BASIS_ROWS: ShaderFamily = ShaderFamily {
    name: "basis_rows",
    body: concat!(
        include_str!("../../../shaders/basis_common.wgsl"),
        include_str!("../../../shaders/basis_rows.wgsl")
    ),
    layout: &[R, R, R, W, R],
    entries: &["rows_lanes"],
    default_defines: "const K: u32 = 11u; const R: u32 = 3u;
fn lanes(b: u32, c: u32, lo: u32, hi: u32, mid: u32) {
    let n = p.n;
    let v0 = b * p.v_stride;
    var acc: array<Real, RK>;
    for (var i = lo; i < hi; i = i + 32u) {
        for (var l = 0u; l < K; l = l + 1u) {
            let x = load4(v0 + l * n, i);
            for (var a = 0u; a < R; a = a + 1u) {
                acc[a * K + l] = acc[a * K + l] + dot(load4(v0 + slot(a) * n, i), x);
            }
        }
    }
    for (var q = 0u; q < RK; q = q + 1u) { partial[(b * p.chunks + c) * RK + q] = acc[q]; }
}",
};

/// The L-BFGS two-loop recursion on the Gram entries of a [`BASIS`] ring (`shaders/lbfgs_gram.wgsl`; launcher
/// `l2o_optim::vector_free`): one thread per problem, M per launch.
pub static LBFGS_GRAM: ShaderFamily = ShaderFamily {
    name: "lbfgs_gram",
    body: include_str!("../../../shaders/lbfgs_gram.wgsl"),
    layout: &[R, W, W, R, R],
    entries: &["direction", "pair_cols"],
    default_defines: "const M: u32 = 5u;",
};

pub static LINCOMB: ShaderFamily = ShaderFamily {
    name: "lincomb",
    body: include_str!("../../../shaders/lincomb.wgsl"),
    layout: &[R, R, W, R, R, R, R, R, R, W, R, R, R, R],
    entries: &["lincomb_main"],
    default_defines: "const LWG: u32 = 256u; const LITEMS: u32 = 1u; const LSEG: bool = false;",
};

pub static MAPS: ShaderFamily = ShaderFamily {
    name: "maps",
    body: include_str!("../../../shaders/maps.wgsl"),
    layout: &[R, R, W, R, W, W, W, R],
    entries: &["update", "adam_powers"],
    default_defines: "",
};

pub static STATUS: ShaderFamily = ShaderFamily {
    name: "status",
    body: concat!(
        include_str!("../../../shaders/status.wgsl"),
        include_str!("../../../shaders/status_rules.wgsl")
    ),
    layout: &[R, R, W, W, W],
    entries: &["update_status", "record"],
    default_defines: "",
};

pub static LBFGS: ShaderFamily = ShaderFamily {
    name: "lbfgs",
    body: concat!(
        include_str!("../../../shaders/lbfgs.wgsl"),
        include_str!("../../../shaders/policy_net.wgsl")
    ),
    layout: &[R, R, W, W, W],
    entries: &["ls_begin", "ls_update", "pair_update", "policy_step"],
    default_defines: "",
};

/// Bindings of the L2L kernels (loop-form `lstm.wgsl` and the generated, unrolled [`LSTM_GEN`]).
pub const LSTM_LAYOUT: &[Layout] = &[R, U, R, W, R, W, W, W, W, W, R, W];

pub static LSTM: ShaderFamily = ShaderFamily {
    name: "lstm",
    body: include_str!("../../../shaders/lstm.wgsl"),
    layout: LSTM_LAYOUT,
    entries: &["forward", "reverse", "outer_partial", "finish"],
    default_defines: "const H: u32 = 20u; const D: u32 = 2u;",
};

pub static POLICY: ShaderFamily = ShaderFamily {
    name: "policy",
    body: concat!(
        include_str!("../../../shaders/policy.wgsl"),
        include_str!("../../../shaders/policy_net.wgsl"),
        include_str!("../../../shaders/policy_adjoint.wgsl")
    ),
    layout: &[R, R, W, W],
    entries: &[
        "record_pre",
        "record_post",
        "rev_policy",
        "rev_loop2",
        "rev_gamma",
        "rev_loop1",
    ],
    default_defines: "",
};

pub static HILBERT: ShaderFamily = ShaderFamily {
    name: "hilbert",
    body: concat!(
        include_str!("../../../shaders/tree.wgsl"),
        include_str!("../../../shaders/hilbert_common.wgsl"),
        include_str!("../../../shaders/hilbert.wgsl")
    ),
    layout: &[R, R, W, W, W, W, R],
    entries: &["dots_small", "dots_partial", "dots_finish"],
    default_defines: TREE_DEFINES,
};

/// The Hilbert-space kernels generated by `kernels::hilbert`: `combine` per (inputs, outputs) (`combine_source`)
/// and, on the software adapter, the per-problem `dots` per pair structure (`dots_source`) — straight-line, the
/// bindings of [`HILBERT`]; each source holds one entry point and comes in whole as the `defines`.
pub static HILBERT_GEN: ShaderFamily = ShaderFamily {
    name: "hilbert",
    body: "",
    layout: &[R, R, W, W, W, W, R],
    entries: &["combine", "dots"],
    default_defines: "",
};

/// The L2L kernels generated per architecture, variant and entry point by `l2o_meta::l2l::kernels` (straight-line,
/// φ in workgroup memory): the whole body comes in as the `defines` of [`ShaderFamily::source_with`].
pub static LSTM_GEN: ShaderFamily = ShaderFamily {
    name: "lstm_gen",
    body: "",
    layout: LSTM_LAYOUT,
    entries: &["forward", "reverse_step", "dphi_step", "finish"],
    default_defines: "",
};

/// The Hilbert LSTM's per-problem cell and its reverse (`l2o_meta::hlstm::device::defines` gives the constants of an
/// architecture; the default is cell 2, m = 5, 32 hidden units).
pub static HLSTM: ShaderFamily = ShaderFamily {
    name: "hlstm",
    body: include_str!("../../../shaders/hlstm.wgsl"),
    layout: &[R, R, R, W, W, W, W, W, W, W],
    entries: &["cell_fwd", "cell_rev", "loss_weights"],
    default_defines: "const M: u32 = 5u; const K: u32 = 13u; const KK: u32 = 169u; const QH: u32 = 65u; \
        const NF: u32 = 112u; const NH: u32 = 32u; const KC: u32 = 14u; const NO: u32 = 30u; const CELL: u32 = 2u; \
        const PL: u32 = 4606u; const RW: u32 = 173u; const NR: u32 = 112u; const HWG: u32 = 64u;",
};

/// Every family the engine ships (tasks register theirs in `l2o-tasks`).
pub fn engine_families() -> Vec<&'static ShaderFamily> {
    vec![
        &REDUCE,
        &LINCOMB,
        &HILBERT,
        &BASIS,
        &BASIS_ROWS,
        &LBFGS_GRAM,
        &MAPS,
        &STATUS,
        &LBFGS,
        &LSTM,
        &POLICY,
    ]
}

/// The most storage buffers any engine kernel binds in one stage (a device must allow at least this many).
pub fn max_storage_bindings() -> u32 {
    engine_families()
        .iter()
        .map(|f| f.layout.iter().filter(|l| **l != Layout::Uniform).count() as u32)
        .max()
        .unwrap_or(0)
}

/// Parse and validate a family with naga for both precisions, without a device.
pub fn validate(family: &ShaderFamily) -> anyhow::Result<()> {
    validate_with(family, family.default_defines)
}

/// [`validate`] with other compile-time constants (a family specialised per architecture).
pub fn validate_with(family: &ShaderFamily, defines: &str) -> anyhow::Result<()> {
    for precision in [Precision::F32, Precision::F64] {
        validate_precision(family, precision, defines, family.entries)?;
    }
    Ok(())
}

/// [`validate_with`] for one precision, requiring the entry points `entries` (a generated source may hold
/// one entry point of its family).
pub fn validate_precision(
    family: &ShaderFamily,
    precision: Precision,
    defines: &str,
    entries: &[&str],
) -> anyhow::Result<()> {
    {
        let src = family.source_with(precision, defines);
        let module = naga::front::wgsl::parse_str(&src).map_err(|e| {
            anyhow::anyhow!("{} ({precision}): {}", family.name, e.emit_to_string(&src))
        })?;
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::FLOAT64,
        )
        .validate(&module)
        .map_err(|e| {
            anyhow::anyhow!("{} ({precision}): {}", family.name, e.emit_to_string(&src))
        })?;
        for e in entries {
            if !module.entry_points.iter().any(|ep| ep.name == *e) {
                anyhow::bail!("{}: entry point {e} missing", family.name);
            }
        }
        let used: Vec<u32> = module
            .global_variables
            .iter()
            .filter_map(|(_, g)| g.binding.as_ref().map(|b| b.binding))
            .collect();
        let max = used.iter().copied().max().map(|m| m + 1).unwrap_or(0) as usize;
        if max != family.layout.len() {
            anyhow::bail!(
                "{}: WGSL declares {max} bindings, layout has {}",
                family.name,
                family.layout.len()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every engine WGSL file parses and validates with naga for f32 and f64, no device needed (the reduction
    /// families in every variant).
    #[test]
    fn engine_shaders_validate_with_naga() {
        for f in engine_families() {
            validate(f).unwrap_or_else(|e| panic!("{e}"));
        }
        for r in [
            crate::kernels::reduce::Reduction::Tree,
            crate::kernels::reduce::Reduction::Seq,
        ] {
            for f in [&REDUCE, &HILBERT] {
                validate_with(f, r.defines()).unwrap_or_else(|e| panic!("{r:?}: {e}"));
            }
        }
    }

    /// The validator is not vacuous: a type error in a family is reported.
    #[test]
    fn naga_rejects_a_broken_shader() {
        static BROKEN: ShaderFamily = ShaderFamily {
            name: "broken",
            body: "@group(0) @binding(0) var<storage, read_write> x: array<Real>;\n\
                   @compute @workgroup_size(1) fn main() { x[0] = 1u; }",
            layout: &[Layout::ReadWrite],
            entries: &["main"],
            default_defines: "",
        };
        assert!(validate(&BROKEN).is_err());
    }

    /// A user's kernel may use the short names a user would pick (`F`, `N`, `G2`, `NONE`, `is_finite`, `exp2`):
    /// the engine's own names are prefixed ([`PRELUDE_NAMES`]), so it validates in both precisions; and the
    /// list is what the prelude and common really define (every name appears in them).
    #[test]
    fn user_kernels_may_use_common_short_names() {
        static USER: ShaderFamily = ShaderFamily {
            name: "user",
            body: "const F: u32 = 0u;\nconst N: u32 = 3u;\nconst G2: u32 = 1u;\nconst NONE: u32 = 9u;\n\
                   const ITER: u32 = 2u;\nconst NFEV: u32 = 5u;\nconst REAL_MAX: f32 = 1.0;\n\
                   fn is_finite(x: Real) -> bool { return l2o_is_finite(x); }\n\
                   fn r_exp(x: Real) -> Real { return l2o_exp(x); }\n\
                   @group(0) @binding(0) var<storage, read_write> x: array<Real>;\n\
                   @compute @workgroup_size(1) fn main() { if (is_finite(x[F])) { x[N + G2 + NONE - 9u] = r_exp(x[ITER + NFEV - 7u]); } }",
            layout: &[Layout::ReadWrite],
            entries: &["main"],
            default_defines: "",
        };
        validate(&USER).unwrap_or_else(|e| panic!("{e}"));
        for p in [Precision::F32, Precision::F64] {
            let head = USER.source_with(p, "");
            for name in PRELUDE_NAMES {
                if *name == "l2o_pow2i" && p == Precision::F32 {
                    continue;
                }
                assert!(
                    head.contains(name),
                    "{name} is not defined by the {p} prelude"
                );
            }
        }
    }
}
