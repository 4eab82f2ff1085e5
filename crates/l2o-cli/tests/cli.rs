//! End-to-end runs of the `l2o` binary on tiny settings (software adapter in CI).

use std::process::Command;

fn l2o(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_l2o"))
        .args(args)
        .env(
            "L2O_BACKEND",
            std::env::var("L2O_BACKEND").unwrap_or_else(|_| "vulkan".into()),
        )
        .output()
        .expect("spawn l2o");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn skip() -> bool {
    std::env::var("L2O_SKIP_GPU_TESTS").as_deref() == Ok("1")
}

#[test]
fn info_names_the_chosen_adapter() {
    if skip() {
        return;
    }
    let (ok, out, err) = l2o(&["info"]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("chosen:") && out.contains("max_storage_buffer_binding_size"),
        "{out}"
    );
    assert!(out.contains("f64 supported"), "{out}");
}

#[test]
fn run_writes_csv_and_svg() {
    if skip() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("l2o-cli-test-{}", std::process::id()));
    let d = dir.to_str().unwrap();
    let (ok, out, err) = l2o(&[
        "run",
        "--task",
        "quadratic",
        "--dim",
        "5",
        "--batch",
        "4",
        "--optimizer",
        "adam,lbfgs",
        "--lr",
        "0.1",
        "--steps",
        "12",
        "--seed",
        "3",
        "--out",
        d,
    ]);
    assert!(ok, "{out}\n{err}");
    let csv = std::fs::read_to_string(dir.join("adam_lr0.1.csv")).expect("adam csv");
    assert_eq!(csv.lines().count(), 1 + 13, "header + steps 0..=12:\n{csv}");
    assert!(csv.starts_with("step,loss_mean,loss_median,loss_q1,loss_q3"));
    assert!(
        dir.join("lbfgs_m5_wolfe.csv").exists(),
        "{:?}",
        std::fs::read_dir(&dir).unwrap().collect::<Vec<_>>()
    );
    let svg = std::fs::read_to_string(dir.join("loss.svg")).expect("svg");
    assert!(
        svg.contains("<svg") && svg.contains("lbfgs(m=5,wolfe)") && svg.contains("adam(lr=0.1)")
    );
    // same seed, same adapter: same numbers
    let (ok, _, _) = l2o(&[
        "run",
        "--task",
        "quadratic",
        "--dim",
        "5",
        "--batch",
        "4",
        "--optimizer",
        "adam",
        "--lr",
        "0.1",
        "--steps",
        "12",
        "--seed",
        "3",
        "--out",
        d,
    ]);
    assert!(ok);
    assert_eq!(
        std::fs::read_to_string(dir.join("adam_lr0.1.csv")).unwrap(),
        csv,
        "a rerun with the same seed must be identical"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_inputs_print_one_clear_line_and_fail() {
    if skip() {
        return;
    }
    let dir = std::env::temp_dir().join("l2o-cli-bad");
    let d = dir.to_str().unwrap();
    let hlstm_ck = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/results/hlstm/hlstm-cell2.l2o");
    for (args, needle) in [
        (
            vec!["eval", "--checkpoint", hlstm_ck, "--protocol", "paper", "--out", d],
            "--protocol paper is the L-BFGS-π test protocol",
        ),
        (
            vec!["eval", "--checkpoint", hlstm_ck, "--protocol", "icml", "--out", d],
            "invalid value 'icml'",
        ),
        (
            vec!["train", "--epochs", "1", "--meta-lr-final", "0", "--out", d],
            "final meta learning rate 0 must be a positive finite number",
        ),
        (
            vec!["run", "--optimizer", "adamw", "--out", d],
            "unknown optimizer",
        ),
        (
            vec!["run", "--task", "rosenbrock", "--dim", "3", "--out", d],
            "even",
        ),
        (vec!["run", "--task", "nope", "--out", d], "unknown task"),
        (
            vec!["run", "--line-search", "exact", "--out", d],
            "unknown line search",
        ),
        (
            vec!["run", "--direction", "sideways", "--out", d],
            "use auto, fused, two-loop or gram",
        ),
        (
            vec!["run", "--dim", "20000", "--batch", "128", "--out", d],
            "max_storage_buffer_binding_size",
        ),
        (
            vec!["run", "--adapter", "no-such-gpu", "--out", d],
            "no-such-gpu",
        ),
        (
            vec!["tune", "--grid", "3..1", "--out", d],
            "LO must not exceed HI",
        ),
        (
            vec!["run", "--precision", "quad", "--out", d],
            "unknown precision",
        ),
    ] {
        let (ok, _, err) = l2o(&args);
        assert!(!ok, "{args:?} should fail");
        let first = err
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_else(|| panic!("no error line for {args:?}: {err}"));
        assert!(first.contains(needle), "{args:?}: {first}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
}

#[test]
fn train_then_eval_writes_checkpoint_table_and_plot() {
    if skip() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("l2o-cli-train-{}", std::process::id()));
    let d = dir.to_str().unwrap().to_string();
    let small = [
        "--dim",
        "5",
        "--batch",
        "8",
        "--horizon",
        "10",
        "--unroll",
        "5",
        "--lstm-hidden",
        "6",
        "--val-batch",
        "8",
        "--validate-every",
        "1",
    ];
    let mut args = vec![
        "train",
        "--optimizer",
        "lstm",
        "--task",
        "quadratic",
        "--epochs",
        "2",
        "--out",
        &d,
    ];
    args.extend(small);
    let (ok, out, err) = l2o(&args);
    assert!(ok, "{out}\n{err}");
    let ck = dir.join("checkpoint.l2o");
    assert!(ck.exists() && dir.join("train.svg").exists());
    let csv = std::fs::read_to_string(dir.join("train.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    // resume to 3 epochs
    let mut args = vec![
        "train",
        "--epochs",
        "3",
        "--resume",
        ck.to_str().unwrap(),
        "--out",
        &d,
    ];
    args.extend(small);
    let (ok, out, err) = l2o(&args);
    assert!(ok, "{out}\n{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("train.csv"))
            .unwrap()
            .lines()
            .count(),
        4
    );
    // resuming with another architecture is refused
    let (ok, _, err) = l2o(&[
        "train",
        "--epochs",
        "4",
        "--lstm-hidden",
        "7",
        "--resume",
        ck.to_str().unwrap(),
        "--out",
        &d,
    ]);
    assert!(!ok && err.contains("hidden"), "{err}");
    let ev = dir.join("eval");
    let (ok, out, err) = l2o(&[
        "eval",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--vs",
        "sgd,nag,rmsprop,adam",
        "--batch",
        "8",
        "--grid",
        "-2..-1",
        "--out",
        ev.to_str().unwrap(),
    ]);
    assert!(ok, "{out}\n{err}");
    let md = std::fs::read_to_string(ev.join("eval.md")).unwrap();
    for name in ["lstm(H=6)", "sgd(", "nesterov(", "rmsprop(", "adam("] {
        assert!(md.contains(name), "{name} missing from\n{md}");
    }
    assert!(ev.join("loss.svg").exists());
    // a corrupted checkpoint is one clear error line
    let bad = dir.join("bad.l2o");
    let mut bytes = std::fs::read(&ck).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&bad, &bytes).unwrap();
    let (ok, _, err) = l2o(&[
        "eval",
        "--checkpoint",
        bad.to_str().unwrap(),
        "--out",
        ev.to_str().unwrap(),
    ]);
    assert!(
        !ok && err
            .lines()
            .any(|l| l.starts_with("error:") && l.contains("corrupted")),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `l2o train --optimizer hlstm` then `l2o eval` at two dimensions: the checkpoint, the training log and the
/// evaluation's summary exist; training twice with the same seed gives the same log (determinism).
#[test]
fn hlstm_train_and_eval() {
    if skip() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("l2o-cli-hlstm-{}", std::process::id()));
    let train = |out: &std::path::Path| {
        l2o(&[
            "train",
            "--optimizer",
            "hlstm",
            "--task",
            "quadratic-cond-rotated",
            "--dim",
            "6",
            "--batch",
            "2",
            "--epochs",
            "2",
            "--horizon",
            "6",
            "--unroll",
            "3",
            "--memory",
            "2",
            "--hlstm-hidden",
            "4",
            "--val-batch",
            "2",
            "--validate-every",
            "1",
            "--seed",
            "5",
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let (ok, out, err) = train(&dir.join("a"));
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("trained 2 epochs"), "{out}");
    let log = std::fs::read_to_string(dir.join("a/train.csv")).unwrap();
    assert_eq!(
        log.lines().count(),
        1 + 3,
        "header, the initialisation (epoch 0), 2 epochs:\n{log}"
    );
    let (ok, out, err) = train(&dir.join("b"));
    assert!(ok, "{out}\n{err}");
    assert_eq!(
        log,
        std::fs::read_to_string(dir.join("b/train.csv")).unwrap(),
        "same seed, same log"
    );
    let ck = dir.join("a/checkpoint.l2o");
    let (ok, out, err) = l2o(&[
        "eval",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--dims",
        "6,12",
        "--batch",
        "2",
        "--steps",
        "6",
        "--budgets",
        "3,6",
        "--vs",
        "sgd,lbfgs-constant",
        "--grid=-3..-2",
        "--out",
        dir.join("eval").to_str().unwrap(),
    ]);
    assert!(ok, "{out}\n{err}");
    let s = std::fs::read_to_string(dir.join("eval/summary.md")).unwrap();
    assert!(
        s.contains("HLSTM") && s.contains("n = 12 K = 6") && s.contains("lbfgs(m=2,constant)"),
        "{s}"
    );
    assert!(dir.join("eval/n12/progress.svg").exists());
}

#[test]
fn best_precision_runs_on_any_adapter() {
    if skip() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("l2o-cli-best-{}", std::process::id()));
    let (ok, out, err) = l2o(&[
        "run",
        "--precision",
        "best",
        "--task",
        "quadratic",
        "--dim",
        "5",
        "--batch",
        "2",
        "--steps",
        "3",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(err.contains("— f64") || err.contains("— f32"), "{err}");
}

#[test]
fn inspect_reads_every_checkpoint_in_docs() {
    // no device needed: runs even with L2O_SKIP_GPU_TESTS
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    let mut seen = 0;
    // every checkpoint under docs/ (docs/results/<study>/), however deep
    let mut files = Vec::new();
    let mut dirs = vec![docs.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().and_then(|x| x.to_str()) == Some("l2o") {
                files.push(p);
            }
        }
    }
    files.sort();
    for p in files {
        let (ok, out, err) = l2o(&["inspect", p.to_str().unwrap()]);
        assert!(ok, "{}: {out}\n{err}", p.display());
        for key in [
            "kind:",
            "architecture:",
            "task:",
            "task_options:",
            "epochs_trained:",
            "best_epoch:",
            "best_validation:",
            "format_version:",
        ] {
            assert!(out.contains(key), "{}: no {key}\n{out}", p.display());
        }
        for key in ["phi_sha256: ", "best_phi_sha256: "] {
            let hex = out
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_else(|| panic!("{}: no {key}\n{out}", p.display()));
            assert!(
                hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()),
                "{key}{hex}"
            );
        }
        seen += 1;
    }
    assert!(seen >= 3, "expected the checkpoints of docs/, found {seen}");
    let (ok, out, err) = l2o(&["inspect", "no/such/checkpoint.l2o"]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("cannot read checkpoint"), "{err}");
}

/// Started by a launcher as one of several processes, a build without the `mpi` feature refuses to run (each
/// process would train alone and overwrite the others' output). The launcher is simulated by its environment
/// (OpenMPI's OMPI_COMM_WORLD_SIZE, Slurm's SLURM_STEP_NUM_TASKS). The CI builds with MPI (README's test
/// command), where the unit test `cluster::tests` checks the same rule and `tests/mpi.rs` the MPI side.
#[test]
fn a_build_without_mpi_refuses_to_run_as_one_of_several_ranks() {
    if cfg!(feature = "mpi") {
        return; // this binary has MPI: the refusal does not apply
    }
    for var in ["OMPI_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS"] {
        let out = Command::new(env!("CARGO_BIN_EXE_l2o"))
            .args([
                "train",
                "--epochs",
                "1",
                "--out",
                "/nonexistent/never-written",
            ])
            .env(var, "2")
            .output()
            .expect("spawn l2o");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}: {err}");
        assert!(
            err.contains("built without MPI") && err.contains("--features mpi"),
            "{var}: {err}"
        );
    }
}

/// `l2o eval --protocol paper` runs its test networks in shards of 10 (one x0 on each of the 10 groups of
/// 1,000 test images), built and run one at a time so the paper's 1,000 networks fit the device; a shard too
/// large for the device (40 networks in f64: 160 MB of first-layer partial sums on lavapipe's 128 MiB binding)
/// stops with an error naming `--shards`. Needs MNIST (skipped with a message otherwise).
#[test]
fn paper_protocol_eval_runs_in_shards_and_an_oversized_shard_names_the_fix() {
    if skip() {
        return;
    }
    let Some(data) = l2o_tasks::idx::test_data_dir() else {
        eprintln!("SKIPPED: MNIST data not found (set L2O_DATA)");
        return;
    };
    let ck = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/results/lbfgs-pi-mnist/paper-protocol/lbfgs-pi-paper.l2o"
    );
    let dir = std::env::temp_dir().join(format!("l2o-cli-paper-{}", std::process::id()));
    let d = dir.to_str().unwrap();
    let eval = |extra: &[&str]| {
        let mut a = vec![
            "eval", "--precision", "f64", "--checkpoint", ck, "--data", data.to_str().unwrap(),
            "--task", "mnist", "--activation", "sigmoid", "--full-batch", "--hidden", "20",
            "--minibatch", "1000", "--protocol", "paper", "--steps", "2", "--vs", "adam",
            "--lr", "adam=0.1", "--out", d,
        ];
        a.extend_from_slice(extra);
        l2o(&a)
    };
    let (ok, out, err) = eval(&["--batch", "20"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("20 (in 2 shards) held-out problems"), "{out}");
    let md = std::fs::read_to_string(dir.join("eval.md")).unwrap();
    assert!(md.contains("| adam(lr=0.1) | 1e-4 |"), "{md}");
    let (ok, out, err) = eval(&["--batch", "40", "--shards", "1"]);
    let (_, info, _) = l2o(&["info", "--precision", "f64"]);
    if info.contains("llvmpipe") {
        assert!(!ok, "40 networks in one f64 shard fit llvmpipe's binding?\n{out}\n{err}");
        assert!(
            err.contains("give more --shards") && err.contains("max_storage_buffer_binding_size"),
            "{err}"
        );
    } else {
        assert!(ok || err.contains("give more --shards"), "{out}\n{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
