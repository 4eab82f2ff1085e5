//! l2o: a GPU compute engine for learned optimizers (wgpu + WGSL). This umbrella crate re-exports the layers
//! [`engine`] → [`tasks`] → [`optim`] → [`meta`] (each may depend only on those to its left) and the helpers
//! shared by the integration tests. The benchmarks behind `l2o bench` live in the `l2o-bench` crate. See
//! README.md.
pub use l2o_engine as engine;
pub use l2o_meta as meta;
pub use l2o_optim as optim;
pub use l2o_tasks as tasks;

/// Helpers shared by the integration tests in `tests/` (an injected device, explicit tolerances).
#[doc(hidden)]
pub mod testing {
    use l2o_engine::{Context, ContextOptions, Precision};

    /// The device every test runs on: the backend in `L2O_BACKEND` (default Vulkan, where CI has lavapipe).
    /// Without one the test fails with the install hint, unless `L2O_SKIP_GPU_TESTS=1` (then `None`).
    pub fn ctx(precision: Precision) -> Option<Context> {
        let backend = std::env::var("L2O_BACKEND").unwrap_or_else(|_| "vulkan".into());
        open(&backend, precision, None)
    }

    fn open(backend: &str, precision: Precision, kernels: Option<&str>) -> Option<Context> {
        match Context::new(&ContextOptions {
            backend: Some(backend.into()),
            adapter: None,
            precision,
            kernels: kernels.map(String::from),
            local_rank: None,
        }) {
            Ok(c) => Some(c),
            Err(e) if std::env::var("L2O_SKIP_GPU_TESTS").as_deref() == Ok("1") => {
                eprintln!("SKIPPED (L2O_SKIP_GPU_TESTS=1): {e:#}");
                None
            }
            Err(e) => panic!(
                "no device for the tests: {e:#}\n(set L2O_SKIP_GPU_TESTS=1 to skip device tests)"
            ),
        }
    }

    /// Both precisions where the adapter allows (f64 on lavapipe and most Vulkan GPUs).
    pub fn each_precision(mut body: impl FnMut(&Context)) {
        for p in [Precision::F32, Precision::F64] {
            if let Some(c) = ctx(p) {
                body(&c);
            }
        }
    }

    /// The backends whose adapters the kernel tests run on: `L2O_TEST_BACKENDS` (comma separated), else every
    /// one of Vulkan and GL that has an adapter here (CI: lavapipe and Mesa llvmpipe through EGL; GL has no
    /// f64, like Metal, so it keeps the f32-only paths honest).
    pub fn test_backends() -> Vec<String> {
        if let Ok(b) = std::env::var("L2O_TEST_BACKENDS") {
            return b
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        let mut v = vec!["vulkan".to_string()];
        if Context::adapters(Some("gl"))
            .map(|a| !a.is_empty())
            .unwrap_or(false)
        {
            v.push("gl".into());
        }
        v
    }

    /// The kernel-variant sets every device test body runs with: the GPU defaults and the software-adapter
    /// defaults, so that each variant of each family is checked against the oracle on every adapter.
    pub const VARIANT_SETS: [&str; 2] = [
        "reduce=tree,lincomb=grid,mlp=tiled",
        "reduce=seq,lincomb=seg,mlp=lanes",
    ];

    /// One test body on every adapter of [`test_backends`], in every precision it supports, with every set of
    /// [`VARIANT_SETS`]: the kernel-vs-oracle tests (cubecl's pattern). Each case is printed (`case: …`) before
    /// it runs, so a failure names its adapter, precision and variants.
    pub fn each_device(mut body: impl FnMut(&Context)) {
        for backend in test_backends() {
            for p in [Precision::F32, Precision::F64] {
                for r in VARIANT_SETS {
                    let probe = open(&backend, Precision::F32, None);
                    let Some(probe) = probe else { continue };
                    if p == Precision::F64 && !probe.supports_f64() {
                        continue;
                    }
                    drop(probe);
                    if let Some(c) = open(&backend, p, Some(r)) {
                        eprintln!("case: {} {p} {r}", c.describe());
                        body(&c);
                    }
                }
            }
        }
    }

    /// Every L2L kernel set that can run `cfg` on `ctx`: the one [`l2o_meta::l2l::device::LstmKernels::choose`] picks,
    /// the loop form, and a second unrolled variant (other workgroup size and block) where they fit — so each
    /// device test body checks every variant against the same oracle.
    pub fn lstm_kernel_sets(
        ctx: &Context,
        cfg: &l2o_meta::LstmConfig,
    ) -> Vec<l2o_meta::l2l::device::LstmKernels> {
        use l2o_meta::l2l::device::LstmKernels;
        use l2o_meta::l2l::kernels::LstmVariant;
        let mut v = vec![LstmKernels::choose(ctx, cfg).expect("kernel choice")];
        for k in [
            LstmKernels::Loop,
            LstmKernels::Unrolled(LstmVariant {
                wg: 64,
                block: 32,
                steps: 4,
            }),
        ] {
            // (sets that take minutes to compile on this driver are left out: LstmKernels::compiles_quickly)
            if k.fits(ctx, cfg) && k.compiles_quickly(ctx) && !v.contains(&k) {
                v.push(k);
            }
        }
        v
    }

    /// A tolerance, stated once per test and printed on failure.
    #[derive(Clone, Copy, Debug)]
    pub struct Tol {
        pub f32: f64,
        pub f64: f64,
    }
    impl Tol {
        pub fn of(&self, p: Precision) -> f64 {
            match p {
                Precision::F32 => self.f32,
                Precision::F64 => self.f64,
            }
        }
    }
}
