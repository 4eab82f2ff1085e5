//! Metal and DX12 users, checked without a Mac or a Windows machine: every kernel l2o ships — each family,
//! each variant its launchers choose, the generated kernels over their shape range — in f32 and f64, through
//! naga's MSL and HLSL writers as wgpu 30 would run them there (`l2o_engine::naga_backends` says how). No
//! device needed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use l2o::engine::Precision;
use l2o::engine::naga_backends::{
    Checked, Target, assert_dx12_f64_refused, check_in, engine_sources,
};
use l2o::engine::shaders::{HLSTM, LSTM_GEN, ShaderFamily};
use l2o::meta::LstmConfig;
use l2o::meta::hlstm::HlstmConfig;
use l2o::meta::l2l::kernels::{self, Entry, LstmVariant};
use l2o::tasks::mlp::MLP_GEMM;
use l2o::tasks::mlp_gemm::{self, GemmKind};

/// One kernel source to translate: family, variant (for errors), defines (or the generated body), entry points,
/// precisions.
struct Job {
    family: &'static ShaderFamily,
    variant: String,
    defines: String,
    entries: Vec<&'static str>,
    precisions: &'static [Precision],
}

const BOTH: &[Precision] = &[Precision::F32, Precision::F64];
const F32: &[Precision] = &[Precision::F32];
const F64: &[Precision] = &[Precision::F64];

fn jobs() -> Vec<Job> {
    let mut jobs = Vec::new();
    let mut add = |family: &'static ShaderFamily,
                   variant: String,
                   defines: String,
                   entries: &[&'static str],
                   precisions| {
        jobs.push(Job {
            family,
            variant,
            defines,
            entries: entries.to_vec(),
            precisions,
        })
    };

    // the engine: every family, the reduction and lincomb variants, the loop-form L2L kernels for every H, D
    for (f, variant, defines) in engine_sources() {
        add(f, variant, defines, f.entries, BOTH);
    }

    // the tasks' families, and the MLP's generated products for every kind and first-layer flag, with column
    // tiles from 1 to 32
    for f in l2o::tasks::families() {
        add(
            f,
            "default".into(),
            f.default_defines.into(),
            f.entries,
            BOTH,
        );
    }
    for kind in [GemmKind::Forward, GemmKind::WeightGrad, GemmKind::InputGrad] {
        for first in [false, true] {
            for ct in [1, 2, 3, 16, 20, 31, 32] {
                add(
                    &MLP_GEMM,
                    format!("{kind:?}, first = {first}, CT = {ct}"),
                    mlp_gemm::source(kind, ct, first),
                    &["gemm_tile", "gemm_finish"],
                    BOTH,
                );
            }
        }
    }

    // fused L-BFGS (one dispatch per line-search round) and fused L-BFGS-π meta-training, over their histories,
    // workgroup sizes and step counts
    for m in [1, 2, 5, 10] {
        for wg in [8, 64] {
            for f in [
                &l2o::optim::lbfgs_fused::LBFGS_FUSED,
                &l2o::optim::lbfgs_fused::LBFGS_FUSED_FREE,
            ] {
                add(
                    f,
                    format!("m = {m}, wg = {wg}"),
                    l2o::optim::lbfgs_fused::defines(m, wg),
                    f.entries,
                    BOTH,
                );
            }
        }
    }
    for (m, k) in [(1, 1), (5, 50), (10, 8)] {
        let stride = l2o::engine::lbfgs_cols::stride(k);
        add(
            &l2o::meta::policy::fused::POLICY_FUSED,
            format!("m = {m}, K = {k}"),
            l2o::meta::policy::fused::defines(m, &vec![1.0; k], 4, stride, stride + 1, 24, 8),
            l2o::meta::policy::fused::POLICY_FUSED.entries,
            BOTH,
        );
    }

    // the Hilbert LSTM for both cells, every memory and a range of widths
    for cell in [1, 2] {
        for m in 1..=12 {
            for hidden in [1, 7, 32, 64] {
                let cfg = HlstmConfig {
                    cell,
                    m,
                    hidden,
                    curvature_eps: None,
                };
                add(
                    &HLSTM,
                    format!("cell {cell}, m = {m}, {hidden} hidden"),
                    l2o::meta::hlstm::device::defines(&cfg),
                    HLSTM.entries,
                    BOTH,
                );
            }
        }
    }

    // the generated (unrolled) L2L kernels, in f32 where Metal and DX12 run them: where φ fits 32 KiB of
    // workgroup memory (DX12's limit, and Metal's on Apple GPUs: H ≤ 25; the loop form runs above), the default
    // variant from H = 1 to 20, other variants the launcher accepts (within both platforms' limits) at
    // two sizes; in f64 (which l2o refuses on Metal and DX12) at the shapes of the naga validation test
    let v = |wg, block, steps| LstmVariant { wg, block, steps };
    let default = v(128, 64, 2);
    let cfg = |hidden, d: usize| LstmConfig {
        hidden,
        preprocess: (d == 2).then_some(10.0),
        scale: 1.0,
    };
    let fits = |c: &LstmConfig, var: &LstmVariant| kernels::workgroup_bytes(c, var, 4) <= 32 << 10;
    let mut shapes: Vec<(LstmConfig, LstmVariant, &'static [Precision])> = Vec::new();
    for hidden in [1, 2, 3, 4, 5, 8, 13, 16] {
        for d in [1, 2] {
            shapes.push((cfg(hidden, d), default, F32));
        }
    }
    // the default architecture (H = 20, D = 2); up to the bound, H = 25, the kernels only get longer (a
    // reverse step of H = 25 takes half a minute to validate and write)
    shapes.push((cfg(20, 2), default, F32));
    assert!(fits(&cfg(25, 2), &default) && !fits(&cfg(26, 1), &default));
    for (hidden, d) in [(1, 1), (5, 2)] {
        for var in [v(64, 32, 3), v(256, 8, 1), v(1, 1, 1), v(1024, 128, 4)] {
            shapes.push((cfg(hidden, d), var, F32));
        }
    }
    shapes.push((cfg(20, 2), default, F64));
    shapes.push((cfg(5, 1), v(64, 32, 3), F64));
    shapes.push((cfg(1, 2), v(256, 8, 1), F64));
    for (c, var, precisions) in shapes {
        assert!(precisions == F64 || fits(&c, &var), "{c:?} {var:?}");
        for e in Entry::ALL {
            add(
                &LSTM_GEN,
                format!("H = {}, D = {}, {}", c.hidden, c.input_dim(), var.name()),
                kernels::source(&c, &var, e),
                &[e.name()],
                precisions,
            );
        }
    }
    jobs
}

#[test]
fn backends_translate_every_kernel() {
    let t0 = Instant::now();
    let jobs = jobs();
    let pairs: usize = jobs.iter().map(|j| j.precisions.len()).sum();
    // longest first (the generated L2L kernels validate for seconds), over every core
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(jobs[i].defines.len()));
    let next = AtomicUsize::new(0);
    let total = Mutex::new(Checked::default());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    let j = &jobs[i];
                    let done = check_in(j.family, &j.variant, &j.defines, &j.entries, j.precisions)
                        .unwrap_or_else(|e| panic!("{e}"));
                    *total.lock().unwrap() += done;
                }
            });
        }
    });
    let done = total.into_inner().unwrap();

    assert_dx12_f64_refused(&done);
    eprintln!(
        "{} kernel sources, {pairs} (source, precision) pairs × {} targets: {} (source, precision, target) \
         combinations translated ({} entry points), {} (f64 source, MSL) combinations refused as expected; f64 \
         built-ins Direct3D lacks (so l2o refuses f64 on DX12): {:?}; {:.1} s",
        jobs.len(),
        Target::ALL.len(),
        done.translated,
        done.entry_points,
        done.refused_f64,
        done.d3d_double_gaps,
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(
        done.translated + done.refused_f64,
        pairs * Target::ALL.len()
    );
}
