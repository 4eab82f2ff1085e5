//! Distributed runs under `mpirun -np 2` against one process (built with `--features mpi`: the README's test
//! command is `cargo test --workspace --features l2o-cli/mpi`, one build for every test): every learned optimizer meta-trains to the
//! same φ, bit for bit (SHA-256 digests from `l2o inspect`), resumes with another number of ranks, evaluates
//! to the same table; an error on one rank stops every rank with its message, a killed rank leaves the last
//! checkpoint intact for `--resume`. On 2 cores the two ranks share them (`--oversubscribe`); as root OpenMPI
//! needs `--allow-run-as-root`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_l2o");

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("l2o-mpi-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn backend() -> String {
    std::env::var("L2O_BACKEND").unwrap_or_else(|_| "vulkan".into())
}

/// `l2o ARGS` as one process.
fn solo(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("L2O_BACKEND", backend())
        .output()
        .expect("spawn l2o")
}

/// `mpirun` with the flags a 2-core CI machine (as root) needs, then `rest` (`-np 2 l2o …`, or an MPMD line).
fn mpirun(rest: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    c.args([
        "--allow-run-as-root",
        "--oversubscribe",
        "--bind-to",
        "none",
    ])
    .args(rest)
    .env("L2O_BACKEND", backend());
    c
}

fn ranks(np: usize, args: &[&str]) -> Output {
    let np = np.to_string();
    let mut rest = vec!["-np", &np, BIN];
    rest.extend(args);
    wait_for(mpirun(&rest), Duration::from_secs(600))
}

/// Run to completion within `limit`, else kill it and fail (a hang is the bug these tests exist to catch).
/// SIGKILL to a process, through the shell's builtin `kill` (a minimal Debian has no /bin/kill: procps is not
/// installed there).
fn kill9(pid: u32) {
    let _ = Command::new("sh")
        .args(["-c", &format!("kill -9 {pid}")])
        .status();
}

/// The children of `pid`, in ascending pid order (their launch order), read from /proc (no pgrep: procps is not on
/// a minimal Debian).
fn children_of(pid: u32) -> Vec<u32> {
    let mut v: Vec<u32> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            // /proc/<p>/stat: "pid (comm) state ppid …"; comm may hold spaces and parentheses, so split after the last ')'
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|st| {
                    let rest = &st[st.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect();
    v.sort_unstable();
    v
}

fn wait_for(mut c: Command, limit: Duration) -> Output {
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mpirun (is OpenMPI installed? bash scripts/setup.sh --mpi)");
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("mpirun output"),
        Err(_) => {
            kill9(id);
            panic!("mpirun did not finish within {limit:?}: a rank hangs");
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The φ and best-φ digests `l2o inspect` prints.
fn digests(ckpt: &Path) -> (String, String) {
    let o = solo(&["inspect", ckpt.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let get = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in {out}"))
            .trim()
            .to_string()
    };
    (get("phi_sha256:"), get("best_phi_sha256:"))
}

fn train_args<'a>(base: &[&'a str], epochs: &'a str, out: &'a Path) -> Vec<&'a str> {
    let mut v = vec!["train"];
    v.extend_from_slice(base);
    v.extend(["--epochs", epochs, "--out", out.to_str().unwrap()]);
    v
}

/// One process with `--shards S` and `mpirun -np 2` (shards defaulting to S = 2, or given) train the same φ
/// and the same train.csv; returns the digests.
fn same_phi(name: &str, base: &[&str], shards: &str, epochs: &str) -> (String, String) {
    let (one, two) = (dir(&format!("{name}-1")), dir(&format!("{name}-2")));
    let mut a = train_args(base, epochs, &one);
    a.extend(["--shards", shards]);
    let o = solo(&a);
    assert!(o.status.success(), "{}", text(&o));
    let mut b = train_args(base, epochs, &two);
    if shards != "2" {
        b.extend(["--shards", shards]);
    }
    let o = ranks(2, &b);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("rank 0 of 2: device:") && err.contains("rank 1 of 2: device:"),
        "{err}"
    );
    let d1 = digests(&one.join("checkpoint.l2o"));
    let d2 = digests(&two.join("checkpoint.l2o"));
    assert_eq!(d1, d2, "{name}: φ of 1 process vs 2 ranks");
    let csv = |d: &Path| std::fs::read_to_string(d.join("train.csv")).unwrap();
    assert_eq!(csv(&one), csv(&two), "{name}: train.csv");
    println!(
        "{name}: 1 process and 2 ranks: phi_sha256 {} best_phi_sha256 {}",
        d1.0, d1.1
    );
    d1
}

const LSTM: &[&str] = &[
    "--optimizer",
    "lstm",
    "--dim",
    "5",
    "--batch",
    "4",
    "--horizon",
    "10",
    "--unroll",
    "5",
    "--lstm-hidden",
    "6",
    "--val-batch",
    "5",
    "--validate-every",
    "1",
];

#[test]
fn lstm_two_ranks_train_the_same_phi_and_resume_with_another_number_of_ranks() {
    let (phi, _) = same_phi("lstm", LSTM, "2", "3");
    // 2 epochs in one process, the third on 2 ranks
    let d = dir("lstm-resume");
    let o = solo(&[train_args(LSTM, "2", &d), vec!["--shards", "2"]].concat());
    assert!(o.status.success(), "{}", text(&o));
    let ck = d.join("checkpoint.l2o");
    let mut r = train_args(LSTM, "3", &d);
    r.extend(["--resume", ck.to_str().unwrap()]);
    let o = ranks(2, &r);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(digests(&ck).0, phi, "resumed on 2 ranks vs uninterrupted");
}

#[test]
fn lbfgs_policy_two_ranks_train_the_same_phi() {
    same_phi(
        "lbfgs-policy",
        &[
            "--optimizer",
            "lbfgs-policy",
            "--dim",
            "5",
            "--batch",
            "3",
            "--horizon",
            "20",
            "--unroll",
            "10",
            "--memory",
            "2",
            "--policy-width",
            "4",
            "--val-batch",
            "4",
            "--validate-every",
            "1",
        ],
        "2",
        "2",
    );
}

/// Three shards on two ranks: rank 0 owns two, rank 1 one.
#[test]
fn hlstm_two_ranks_over_three_shards_train_the_same_phi() {
    same_phi(
        "hlstm",
        &[
            "--optimizer",
            "hlstm",
            "--task",
            "quadratic-cond-rotated",
            "--dim",
            "6",
            "--batch",
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
            "4",
            "--validate-every",
            "1",
        ],
        "3",
        "2",
    );
}

fn docs(f: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(f)
        .to_str()
        .unwrap()
        .to_string()
}

/// Every file `l2o eval` wrote (but `skip`: those with wall-clock times) must agree byte for byte.
fn same_files(a: &Path, b: &Path, skip: &[&str]) {
    let mut names: Vec<_> = std::fs::read_dir(a)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert!(names.iter().any(|n| n == "eval.md"), "{names:?}");
    assert!(
        names
            .iter()
            .filter(|n| n.to_string_lossy().ends_with(".csv"))
            .count()
            >= 2,
        "{names:?}"
    );
    for n in names.into_iter().filter(|n| !skip.iter().any(|s| n == s)) {
        let (x, y) = (
            std::fs::read(a.join(&n)).unwrap(),
            std::fs::read(b.join(&n)),
        );
        assert_eq!(
            Some(&x),
            y.as_ref().ok(),
            "{n:?} differs between 1 process and 2 ranks"
        );
    }
}

fn same_eval(name: &str, args: &[&str], skip: &[&str]) {
    let (one, two) = (
        dir(&format!("eval-{name}-1")),
        dir(&format!("eval-{name}-2")),
    );
    let mut a = vec!["eval"];
    a.extend_from_slice(args);
    let o = solo(
        &[
            a.clone(),
            vec!["--shards", "2", "--out", one.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = ranks(2, &[a, vec!["--out", two.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", text(&o));
    same_files(&one, &two, skip);
}

#[test]
fn sharded_eval_equals_one_process() {
    // L2L: the LSTM and two baselines whose rates are tuned on a grid spread over the ranks
    same_eval(
        "lstm",
        &[
            "--checkpoint",
            &docs("results/l2l-quadratic/l2l-quadratic.l2o"),
            "--batch",
            "7",
            "--steps",
            "15",
            "--vs",
            "sgd,adam",
            "--grid",
            "-2..-1",
        ],
        &[],
    );
    // L-BFGS-π: runs that stop early (‖∇f‖ < eps-g) on one shard and not on the other
    same_eval(
        "lbfgs-pi",
        &[
            "--checkpoint",
            &docs("results/lbfgs-pi-mnist/lbfgs-pi.l2o"),
            "--task",
            "rosenbrock",
            "--dim",
            "6",
            "--batch",
            "4",
            "--steps",
            "30",
            "--vs",
            "lbfgs-wolfe",
            "--eps-g",
            "1e-4",
        ],
        // its table has each optimizer's wall-clock seconds; the per-step CSVs carry every number
        &["eval.md"],
    );
}

/// Rank 1 cannot open its device: both ranks stop (MPI_Abort), with rank 1's message, instead of rank 0
/// waiting forever in the first collective.
#[test]
fn an_error_on_one_rank_stops_every_rank_with_its_message() {
    let d = dir("fault");
    let args = train_args(LSTM, "3", &d);
    let mut line = vec!["-np", "1", BIN];
    line.extend(&args);
    line.extend([":", "-np", "1", "-x", "L2O_ADAPTER=no-such-adapter", BIN]);
    line.extend(&args);
    let t0 = Instant::now();
    let o = wait_for(mpirun(&line), Duration::from_secs(300));
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("rank 1 of 2: error: no adapter name contains \"no-such-adapter\""),
        "{err}"
    );
    println!("stopped in {:.1} s: {err}", t0.elapsed().as_secs_f64());
}

/// Ranks started with different arguments (here one meta learning rate differs) stop before training with an
/// error that names the rank that differs.
#[test]
fn ranks_that_disagree_on_the_run_stop_with_an_error_naming_them() {
    let d = dir("disagree");
    let args = train_args(LSTM, "3", &d);
    let mut line = vec!["-np", "1", BIN];
    line.extend(&args);
    line.extend([":", "-np", "1", BIN]);
    line.extend(&args);
    line.extend(["--meta-lr", "0.02"]);
    let o = wait_for(mpirun(&line), Duration::from_secs(300));
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the ranks disagree on the run's configuration")
            && err.contains("but rank 1 ("),
        "{err}"
    );
    assert!(!d.join("checkpoint.l2o").exists(), "nothing may be trained");
}

fn epoch_of(ck: &Path) -> Option<usize> {
    l2o_meta::checkpoint::load(ck).ok().map(|s| s.epoch)
}

/// A rank killed mid-run (SIGKILL, no chance to clean up): mpirun stops the job, the last checkpoint loads, and
/// `--resume` on another number of ranks finishes with the φ of an uninterrupted run.
#[test]
fn a_killed_rank_leaves_the_checkpoint_intact_and_resume_continues() {
    // enough epochs that the kill lands mid-run (it comes right after the first checkpoint)
    const EPOCHS: &str = "30";
    let d = dir("kill");
    let ck = d.join("checkpoint.l2o");
    let args = train_args(LSTM, EPOCHS, &d);
    let mut line = vec!["-np", "2", BIN];
    line.extend(&args);
    let mut child: Child = mpirun(&line)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mpirun");
    // wait for a checkpoint, then kill rank 1 (a child of mpirun: the rank that is not writing it)
    let t0 = Instant::now();
    let killed_at = loop {
        if let Some(e) = epoch_of(&ck)
            && e >= 1
        {
            break e;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300) && child.try_wait().unwrap().is_none(),
            "no checkpoint from the 2-rank run"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let pids = children_of(child.id());
    assert_eq!(pids.len(), 2, "two ranks under mpirun: {pids:?}");
    // the ranks' order among mpirun's children is their launch order; kill the later one
    kill9(pids[1]);
    let t1 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(120),
            "the surviving rank hangs after a rank was killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "mpirun must report the killed rank");
    let at = epoch_of(&ck).expect("the checkpoint is intact after the kill");
    assert!(
        at >= killed_at && at < 30,
        "killed at epoch {killed_at}, checkpoint at {at}"
    );
    println!(
        "killed a rank after epoch {killed_at}; checkpoint at epoch {at}; resuming in one process"
    );
    // resume as one process (--shards 2 is in the checkpoint) and compare with an uninterrupted run
    let mut r = train_args(LSTM, EPOCHS, &d);
    r.extend(["--resume", ck.to_str().unwrap()]);
    let o = solo(&r);
    assert!(o.status.success(), "{}", text(&o));
    let whole = dir("kill-whole");
    let o = solo(&[train_args(LSTM, EPOCHS, &whole), vec!["--shards", "2"]].concat());
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(digests(&ck), digests(&whole.join("checkpoint.l2o")));
}

/// Commands that do not distribute refuse to start on several ranks (with rank 0's message; no hang).
#[test]
fn commands_that_do_not_distribute_refuse_several_ranks() {
    let o = ranks(
        2,
        &["run", "--steps", "1", "--out", "/nonexistent/never-written"],
    );
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("error: only l2o train, l2o eval and l2o bench --meta run on several ranks"),
        "{err}"
    );
}
