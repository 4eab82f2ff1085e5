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

/// A task of one's own meta-trains through the shared loop: L2L on extended Powell (n = 8, B = 2) for two
/// epochs with `train_on` and a `TaskSource`, reproducibly (two runs give the same φ, bit for bit).
#[test]
fn a_user_task_meta_trains_through_the_shared_loop() {
    use l2o::engine::Context;
    use l2o::meta::state::TrainConfig;
    use l2o::meta::train::{TaskSource, train_on};
    use l2o::tasks::Task;
    if std::env::var("L2O_SKIP_GPU_TESTS").as_deref() == Ok("1") {
        return;
    }
    struct Source(usize, usize);
    impl TaskSource for Source {
        fn training(&self, ctx: &Context, _e: usize, _s: usize) -> anyhow::Result<Box<dyn Task>> {
            Ok(Box::new(powell::Powell::new(ctx, self.0, self.1)?))
        }
        fn validation(
            &self,
            ctx: &Context,
            _v: usize,
            _vs: usize,
        ) -> anyhow::Result<Box<dyn Task>> {
            Ok(Box::new(powell::Powell::new(ctx, self.0, self.1)?))
        }
    }
    let Some(ctx) = l2o::testing::ctx(l2o::engine::Precision::F32) else {
        return;
    };
    let tc = TrainConfig {
        task: "powell".into(),
        dim: 8,
        batch: 2,
        horizon: 20,
        unroll: 10,
        epochs: 2,
        meta_optimizer: "adam".into(),
        meta_lr: 1e-3,
        meta_lr_final: None,
        seed: 3,
        val_batch: 2,
        validate_every: 1,
        max_nonfinite: 10,
        shards: 1,
        task_options: Default::default(),
    };
    let run = || {
        let lstm = l2o::meta::LstmConfig::default();
        let mut st = l2o::meta::l2l::train::new_state(lstm, tc.clone()).unwrap();
        train_on(
            &ctx,
            &mut st,
            &Source(8, 2),
            None,
            &mut |_, _, _| {},
            &mut |_, _| {},
        )
        .unwrap();
        st
    };
    let (a, b) = (run(), run());
    assert_eq!(a.epoch, 2);
    assert_eq!(a.updates, 4, "two unrolls per epoch, no skipped update");
    assert!(a.best_val.is_some_and(f64::is_finite));
    assert_eq!(
        l2o::meta::checkpoint::phi_sha256(&a.phi),
        l2o::meta::checkpoint::phi_sha256(&b.phi)
    );
    assert_ne!(a.phi, l2o::meta::LstmConfig::default().init(3), "φ moved");
}
