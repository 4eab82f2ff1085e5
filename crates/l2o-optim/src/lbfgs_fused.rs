//! Fused L-BFGS for small n ([`crate::Direction::Fused`]): one thread per problem runs a whole line-search round
//! in one dispatch (`shaders/lbfgs_fused.wgsl`) — g_tᵀd, the line-search state machine, and on acceptance the new
//! pair (s, y), its Gram rows against the basis ring [s_0…s_{m−1}, y_0…y_{m−1}, g], the pair test, the two-loop
//! recursion on the Gram entries (vector-free L-BFGS, Chen, Wang & Zhou 2014) and the next trial point. An
//! iteration is then the task's evaluation plus one dispatch per line-search round, whatever m.
//!
//! The passes over the n coordinates of a problem are K-unrolled WGSL generated here ([`defines`]): each reads
//! every basis vector once per coordinate with constant indices, so the K·3 sums stay in registers. The
//! algorithm (pair test, γ, reset to −g, first step, line searches) is exactly [`crate::lbfgs`]'s; only the
//! rounding differs from the two-loop on vectors (inner products of combinations instead of combinations of
//! vectors), and [`crate::lbfgs::reference`] is its f64 oracle too.

use std::fmt::Write as _;

use l2o_engine::shaders::{Layout, ShaderFamily};

/// Above this n [`crate::Direction::Auto`] takes the Gram direction instead: one thread per problem walks all n
/// coordinates ~4 times per accepted round, which the Gram pass and the combination spread over many threads.
/// Measured (`l2o bench --lbfgs`, strong Wolfe, 200 iterations, software adapter, 2026-12-06, free-running
/// rounds): fused/Gram time 0.44 at n = 1000 (B = 16, f32), 0.49 at n = 1000 (B = 256, f64), 1.02 at n = 4096 and
/// 1.08 at n = 8192 (B = 16, f32).
pub const AUTO_MAX_N: usize = 4096;

/// Loop iterations one thread runs in an accepted round (the costliest): g_tᵀd, the update and the three blocked
/// Gram rows, the combination (≈ 6.2·n), the two-loop on G (≈ 2·m·K) and a margin.
pub fn loop_iterations(n: usize, m: usize) -> usize {
    let k = 2 * m + 1;
    (6.2 * n as f64).ceil() as usize + 2 * m * k + 2 * k + 1_000
}

/// Whether the fused kernels can run n coordinates with history m on this context: within
/// [`Context::loop_budget`] (the software adapter stops every loop of an invocation beyond it, silently): up to
/// n ≈ 10,000 there.
pub fn fits_loop_budget(ctx: &l2o_engine::Context, n: usize, m: usize) -> bool {
    ctx.within_loop_budget(loop_iterations(n, m))
}

const R: Layout = Layout::Read;
const W: Layout = Layout::ReadWrite;

/// `lbfgs.wgsl` (bindings 0–4 and the state machines) + `lbfgs_fused.wgsl`; M, K, FWG and the unrolled passes
/// come in through [`defines`].
pub static LBFGS_FUSED: ShaderFamily = ShaderFamily {
    name: "lbfgs_fused",
    body: concat!(
        include_str!("../../../shaders/lbfgs.wgsl"),
        include_str!("../../../shaders/policy_net.wgsl"),
        include_str!("../../../shaders/lbfgs_fused.wgsl")
    ),
    layout: &[R, R, W, W, W, W, W, W, W, W, R, W, W],
    entries: &["fused_start", "fused_round"],
    default_defines: "",
};

/// The free-running rounds (`fused_free`, `shaders/lbfgs_fused_free.wgsl`): [`LBFGS_FUSED`]'s body and
/// bindings plus ε_g (13) and the run's trace (14). A problem that accepts its step goes straight on to its next iteration, so a run takes about as
/// many rounds as its slowest problem's evaluations, not Σ over iterations of the slowest line search (lockstep:
/// 3.7 rounds per iteration for 1.15 evaluations on the extended Rosenbrock benchmark).
pub static LBFGS_FUSED_FREE: ShaderFamily = ShaderFamily {
    name: "lbfgs_fused_free",
    body: concat!(
        include_str!("../../../shaders/lbfgs.wgsl"),
        include_str!("../../../shaders/policy_net.wgsl"),
        include_str!("../../../shaders/lbfgs_fused.wgsl"),
        include_str!("../../../shaders/status_rules.wgsl"),
        include_str!("../../../shaders/lbfgs_fused_free.wgsl")
    ),
    layout: &[R, R, W, W, W, W, W, W, W, W, R, W, W, R, W],
    entries: &["fused_free"],
    default_defines: "",
};

/// The WGSL constants and K-unrolled passes for history m and workgroup size `wg`:
/// The ring is laid out as the engine's basis ring, vecs\[(b·K + j)·n + i\], the Gram matrices gram\[b·K² + j·K + l\].
/// - `accept_pass(b, slot)`: one pass; per coordinate s = θ_t − θ, y = g_t − g into ring slots `slot` and m + slot,
///   g_t into slot 2m, θ ← θ_t, g ← g_t, then the products of s, y, g with all K basis vectors (read after the
///   writes, so the new slots give the new values); blocked sums; rows and mirrors of G written.
/// - `combine_pass(b, c, t)`: d = Σ_j c_j v_j (j ascending) and θ_t = θ + t·d.
pub fn defines(m: usize, wg: usize) -> String {
    let k = 2 * m + 1;
    let mut s = format!(
        "const M: u32 = {m}u;\nconst K: u32 = {k}u;\nconst FWG: u32 = {wg}u;\n\n\
         fn accept_pass(b: u32, slot: u32) {{\n\
         \x20   let n = p.n;\n    let o = b * n;\n    let v0 = b * K * n;\n\
         \x20   let so = v0 + slot * n;\n    let yo = v0 + (M + slot) * n;\n    let go = v0 + 2u * M * n;\n\
         "
    );
    let names = ["s", "y", "g"];
    // One pass: per coordinate the update (s, y, g_t into their slots, θ ← θ_t, g ← g_t), then every basis
    // vector read once (after the writes: the new slots give the new values) against s, y, g held in registers:
    // 3K sums per block. Each Gram entry is still summed in coordinate order within blocks of BLK and the blocks
    // in order, so the result is bit for bit that of one pass per row, with a third of the loads (measured on the
    // software adapter: the three Gram rows of B = 256, n = 100 in 0.5–0.65× the time of three passes).
    for a in names {
        for l in 0..k {
            let _ = writeln!(s, "    var t{a}{l}: Real = 0.0;");
        }
    }
    s += "    for (var i0 = 0u; i0 < n; i0 = i0 + BLK) {\n        let i1 = min(i0 + BLK, n);\n";
    for a in names {
        for l in 0..k {
            let _ = writeln!(s, "        var a{a}{l}: Real = 0.0;");
        }
    }
    s += "        for (var i = i0; i < i1; i = i + 1u) {\n\
           \x20           let th = theta_t[o + i];\n            let g1 = grad_t[o + i];\n\
           \x20           let vs = th - theta[o + i];\n            let vy = g1 - grad[o + i];\n            let vg = g1;\n\
           \x20           vecs[so + i] = vs;\n            vecs[yo + i] = vy;\n            vecs[go + i] = vg;\n\
           \x20           theta[o + i] = th;\n            grad[o + i] = g1;\n";
    for l in 0..k {
        let _ = writeln!(s, "            let x{l} = vecs[v0 + {l}u * n + i];");
    }
    for a in names {
        for l in 0..k {
            let _ = writeln!(s, "            a{a}{l} = a{a}{l} + v{a} * x{l};");
        }
    }
    s += "        }\n";
    for a in names {
        for l in 0..k {
            let _ = writeln!(s, "        t{a}{l} = t{a}{l} + a{a}{l};");
        }
    }
    s += "    }\n";
    s += "    let gb = b * KK;\n";
    for (a, row) in names.iter().zip(["slot", "M + slot", "2u * M"]) {
        for l in 0..k {
            let _ = writeln!(
                s,
                "    gram[gb + ({row}) * K + {l}u] = t{a}{l};\n    gram[gb + {l}u * K + ({row})] = t{a}{l};"
            );
        }
    }
    s += "}\n\nfn combine_pass(b: u32, c: array<Real, K>, t: Real) {\n\
          \x20   let n = p.n;\n    let o = b * n;\n    let v0 = b * K * n;\n";
    for l in 0..k {
        let _ = writeln!(s, "    let c{l} = c[{l}];");
    }
    // Four coordinates at a time (each coordinate's sum in the same order as one at a time), then the rest.
    s += "    let n4 = n - n % 4u;\n    for (var i = 0u; i < n4; i = i + 4u) {\n        var d = vec4<Real>(0.0);\n";
    for l in 0..k {
        let _ = writeln!(
            s,
            "        let o{l} = v0 + {l}u * n + i;\n        \
             d = d + c{l} * vec4<Real>(vecs[o{l}], vecs[o{l} + 1u], vecs[o{l} + 2u], vecs[o{l} + 3u]);"
        );
    }
    s += "        dir[o + i] = d.x;\n        dir[o + i + 1u] = d.y;\n        dir[o + i + 2u] = d.z;\n        dir[o + i + 3u] = d.w;\n\
          \x20       theta_t[o + i] = theta[o + i] + t * d.x;\n        theta_t[o + i + 1u] = theta[o + i + 1u] + t * d.y;\n\
          \x20       theta_t[o + i + 2u] = theta[o + i + 2u] + t * d.z;\n        theta_t[o + i + 3u] = theta[o + i + 3u] + t * d.w;\n    }\n";
    s += "    for (var i = n4; i < n; i = i + 1u) {\n        var d: Real = 0.0;\n";
    for l in 0..k {
        let _ = writeln!(s, "        d = d + c{l} * vecs[v0 + {l}u * n + i];");
    }
    s += "        dir[o + i] = d;\n        theta_t[o + i] = theta[o + i] + t * d;\n    }\n}\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused families with the generated passes validate with naga for both precisions and every m.
    #[test]
    fn fused_kernels_validate_with_naga() {
        for m in [1, 2, 5, 10] {
            for wg in [8, 64] {
                for f in [&LBFGS_FUSED, &LBFGS_FUSED_FREE] {
                    l2o_engine::shaders::validate_with(f, &defines(m, wg))
                        .unwrap_or_else(|e| panic!("{} m = {m}, wg = {wg}: {e:#}", f.name));
                }
            }
        }
    }
}
