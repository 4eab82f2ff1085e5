//! Generated WGSL for the L2L kernels (forward step, reverse step, ∂L/∂φ reduction), specialised to one
//! architecture (H, D) and one kernel variant: straight-line code, φ in workgroup memory.
//!
//! Why generated: the coordinatewise LSTM is a small dense matvec per coordinate (4H × (D+H) and 4H × 2H
//! weights shared by all coordinates). Written as loops over private arrays with runtime indices, naga/LLVM keep
//! nothing in registers and the software adapter reaches 3–5 GFLOP/s; written straight-line with constant
//! indices into a workgroup copy of φ, the same math runs 4–8× faster (`../shared/notes/lavapipe-performance.md`,
//! rules 1–2; BENCHMARKS.md). What the software adapter punishes, measured while building these kernels (Mesa
//! 22.3 lavapipe, LLVM 15), and therefore never appears below:
//! - a barrier inside a loop, or a large loop body after a barrier: lavapipe compiles a kernel with barriers as
//!   an LLVM coroutine, and the frame analysis is superlinear (H = 20: minutes to compile). Each kernel has one
//!   barrier at the top (the copy of φ or of the staged columns) and no loop after it: the reverse sweep and
//!   the ∂φ reduction are dispatched once per step;
//! - a return after a barrier (the rest of the kernel becomes masked code: 5× slower to run, 30× to compile):
//!   threads past the end clamp their index and skip only their stores;
//! - φ read from the uniform block at constant offsets (slower to run than workgroup memory, and a minute to
//!   compile): where φ does not fit workgroup memory (f64, or H ≳ 25) the loop-form kernels of
//!   `shaders/lstm.wgsl` run instead ([`crate::l2l::device::LstmKernels`]).
//!
//! The equations are those of [`crate::l2l`] (module docs), term for term and in the same summation order:
//! z = b + Σ_a W_ra·a_a with the inputs in order, λ = Σ_r W_raᵀ·δ_r with r ascending.
//!
//! Entry points (bindings as in `shaders/lstm.wgsl`), each its own module:
//! - `forward`: one thread per coordinate k; state slot_in → slot_out, θ ← θ + s·u; records x_t, g_t.
//! - `reverse_step` (step t = T−1 … 0): one thread per coordinate; recomputes the gates of step t from the
//!   stored state and input, writes ∂L/∂z of both layers and ∂L/∂u to slot t mod S of the adjoint rows of `dz`,
//!   and carries λh¹, λc¹, λh², λc², λθ in the rows after them.
//! - `dphi_step` (after every S-th reverse step): ∂L/∂φ += Σ_{t,k} δ_{t,k} ⊗ col_{t,k} over those S steps as four
//!   tiles — layer 1 (rows 4H, columns
//!   [x_t; h¹_t; 1]), layer 2 in two column sets ([h¹_{t+1}; 1] and h²_t) and the output row (columns
//!   [h²_{t+1}; 1]), one code path (see `dphi_step`'s table). Workgroup (tile, block of `block` coordinates): the
//!   block's columns are staged in workgroup memory, then thread r (row r) reads its own δ and accumulates one
//!   register per column from the staged values at constant indices (broadcasts). It adds its sums into
//!   `partial[block][param]` (overwrites at t = T−1).
//! - `finish`: ∂L/∂φ_i = Σ_block partial\[block\]\[i\] in block order.
//!
//! No atomics and a fixed summation order: the same inputs give the same bits on one adapter and one variant.
//! Variants differ in workgroup size and block length, which changes the grouping of the ∂φ sums; a variant is
//! chosen once per adapter and named in run outputs.

use std::fmt::Write as _;

use crate::l2l::LstmConfig;

/// Tunable shape of the generated kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LstmVariant {
    /// Threads per workgroup of `forward` and `reverse_step` (one coordinate each).
    pub wg: usize,
    /// Coordinates per workgroup of the ∂φ reduction (staged at once, then unrolled).
    pub block: usize,
    /// Steps of the reverse sweep per ∂φ dispatch (their adjoint rows are kept until it runs).
    pub steps: usize,
}

impl LstmVariant {
    /// A short name for logs and benchmark tables, e.g. `unrolled-wg128-b64-s2`.
    pub fn name(&self) -> String {
        format!("unrolled-wg{}-b{}-s{}", self.wg, self.block, self.steps)
    }
}

/// Threads of a `dphi_step` workgroup: one per row of its widest tile (5H + 1), rounded up to a multiple of 8.
pub fn dphi_threads(h: usize) -> usize {
    (5 * h + 1).next_multiple_of(8)
}

/// Slots of `partial` per block of the ∂φ reduction: 3 tiles × threads × columns.
pub fn partial_per_block(cfg: &LstmConfig) -> usize {
    3 * dphi_threads(cfg.hidden) * max_cols(cfg.hidden, cfg.input_dim())
}

/// Rows of `dz` per coordinate and step: δ¹ (4H), δ² (4H), ∂L/∂u, a copy of h²_{t+1} (H).
fn dz_step_rows(h: usize) -> usize {
    9 * h + 1
}

/// Columns of the widest ∂φ tile (layer 1: D + H + 1).
fn max_cols(h: usize, d: usize) -> usize {
    d + h + 1
}

/// Workgroup memory the variant needs (bytes) for an element size: φ for forward/reverse, the staged columns
/// for the reduction (separate entry points; the larger counts).
pub fn workgroup_bytes(cfg: &LstmConfig, v: &LstmVariant, real: usize) -> usize {
    let (h, d) = (cfg.hidden, cfg.input_dim());
    cfg.layout().len.max(v.steps * v.block * max_cols(h, d)) * real
}

/// Rows of `dz` per coordinate: the adjoint rows (9H + 1: δ¹, δ², ∂L/∂u, a copy of h²_{t+1}) of the `steps`
/// steps one ∂φ dispatch reduces, then the carried λ's (4H + 1).
pub fn dz_rows(h: usize, steps: usize) -> usize {
    steps * dz_step_rows(h) + 4 * h + 1
}

/// One of the generated kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    Forward,
    ReverseStep,
    DphiStep,
    Finish,
}

impl Entry {
    pub const ALL: [Entry; 4] = [
        Entry::Forward,
        Entry::ReverseStep,
        Entry::DphiStep,
        Entry::Finish,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Entry::Forward => "forward",
            Entry::ReverseStep => "reverse_step",
            Entry::DphiStep => "dphi_step",
            Entry::Finish => "finish",
        }
    }
}

struct Gen<'a> {
    s: String,
    h: usize,
    d: usize,
    v: &'a LstmVariant,
    o_w1: usize,
    o_b1: usize,
    o_w2: usize,
    o_b2: usize,
    o_wo: usize,
    o_bo: usize,
    p_len: usize,
}

macro_rules! w {
    ($g:expr, $($arg:tt)*) => { { let _ = writeln!($g.s, $($arg)*); } };
}

impl Gen<'_> {
    /// φ_i at a constant index (workgroup memory: a broadcast load).
    fn phi(&self, i: usize) -> String {
        format!("wsh[{i}]")
    }

    /// The copy of φ into workgroup memory at the top of a kernel (uniform control flow).
    fn load_phi(&mut self) {
        w!(
            self,
            "  for (var i = lid; i < {}u; i = i + {}u) {{ wsh[i] = phi[i / 4u][i % 4u]; }}",
            self.p_len,
            self.v.wg
        );
        w!(self, "  workgroupBarrier();");
    }

    /// z = b + W [ins] for the 4H gate rows of one layer, then activations, c_{t+1}, tanh(c_{t+1}), h_{t+1}.
    /// Defines `{p}i{j} {p}f{j} {p}o{j} {p}g{j} {p}c{j} {p}t{j} {p}h{j}` (gates, new cell, its tanh, new h).
    fn layer(&mut self, p: &str, ins: &[String], w_off: usize, b_off: usize, c_prev: &[String]) {
        let (h, cols) = (self.h, ins.len());
        let rows = 4 * h;
        for r0 in (0..rows).step_by(8) {
            let r1 = (r0 + 8).min(rows);
            for r in r0..r1 {
                let b = self.phi(b_off + r);
                w!(self, "  var {p}z{r}: Real = {b};");
            }
            for (a, inp) in ins.iter().enumerate() {
                for r in r0..r1 {
                    let wt = self.phi(w_off + r * cols + a);
                    w!(self, "  {p}z{r} = fma({wt}, {inp}, {p}z{r});");
                }
            }
        }
        for j in 0..h {
            w!(self, "  let {p}i{j} = sigm({p}z{j});");
            w!(self, "  let {p}f{j} = sigm({p}z{});", h + j);
            w!(self, "  let {p}o{j} = sigm({p}z{});", 2 * h + j);
            w!(self, "  let {p}g{j} = l2o_tanh({p}z{});", 3 * h + j);
            w!(
                self,
                "  let {p}c{j} = {p}f{j} * {} + {p}i{j} * {p}g{j};",
                c_prev[j]
            );
            w!(self, "  let {p}t{j} = l2o_tanh({p}c{j});");
            w!(self, "  let {p}h{j} = {p}o{j} * {p}t{j};");
        }
    }

    /// Preprocessed input x0 (, x1) of the gradient `g` (lstm.rs: LstmConfig::preprocess).
    fn preprocess(&mut self) {
        if self.d == 1 {
            w!(self, "  let x0 = g;");
        } else {
            w!(self, "  var x0: Real = -1.0;");
            w!(self, "  var x1: Real = cst[3] * g;");
            w!(
                self,
                "  if (abs(g) >= cst[2]) {{ x0 = l2o_log(abs(g)) / cst[1]; x1 = sign(g); }}"
            );
        }
    }

    /// `let h1_j c1_j h2_j c2_j` for the 4H state rows of the slot whose first element is `sb`.
    fn load_state(&mut self, sb: &str) {
        let h = self.h;
        for (q, name) in ["h1_", "c1_", "h2_", "c2_"].iter().enumerate() {
            for j in 0..h {
                w!(
                    self,
                    "  let {name}{j} = states[{sb} + {}u * kt];",
                    q * h + j
                );
            }
        }
    }

    /// Both layers (layer 1 prefix `a`, layer 2 prefix `b`) from x and the loaded state.
    fn cell(&mut self) {
        let h = self.h;
        let mut ins1: Vec<String> = (0..self.d).map(|a| format!("x{a}")).collect();
        ins1.extend((0..h).map(|j| format!("h1_{j}")));
        let c1: Vec<String> = (0..h).map(|j| format!("c1_{j}")).collect();
        let (w1, b1) = (self.o_w1, self.o_b1);
        self.layer("a", &ins1, w1, b1, &c1);
        let mut ins2: Vec<String> = (0..h).map(|j| format!("ah{j}")).collect();
        ins2.extend((0..h).map(|j| format!("h2_{j}")));
        let c2: Vec<String> = (0..h).map(|j| format!("c2_{j}")).collect();
        let (w2, b2) = (self.o_w2, self.o_b2);
        self.layer("b", &ins2, w2, b2, &c2);
    }

    fn header(&mut self, cfg: &LstmConfig, entry: Entry) {
        let (h, d) = (self.h, self.d);
        w!(
            self,
            "// generated by l2o_meta::l2l::kernels: {} for H = {h}, D = {d}, variant {}",
            entry.name(),
            self.v.name()
        );
        w!(
            self,
            "struct Params {{\n    k_total: u32, n: u32, batch: u32, h: u32,\n    d: u32, t: u32, slot_in: u32, slot_out: u32,\n    steps: u32, record: u32, chunks: u32, chunk_len: u32,\n    preprocess: u32, p_len: u32, accumulate: u32, tc: u32,\n}}"
        );
        let binds = [
            "var<storage, read> pb: Params",
            "var<uniform> phi: array<vec4<Real>, L2O_PHI_VEC4>",
            "var<storage, read> cst: array<Real>",
            "var<storage, read_write> theta: array<Real>",
            "var<storage, read> grad: array<Real>",
            "var<storage, read_write> states: array<Real>",
            "var<storage, read_write> xs: array<Real>",
            "var<storage, read_write> gs: array<Real>",
            "var<storage, read_write> dz: array<Real>",
            "var<storage, read_write> partial: array<Real>",
            "var<storage, read> status: array<u32>",
            "var<storage, read_write> dphi: array<Real>",
        ];
        for (i, b) in binds.iter().enumerate() {
            w!(self, "@group(0) @binding({i}) {b};");
        }
        // a private copy of the parameters (storage-buffer reads are gathers on the software adapter)
        w!(self, "var<private> p: Params;");
        match entry {
            Entry::Forward | Entry::ReverseStep => {
                w!(
                    self,
                    "var<workgroup> wsh: array<Real, {}>;",
                    cfg.layout().len
                );
                w!(
                    self,
                    "fn sigm(z: Real) -> Real {{ return 1.0 / (1.0 + l2o_exp(-z)); }}"
                );
            }
            Entry::DphiStep => {
                w!(
                    self,
                    "var<workgroup> shc: array<Real, {}>;",
                    self.v.steps * self.v.block * max_cols(h, d)
                );
            }
            Entry::Finish => {}
        }
    }

    /// The thread's coordinate k (clamped) and whether it is one (`live`): no thread returns early.
    fn coordinate(&mut self) {
        let wg = self.v.wg;
        w!(self, "  let kt = p.k_total;");
        w!(self, "  let k0 = gid.x + gid.y * nwg.x * {wg}u;");
        w!(self, "  let k = min(k0, kt - 1u);");
    }

    fn forward(&mut self) {
        let (h, wg) = (self.h, self.v.wg);
        w!(self, "@compute @workgroup_size({wg})");
        w!(
            self,
            "fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {{"
        );
        w!(self, "  p = pb;");
        self.load_phi();
        self.coordinate();
        w!(self, "  let live = k0 < kt && status[k / p.n] == 0u;");
        w!(self, "  let g = grad[k];");
        self.preprocess();
        w!(self, "  let sb = p.slot_in * {}u * kt + k;", 4 * h);
        self.load_state("sb");
        self.cell();
        let bo = self.phi(self.o_bo);
        w!(self, "  var u: Real = {bo};");
        for j in 0..h {
            let wo = self.phi(self.o_wo + j);
            w!(self, "  u = fma({wo}, bh{j}, u);");
        }
        w!(self, "  if (live) {{");
        w!(self, "  theta[k] = theta[k] + cst[0] * u;");
        w!(self, "  let so = p.slot_out * {}u * kt + k;", 4 * h);
        for (q, name) in ["ah", "ac", "bh", "bc"].iter().enumerate() {
            for j in 0..h {
                w!(self, "  states[so + {}u * kt] = {name}{j};", q * h + j);
            }
        }
        w!(self, "  if (p.record == 1u) {{");
        for a in 0..self.d {
            w!(self, "    xs[(p.t * {}u + {a}u) * kt + k] = x{a};", self.d);
        }
        w!(self, "    gs[p.t * kt + k] = g;");
        w!(self, "  }}");
        w!(self, "  }}");
        w!(self, "}}");
    }

    /// δ of one layer (prefix `p` of its recomputed forward) from λh (`lh`), λc (`lc`, updated to the adjoint of
    /// c_t): defines `{p}d{r}` for the 4H rows (lstm.rs: layer_reverse).
    fn delta(&mut self, p: &str, lh: &str, lc: &str, c_prev: &str) {
        let h = self.h;
        for j in 0..h {
            w!(self, "  let {p}lo{j} = {lh}{j} * {p}t{j};");
            w!(
                self,
                "  let {p}lt{j} = {lc}{j} + {lh}{j} * {p}o{j} * (1.0 - {p}t{j} * {p}t{j});"
            );
            w!(
                self,
                "  let {p}d{j} = {p}lt{j} * {p}g{j} * {p}i{j} * (1.0 - {p}i{j});"
            );
            w!(
                self,
                "  let {p}d{} = {p}lt{j} * {c_prev}{j} * {p}f{j} * (1.0 - {p}f{j});",
                h + j
            );
            w!(
                self,
                "  let {p}d{} = {p}lo{j} * {p}o{j} * (1.0 - {p}o{j});",
                2 * h + j
            );
            w!(
                self,
                "  let {p}d{} = {p}lt{j} * {p}i{j} * (1.0 - {p}g{j} * {p}g{j});",
                3 * h + j
            );
            w!(self, "  {lc}{j} = {p}lt{j} * {p}f{j};");
        }
    }

    /// out_a = Σ_r W[w_off + r·cols + col0 + a] δ_r for a < H (r ascending), 8 accumulators at a time;
    /// `assign(a, sum)` writes the statement that uses the sum.
    fn transposed(
        &mut self,
        tag: &str,
        dp: &str,
        w_off: usize,
        cols: usize,
        col0: usize,
        assign: &dyn Fn(usize, &str) -> String,
    ) {
        let (h, rows) = (self.h, 4 * self.h);
        for a0 in (0..h).step_by(8) {
            let a1 = (a0 + 8).min(h);
            for a in a0..a1 {
                w!(self, "  var {tag}{a}: Real = 0.0;");
            }
            for r in 0..rows {
                for a in a0..a1 {
                    let wt = self.phi(w_off + r * cols + col0 + a);
                    w!(self, "  {tag}{a} = fma({wt}, {dp}{r}, {tag}{a});");
                }
            }
            for a in a0..a1 {
                let st = assign(a, &format!("{tag}{a}"));
                w!(self, "  {st}");
            }
        }
    }

    /// Step t = p.t of the reverse sweep. λ's are in the rows after the adjoint rows of `dz` (from zero and
    /// λθ = (w_T/B)·g_T at t = T−1, `grad` holding g_T); the adjoint rows are those of this step.
    fn reverse_step(&mut self) {
        let (h, d, wg) = (self.h, self.d, self.v.wg);
        let (h4, zr) = (4 * h, 8 * h + 1);
        w!(self, "@compute @workgroup_size({wg})");
        w!(
            self,
            "fn reverse_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {{"
        );
        w!(self, "  p = pb;");
        self.load_phi();
        self.coordinate();
        w!(self, "  let live = k0 < kt;");
        w!(self, "  let t = p.t;");
        w!(self, "  let first = t + 1u == p.steps;");
        let zs = dz_step_rows(h);
        w!(self, "  let lb = {}u * kt + k;", self.v.steps * zs);
        w!(self, "  let zb = (t % {}u) * {zs}u * kt + k;", self.v.steps);
        for (q, name) in ["lh1_", "lc1_", "lh2_", "lc2_"].iter().enumerate() {
            for j in 0..h {
                w!(
                    self,
                    "  var {name}{j}: Real = select(dz[lb + {}u * kt], 0.0, first);",
                    q * h + j
                );
            }
        }
        w!(
            self,
            "  var lth: Real = select(dz[lb + {h4}u * kt], cst[3u + p.steps] * grad[k], first);"
        );
        w!(self, "  let sb = t * {h4}u * kt + k;");
        self.load_state("sb");
        for a in 0..d {
            w!(self, "  let x{a} = xs[(t * {d}u + {a}u) * kt + k];");
        }
        self.cell();
        w!(self, "  let du = cst[0] * lth;");
        for j in 0..h {
            let wo = self.phi(self.o_wo + j);
            w!(self, "  lh2_{j} = lh2_{j} + du * {wo};");
        }
        // layer 2: δ², then λh¹ += W2[:, 0..H]ᵀ δ², λh² = W2[:, H..2H]ᵀ δ²
        self.delta("b", "lh2_", "lc2_", "c2_");
        let w2 = self.o_w2;
        self.transposed("ua", "bd", w2, 2 * h, 0, &|a, s| {
            format!("lh1_{a} = lh1_{a} + {s};")
        });
        self.transposed("ub", "bd", w2, 2 * h, h, &|a, s| format!("lh2_{a} = {s};"));
        // layer 1: δ¹, then λh¹ = W1[:, D..D+H]ᵀ δ¹ (x depends on g only: no adjoint)
        self.delta("a", "lh1_", "lc1_", "c1_");
        let w1 = self.o_w1;
        self.transposed("uc", "ad", w1, d + h, d, &|a, s| format!("lh1_{a} = {s};"));
        w!(
            self,
            "  if (t >= 1u) {{ lth = lth + cst[3u + t] * gs[t * kt + k]; }}"
        );
        w!(self, "  if (live) {{");
        for r in 0..h4 {
            w!(self, "  dz[zb + {r}u * kt] = ad{r};");
        }
        for r in 0..h4 {
            w!(self, "  dz[zb + {}u * kt] = bd{r};", h4 + r);
        }
        w!(self, "  dz[zb + {}u * kt] = du;", 8 * h);
        for j in 0..h {
            w!(self, "  dz[zb + {}u * kt] = bh{j};", zr + j);
        }
        for (q, name) in ["lh1_", "lc1_", "lh2_", "lc2_"].iter().enumerate() {
            for j in 0..h {
                w!(self, "  dz[lb + {}u * kt] = {name}{j};", q * h + j);
            }
        }
        w!(self, "  dz[lb + {h4}u * kt] = lth;");
        w!(self, "  }}");
        w!(self, "}}");
    }

    /// The ∂φ reduction of the steps [t0, t0 + cnt) (t0 = p.t, cnt = p.tc ≤ S = `steps`). Workgroup (tile,
    /// block of `block` coordinates): the columns of its S·block entries are staged in workgroup memory, then
    /// thread r owns one row of per-entry values and keeps NC = D + H + 1 accumulators, one per staged column
    /// (unused columns are staged as zeros):
    ///
    /// | tile | thread r's row | columns | gives |
    /// |---|---|---|---|
    /// | 0 | δ¹_r (r < 4H) | x_t, h¹_t, 1 | W1, b1 |
    /// | 1 | δ²_r (r < 4H); h²_{t+1, r−4H} (r < 5H); 1 (r = 5H) | h¹_{t+1}, 1, ∂L/∂u | W2[:, ..H], b2; w_out, b_out |
    /// | 2 | δ²_r (r < 4H) | h²_t | W2[:, H..] |
    ///
    /// After the barrier the code has no branches (lavapipe compiles a kernel with a barrier as a coroutine whose
    /// frame analysis grows with the branches after it): every thread stores all its accumulators to its own
    /// slots of `partial` ([block][tile][thread][NC]); `finish` maps each parameter to its slot.
    fn dphi_step(&mut self) {
        let (h, d, eb, ns) = (self.h, self.d, self.v.block, self.v.steps);
        let h4 = 4 * h;
        let zr = dz_step_rows(h);
        let ncol = max_cols(h, d);
        let nt = dphi_threads(h);
        w!(self, "@compute @workgroup_size({nt})");
        w!(
            self,
            "fn dphi_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {{"
        );
        w!(self, "  p = pb;");
        w!(self, "  let kt = p.k_total;");
        w!(self, "  let t0 = p.t;");
        w!(self, "  let cnt = p.tc;");
        w!(self, "  let tile = wid.x;");
        w!(self, "  let k0 = wid.y * {eb}u;");
        w!(self, "  let t1 = tile == 1u;");
        w!(
            self,
            "  for (var q = lid; q < p.chunk_len * {}u; q = q + {nt}u) {{",
            ns * ncol
        );
        w!(self, "    let s = q / {}u;", ncol * eb);
        w!(self, "    let rem = q - s * {}u;", ncol * eb);
        w!(self, "    let j = rem / {eb}u;");
        w!(self, "    let e = rem - j * {eb}u;");
        w!(self, "    let t = min(t0 + s, p.steps - 1u);");
        w!(self, "    let kk = min(k0 + e, kt - 1u);");
        w!(
            self,
            "    let vx = xs[(t * {d}u + min(j, {}u)) * kt + kk];",
            d - 1
        );
        w!(
            self,
            "    let srow = select(select({}u + j, j, t1), j - {d}u, tile == 0u && j >= {d}u);",
            2 * h
        );
        w!(
            self,
            "    let vs = states[((t + select(0u, 1u, t1)) * {h4}u + min(srow, {}u)) * kt + kk];",
            h4 - 1
        );
        w!(
            self,
            "    let vu = dz[((t % {ns}u) * {zr}u + {}u) * kt + kk];",
            8 * h
        );
        w!(
            self,
            "    let v0 = select(select(select(Real(0.0), Real(1.0), j == {}u), vs, j < {}u), vx, j < {d}u);",
            d + h,
            d + h
        );
        w!(
            self,
            "    let v1 = select(select(select(0.0, vu, j == {}u), 1.0, j == {h}u), vs, j < {h}u);",
            h + 1
        );
        w!(self, "    let v2 = select(0.0, vs, j < {h}u);");
        w!(
            self,
            "    let v = select(select(v2, v1, t1), v0, tile == 0u);"
        );
        w!(
            self,
            "    shc[(s * {eb}u + e) * {ncol}u + j] = select(0.0, v, k0 + e < kt && s < cnt);"
        );
        w!(self, "  }}");
        w!(self, "  workgroupBarrier();");
        // the thread's row of dz (clamped; threads past their tile's rows compute into slots nobody reads)
        w!(self, "  let r = lid;");
        w!(
            self,
            "  let row = min(select(select({h4}u + r, select({}u + r, {h4}u + r, r < {h4}u), t1), r, tile == 0u), {}u);",
            h4 + 1,
            zr - 1
        );
        w!(self, "  let ones = t1 && r == {}u;", 5 * h);
        w!(self, "  let zlast = {}u * kt - 1u;", ns * zr);
        for j in 0..ncol {
            w!(self, "  var a{j}: Real = 0.0;");
        }
        for st in 0..ns {
            w!(self, "  let rb{st} = ({}u + row) * kt + k0;", st * zr);
            for e in 0..eb {
                let i = st * eb + e;
                w!(
                    self,
                    "  let d{i} = select(select(0.0, dz[min(rb{st} + {e}u, zlast)], k0 + {e}u < kt && {st}u < cnt), 1.0, ones);"
                );
                for j in 0..ncol {
                    w!(self, "  a{j} = fma(d{i}, shc[{}u], a{j});", i * ncol + j);
                }
            }
        }
        w!(
            self,
            "  let pb = ((wid.y * 3u + tile) * {nt}u + r) * {ncol}u;"
        );
        w!(self, "  let acc = p.accumulate == 1u;");
        for j in 0..ncol {
            w!(
                self,
                "  partial[pb + {j}u] = select(a{j}, partial[pb + {j}u] + a{j}, acc);"
            );
        }
        w!(self, "}}");
    }

    /// ∂L/∂φ_i = Σ_block partial[block][slot(i)] in block order, slot(i) = (tile, thread, column) of
    /// `dphi_step`'s table.
    fn finish(&mut self) {
        let (h, d) = (self.h, self.d);
        let (ncol, nt) = (max_cols(h, d), dphi_threads(h));
        let (b1, w2, b2, wo, bo) = (self.o_b1, self.o_w2, self.o_b2, self.o_wo, self.o_bo);
        w!(self, "@compute @workgroup_size(64)");
        w!(
            self,
            "fn finish(@builtin(global_invocation_id) gid: vec3<u32>) {{"
        );
        w!(self, "  p = pb;");
        w!(self, "  let i = gid.x;");
        w!(self, "  if (i >= {}u) {{ return; }}", self.p_len);
        w!(self, "  var tile = 0u;");
        w!(self, "  var r = 0u;");
        w!(self, "  var j = 0u;");
        w!(
            self,
            "  if (i < {b1}u) {{ r = i / {}u; j = i % {}u; }}",
            d + h,
            d + h
        );
        w!(
            self,
            "  else if (i < {w2}u) {{ r = i - {b1}u; j = {}u; }}",
            d + h
        );
        w!(
            self,
            "  else if (i < {b2}u) {{ let q = i - {w2}u; r = q / {}u; j = q % {}u; tile = 1u; if (j >= {h}u) {{ tile = 2u; j = j - {h}u; }} }}",
            2 * h,
            2 * h
        );
        w!(
            self,
            "  else if (i < {wo}u) {{ tile = 1u; r = i - {b2}u; j = {h}u; }}"
        );
        w!(
            self,
            "  else if (i < {bo}u) {{ tile = 1u; r = {}u + i - {wo}u; j = {}u; }}",
            4 * h,
            h + 1
        );
        w!(
            self,
            "  else {{ tile = 1u; r = {}u; j = {}u; }}",
            5 * h,
            h + 1
        );
        w!(self, "  let slot = (tile * {nt}u + r) * {ncol}u + j;");
        w!(self, "  var total: Real = 0.0;");
        w!(
            self,
            "  for (var c = 0u; c < p.chunks; c = c + 1u) {{ total = total + partial[c * {}u + slot]; }}",
            3 * nt * ncol
        );
        w!(self, "  dphi[i] = total;");
        w!(self, "}}");
    }
}

/// The WGSL body (after the engine's precision prelude) of one kernel for `cfg` and `v`.
pub fn source(cfg: &LstmConfig, v: &LstmVariant, entry: Entry) -> String {
    let l = cfg.layout();
    let mut g = Gen {
        s: String::with_capacity(1 << 19),
        h: l.h,
        d: l.d,
        v,
        o_w1: l.w1,
        o_b1: l.b1,
        o_w2: l.w2,
        o_b2: l.b2,
        o_wo: l.wo,
        o_bo: l.bo,
        p_len: l.len,
    };
    g.header(cfg, entry);
    match entry {
        Entry::Forward => g.forward(),
        Entry::ReverseStep => g.reverse_step(),
        Entry::DphiStep => g.dphi_step(),
        Entry::Finish => g.finish(),
    }
    g.s
}

#[cfg(test)]
mod tests {
    use super::*;
    use l2o_engine::Precision;
    use l2o_engine::shaders::{LSTM_GEN, validate_precision};

    /// Every generated kernel parses and validates with naga for the architectures and variants the launcher
    /// can choose, without a device (f32: the launcher uses them only where φ fits workgroup memory; f64 is
    /// validated too, for adapters with more than 32 KiB of it).
    #[test]
    fn generated_lstm_kernels_validate_with_naga() {
        for (h, pre, v) in [
            (
                20,
                Some(10.0),
                LstmVariant {
                    wg: 128,
                    block: 64,
                    steps: 2,
                },
            ),
            (
                5,
                None,
                LstmVariant {
                    wg: 64,
                    block: 32,
                    steps: 3,
                },
            ),
            (
                1,
                Some(10.0),
                LstmVariant {
                    wg: 256,
                    block: 8,
                    steps: 1,
                },
            ),
        ] {
            let cfg = LstmConfig {
                hidden: h,
                preprocess: pre,
                scale: 1.0,
            };
            for e in Entry::ALL {
                let src = source(&cfg, &v, e);
                for p in [Precision::F32, Precision::F64] {
                    validate_precision(&LSTM_GEN, p, &src, &[e.name()])
                        .unwrap_or_else(|err| panic!("H = {h}, {} {}: {err}", v.name(), e.name()));
                }
            }
        }
    }
}
