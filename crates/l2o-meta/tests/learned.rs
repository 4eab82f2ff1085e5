//! The learned-optimizer abstraction (no device needed): every implementation round-trips through a training
//! state and the registry, refuses to resume another kind, and the shard mean is exact.

use l2o_meta::LstmConfig;
use l2o_meta::hlstm::HlstmConfig;
use l2o_meta::hlstm::train::Hlstm;
use l2o_meta::kinds;
use l2o_meta::l2l::train::L2l;
use l2o_meta::learned::{self, LearnedOptimizer, Unroll};
use l2o_meta::policy::train::Policy;
use l2o_meta::state::TrainConfig;
use l2o_optim::step_policy::PolicyConfig;

fn config(unroll: usize) -> TrainConfig {
    TrainConfig {
        task: "quadratic".into(),
        dim: 10,
        batch: 4,
        horizon: 2 * unroll,
        unroll,
        epochs: 3,
        meta_optimizer: "adam".into(),
        meta_lr: 0.01,
        meta_lr_final: None,
        seed: 7,
        val_batch: 4,
        validate_every: 1,
        max_nonfinite: 10,
        shards: 1,
        task_options: Default::default(),
    }
}

fn all() -> Vec<Box<dyn LearnedOptimizer>> {
    vec![
        Box::new(L2l(LstmConfig::default())),
        Box::new(Policy(PolicyConfig::default())),
        Box::new(Hlstm {
            cfg: HlstmConfig::default(),
            training: Default::default(),
        }),
    ]
}

#[test]
fn every_learned_optimizer_round_trips_through_its_state() {
    let mut flags = vec![];
    for lo in all() {
        let st = learned::new_state(lo.as_ref(), config(5)).unwrap();
        let held = kinds::of_state(&st);
        assert_eq!(held.about(), lo.about(), "{}", lo.about().name);
        assert_eq!(st.phi, lo.init(7), "{}: φ0 from the seed", lo.about().name);
        assert_eq!(st.best_phi, st.phi);
        kinds::check_resume(lo.as_ref(), &st).unwrap();
        flags.push(lo.about().flag);
    }
    assert_eq!(flags, ["lstm", "lbfgs-policy", "hlstm"]);
}

#[test]
fn resuming_another_kind_or_architecture_is_refused() {
    let st = learned::new_state(&L2l(LstmConfig::default()), config(5)).unwrap();
    let e = kinds::check_resume(&Policy(PolicyConfig::default()), &st).unwrap_err();
    assert!(
        e.to_string().contains("resume it with --optimizer lstm"),
        "{e}"
    );
    let other = L2l(LstmConfig {
        hidden: 7,
        ..LstmConfig::default()
    });
    let e = kinds::check_resume(&other, &st).unwrap_err();
    assert!(e.to_string().contains("hidden = 7"), "{e}");
}

#[test]
fn bad_configurations_are_errors_before_anything_runs() {
    let bad = Hlstm {
        cfg: HlstmConfig::default(),
        training: l2o_meta::hlstm::HlstmTraining {
            clip: Some(-1.0),
            ..Default::default()
        },
    };
    let e = learned::new_state(&bad, config(5)).unwrap_err();
    assert!(e.to_string().contains("clip"), "{e}");
    // an unroll longer than the horizon
    let e = learned::new_state(
        &L2l(LstmConfig::default()),
        TrainConfig {
            horizon: 3,
            ..config(5)
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("unroll length"), "{e}");
}

#[test]
fn the_shard_mean_is_the_mean_and_one_shard_is_kept_as_it_is() {
    let one = Unroll {
        meta_loss: 1.5,
        dphi: vec![-0.0, 1.0, f64::MIN_POSITIVE],
    };
    let kept = Unroll::mean(vec![one.clone()]);
    assert_eq!(kept.meta_loss.to_bits(), one.meta_loss.to_bits());
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&kept.dphi), bits(&one.dphi));
    let two = Unroll {
        meta_loss: 2.5,
        dphi: vec![2.0, 3.0, 0.0],
    };
    let m = Unroll::mean(vec![one, two]);
    assert_eq!(m.meta_loss, 2.0);
    assert_eq!(m.dphi, vec![1.0, 2.0, f64::MIN_POSITIVE / 2.0]);
}
