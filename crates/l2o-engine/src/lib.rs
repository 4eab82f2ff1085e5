//! # l2o-engine
//!
//! The bottom layer of l2o: a wgpu [`Context`] (adapter choice, f32/f64 precision, pipeline cache, error
//! capture), device buffers laid out as B problems × n coordinates, and the batched linear-algebra kernels that
//! every optimizer is built from: inner products and Gram matrices ([`kernels::reduce`]), linear combinations
//! with per-problem device coefficients ([`kernels::lincomb`]). Every kernel has an f64 CPU oracle in
//! [`oracle`]; WGSL sources live in the top-level `shaders/` directory.
//!
//! **Depends on** no other l2o crate (wgpu, naga, bytemuck, pollster, futures, serde_json): every layer above
//! builds on this one.
//!
//! ```no_run
//! use l2o_engine::{Context, ContextOptions, Precision};
//! let ctx = Context::new(&ContextOptions::with_precision(Precision::F32))?;
//! println!("{}", ctx.describe());
//! # anyhow::Ok(())
//! ```

pub mod buffer;
pub mod context;
pub mod kernels;
pub mod naga_backends;
pub mod oracle;
pub mod pipeline_cache;
pub mod precision;
pub mod shaders;
pub mod variants;

pub use buffer::{DBuf, Dispatch, Elem, HostStep, View, grid_x};
pub use context::{AdapterSummary, CompileStats, Context, ContextOptions};
pub use kernels::basis::BasisRing;
pub use kernels::hilbert::{
    Coefs, Operand, Output, Pair, Store, Stores, combine, dots, gram_pairs,
};
pub use kernels::lincomb::{Scalars, Term, lincomb};
pub use kernels::reduce::{ScalarOut, dot, gram, sum};
pub use precision::Precision;
pub use wgpu;

/// Status codes of a problem (see `shaders/status.wgsl`).
pub mod status {
    pub const RUNNING: u32 = 0;
    pub const CONVERGED: u32 = 1;
    pub const DIVERGED: u32 = 2;
    pub const LINE_SEARCH_FAILED: u32 = 3;
    pub const AT_PRECISION: u32 = 4;
    /// How many status codes there are (0 … COUNT − 1).
    pub const COUNT: usize = 5;
    pub fn name(code: u32) -> &'static str {
        Status::from_code(code).map_or("unknown", Status::name)
    }

    /// What became of one problem in a run (`Trace::status` holds the codes; [`Status::from_code`] reads them).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Status {
        /// Still being optimised.
        Running,
        /// ‖∇f‖ fell below the run's ε, or is exactly zero (a stationary point): frozen.
        Converged,
        /// f or ‖∇f‖ became non-finite: frozen.
        Diverged,
        /// No step satisfied the line search although f could resolve the decrease its first trial predicted
        /// (f and ∇f disagree, or the function is pathological there): frozen.
        LineSearchFailed,
        /// Converged at the working precision: the line search found no acceptable step and the decrease its
        /// first trial predicted was below the rounding of f (a few hundred ε of the run's f scale), so no step
        /// can make measurable progress: frozen. L-BFGS's usual end in f32 without an ε_g.
        AtPrecision,
    }

    impl Status {
        /// The status of a device code, `None` for a code no kernel writes.
        pub fn from_code(code: u32) -> Option<Status> {
            Some(match code {
                RUNNING => Status::Running,
                CONVERGED => Status::Converged,
                DIVERGED => Status::Diverged,
                LINE_SEARCH_FAILED => Status::LineSearchFailed,
                AT_PRECISION => Status::AtPrecision,
                _ => return None,
            })
        }
        /// The device code.
        pub fn code(self) -> u32 {
            match self {
                Status::Running => RUNNING,
                Status::Converged => CONVERGED,
                Status::Diverged => DIVERGED,
                Status::LineSearchFailed => LINE_SEARCH_FAILED,
                Status::AtPrecision => AT_PRECISION,
            }
        }
        pub fn name(self) -> &'static str {
            match self {
                Status::Running => "running",
                Status::Converged => "converged",
                Status::Diverged => "diverged",
                Status::LineSearchFailed => "line search failed",
                Status::AtPrecision => "converged at the working precision",
            }
        }
        /// Converged: ‖∇f‖ < ε or ∇f = 0 ([`Status::Converged`]), or no progress possible at the working
        /// precision ([`Status::AtPrecision`]).
        pub fn converged(self) -> bool {
            matches!(self, Status::Converged | Status::AtPrecision)
        }
        /// Why the problem stopped, in the style of scipy's L-BFGS-B messages.
        pub fn message(self) -> &'static str {
            match self {
                Status::Running => "RUNNING: iteration limit reached",
                Status::Converged => "CONVERGENCE: NORM OF GRADIENT <= GTOL (or exactly zero)",
                Status::Diverged => "ABNORMAL: NON-FINITE F OR GRADIENT",
                Status::LineSearchFailed => "ABNORMAL: LINE SEARCH FAILED",
                Status::AtPrecision => {
                    "CONVERGENCE: NO DECREASE RESOLVABLE AT THE WORKING PRECISION"
                }
            }
        }
    }

    impl std::fmt::Display for Status {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.name())
        }
    }
}

/// Per-problem scalar columns shared by every optimizer (first four columns of the scalar buffer).
pub mod cols {
    pub const F: usize = 0;
    pub const G2: usize = 1;
    pub const ITER: usize = 2;
    pub const NFEV: usize = 3;
}

/// Scalar columns of the L-BFGS kernels (mirror of the constants at the top of `shaders/lbfgs.wgsl`).
pub mod lbfgs_cols {
    pub use super::cols::*;
    pub const T: usize = 4;
    pub const GD: usize = 5;
    pub const FT: usize = 6;
    pub const GDT: usize = 7;
    pub const PENDING: usize = 8;
    pub const PHASE: usize = 9;
    pub const NLS: usize = 10;
    pub const TLO: usize = 11;
    pub const FLO: usize = 12;
    pub const GLO: usize = 13;
    pub const THI: usize = 14;
    pub const FHI: usize = 15;
    pub const GHI: usize = 16;
    pub const F0: usize = 17;
    pub const GD0: usize = 18;
    pub const DA: usize = 19;
    pub const DB: usize = 20;
    pub const GAMMA: usize = 21;
    pub const HASP: usize = 22;
    pub const SY: usize = 23;
    pub const YY: usize = 24;
    pub const SS: usize = 25;
    /// f(θ₀), the scale of the precision-floor test (`failed_status` in shaders/lbfgs.wgsl).
    pub const FSTART: usize = 26;
    pub const RHO0: usize = 27;
    pub fn rho(i: usize) -> usize {
        RHO0 + i
    }
    pub fn alpha(m: usize, i: usize) -> usize {
        RHO0 + m + i
    }
    pub fn beta(m: usize, i: usize) -> usize {
        RHO0 + 2 * m + i
    }
    /// The 4×4 Gram matrix of [d, g, s_{k−1}, y_{k−1}] read by the step policy (16 columns, row-major), then
    /// the policy's p = u1ᵀu2/‖u2‖² and τ (L-BFGS-π, seed 003 §4).
    pub fn gram0(m: usize) -> usize {
        RHO0 + 3 * m
    }
    pub fn policy_p(m: usize) -> usize {
        gram0(m) + 16
    }
    pub fn policy_tau(m: usize) -> usize {
        gram0(m) + 17
    }
    pub fn stride(m: usize) -> usize {
        RHO0 + 3 * m + 18
    }
}
