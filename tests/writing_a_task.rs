//! `docs/writing-a-task.md` runs in CI: its example (`examples/powell.rs`, included here as it is) builds a task
//! with its own kernel, passes `check_task`, and L-BFGS minimises it.

#[path = "../examples/powell.rs"]
mod powell;

#[test]
fn the_guide_runs_and_lbfgs_solves_extended_powell() {
    if std::env::var("L2O_SKIP_GPU_TESTS").as_deref() == Ok("1") {
        return;
    }
    let r = powell::run_guide().unwrap();
    eprintln!("{}", r.check);
    let (it, ev, f, g) = r.lbfgs;
    eprintln!(
        "L-BFGS {}: {it} iterations, {ev} evaluations, f {f:.3e}, |g| {g:.2e}",
        r.precision
    );
    let (eps_g, f_max) = match r.precision {
        l2o::engine::Precision::F64 => (1e-8, 1e-10),
        l2o::engine::Precision::F32 => (1e-4, 1e-4),
    };
    assert!(
        g < eps_g && f < f_max,
        "L-BFGS did not converge: f {f}, |g| {g}"
    );
    assert!(it < 300 && ev >= it, "{it} iterations, {ev} evaluations");
    assert!(r.hlstm.0.is_finite() && r.hlstm.1.is_finite());
}
