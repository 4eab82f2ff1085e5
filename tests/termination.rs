//! L-BFGS run past convergence ends with the truth (#24 part 4, first cases): on f(x) = ‖x‖² (n = 50, B = 8,
//! standard-normal starts, 30 steps) every rule — constant step, Armijo, strong Wolfe — reaches x = 0 within a few
//! iterations; a zero gradient is a stationary point and freezes the problem as converged, and a curvature pair
//! whose ρ = 1/sᵀy overflows (sᵀy a denormal) is rejected. Before: the iterates reached denormals and then NaN
//! (f32: problem 6 at evaluation 6; f64: at evaluation 13), reported as an error or as "diverged".

use std::sync::Arc;

use l2o::engine::status;
use l2o::optim::{Lbfgs, LbfgsConfig, LineSearch, RunOptions, run};
use l2o::tasks::{HostFn, HostProblem};
use rand::{Rng, SeedableRng, rngs::StdRng};

#[test]
fn lbfgs_on_the_sphere_converges_without_nan() {
    if std::env::var("L2O_SKIP_GPU_TESTS").as_deref() == Ok("1") {
        return;
    }
    l2o::testing::each_precision(|ctx| {
        let (n, b, steps) = (50, 8, 30);
        let fun: HostFn = Arc::new(move |theta, f, g| {
            for p in 0..b {
                let x = &theta[p * n..(p + 1) * n];
                f[p] = x.iter().map(|v| v * v).sum();
                for i in 0..n {
                    g[p * n + i] = 2.0 * x[i];
                }
            }
            Ok(())
        });
        let mut rng = StdRng::seed_from_u64(3);
        let x0: Vec<f64> = (0..n * b)
            .map(|_| rng.sample::<f64, _>(rand_distr::StandardNormal))
            .collect();
        for ls in ["constant", "armijo", "wolfe"] {
            let problem = HostProblem::new("sphere", n, b, fun.clone()).unwrap();
            let task = problem.task_at(ctx, x0.clone()).unwrap();
            let cfg = LbfgsConfig {
                line_search: LineSearch::parse(ls).unwrap(),
                ..Default::default()
            };
            let t = run(
                ctx,
                &task,
                &mut Lbfgs::new(cfg),
                &RunOptions::fixed(steps),
                &mut |_| {},
            )
            .unwrap_or_else(|e| panic!("{ls} ({}): {e:#}", ctx.precision()));
            let last = t.status.last().unwrap();
            for p in 0..b {
                assert!(
                    t.f.iter().all(|row| row[p].is_finite()),
                    "{ls} ({}): problem {p} has a non-finite f",
                    ctx.precision()
                );
                assert_eq!(
                    last[p],
                    status::CONVERGED,
                    "{ls} ({}): problem {p} ends {} with f = {:e}",
                    ctx.precision(),
                    status::name(last[p]),
                    t.f[steps][p]
                );
                assert!(t.f[steps][p] < 1e-20, "{ls}: f = {:e}", t.f[steps][p]);
            }
            eprintln!(
                "{ls} ({}): all {b} converged, iterations {:?}",
                ctx.precision(),
                t.iterations[steps]
            );
        }
    });
}
