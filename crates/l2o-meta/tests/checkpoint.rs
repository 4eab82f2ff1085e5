//! Checkpoint format: bit-exact round trip and a clear error for every kind of damage (no GPU needed).

use std::fs;
use std::path::{Path, PathBuf};

use l2o_meta::LstmConfig;
use l2o_meta::checkpoint::{self, FORMAT_VERSION, MAGIC};
use l2o_meta::metaopt::MetaOptState;
use l2o_meta::state::{EpochRecord, TrainConfig, TrainState};

/// A fresh, empty directory for one test (under cargo's per-target scratch dir).
fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("l2o-checkpoint-tests")
        .join(name);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn train_config(meta_optimizer: &str) -> TrainConfig {
    TrainConfig {
        task: "quadratic".into(),
        dim: 10,
        batch: 128,
        horizon: 100,
        unroll: 20,
        epochs: 50,
        meta_optimizer: meta_optimizer.into(),
        meta_lr: 0.1,
        meta_lr_final: None,
        seed: 42,
        val_batch: 64,
        validate_every: 5,
        max_nonfinite: 10,
        shards: 1,
        task_options: Default::default(),
    }
}

/// A state mid-training with awkward values: ragged floats, a −0, a subnormal, some history entries None.
fn state(meta_optimizer: &str) -> TrainState {
    let lstm = LstmConfig::default();
    let phi = lstm.init(1);
    let n = phi.len();
    let mut best_phi = lstm.init(2);
    best_phi[0] = -0.0;
    best_phi[1] = f64::MIN_POSITIVE / 3.0;
    let mut metaopt = MetaOptState::by_name(meta_optimizer, n, 0.1).unwrap();
    let mut p = phi.clone();
    for k in 0..3 {
        let g: Vec<f64> = (0..n).map(|i| ((i * 7 + k) as f64).sin() / 3.0).collect();
        metaopt.step(&mut p, &g).unwrap();
    }
    TrainState {
        policy: None,
        hlstm: None,
        hlstm_training: None,
        lstm,
        train: train_config(meta_optimizer),
        epoch: 7,
        updates: 35,
        phi: p,
        best_phi,
        best_val: Some(0.1 + 0.2),
        best_epoch: 5,
        metaopt,
        skipped_total: 3,
        skipped_in_row: 1,
        history: (0..7)
            .map(|e| EpochRecord {
                epoch: e,
                meta_loss: if e == 2 {
                    None
                } else {
                    Some(1.0 / (e as f64 + 3.0))
                },
                val_loss: if e % 5 == 4 {
                    Some((e as f64).ln() / 7.0)
                } else {
                    None
                },
                skipped: e % 2,
            })
            .collect(),
    }
}

/// Bit-level equality (PartialEq treats NaN ≠ NaN and −0 = 0).
fn obits(x: Option<f64>) -> Option<u64> {
    x.map(f64::to_bits)
}

fn assert_bit_equal(a: &TrainState, b: &TrainState) {
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.phi), bits(&b.phi));
    assert_eq!(bits(&a.best_phi), bits(&b.best_phi));
    for ((_, x), (_, y)) in a.metaopt.vectors().into_iter().zip(b.metaopt.vectors()) {
        assert_eq!(bits(x), bits(y));
    }
    assert_eq!(obits(a.best_val), obits(b.best_val));
    assert_eq!(a.history.len(), b.history.len());
    for (x, y) in a.history.iter().zip(&b.history) {
        assert_eq!(obits(x.meta_loss), obits(y.meta_loss));
        assert_eq!(obits(x.val_loss), obits(y.val_loss));
        assert_eq!((x.epoch, x.skipped), (y.epoch, y.skipped));
    }
}

fn saved(name: &str) -> (PathBuf, Vec<u8>) {
    let d = scratch(name);
    let p = d.join("run.ckpt");
    checkpoint::save(&p, &state("adam")).unwrap();
    let bytes = fs::read(&p).unwrap();
    (p, bytes)
}

/// The error of a call that must fail, as the user sees it (`{:#}`: with its context chain).
fn refused<T>(r: anyhow::Result<T>) -> String {
    let e = format!("{:#}", r.err().expect("should be refused"));
    eprintln!("{e}");
    e
}

fn load_err(p: &Path) -> String {
    refused(checkpoint::load(p))
}

fn header_len(bytes: &[u8]) -> usize {
    u64::from_le_bytes(bytes[12..20].try_into().unwrap()) as usize
}

/// Replace the trailing CRC so that only the intended defect remains.
fn fix_crc(bytes: &mut [u8]) {
    let n = bytes.len() - 4;
    let crc = crc32fast::hash(&bytes[..n]);
    bytes[n..].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn round_trip_is_bit_exact() {
    let d = scratch("round_trip");
    for opt in ["adam", "adadelta"] {
        // PartialEq on the whole state.
        let s = state(opt);
        let p = d.join(format!("{opt}.ckpt"));
        checkpoint::save(&p, &s).unwrap();
        let back = checkpoint::load(&p).unwrap();
        assert_eq!(back, s, "{opt}");
        assert_bit_equal(&back, &s);
        assert!(
            !d.join(format!("{opt}.ckpt.tmp")).exists(),
            "the temporary file must be renamed away"
        );

        // Non-finite history entries, no best_val, no preprocessing: bit-level comparison.
        let mut s = state(opt);
        s.best_val = None;
        s.history[0].val_loss = Some(f64::NAN);
        s.history[1].meta_loss = Some(f64::INFINITY);
        s.history[3].meta_loss = Some(f64::from_bits(0x7ff8_0000_dead_beef)); // a NaN with a payload
        s.lstm = LstmConfig {
            hidden: 3,
            preprocess: None,
            scale: 0.1,
        };
        s.phi = s.lstm.init(5);
        s.best_phi = s.lstm.init(6);
        let n = s.phi.len();
        s.metaopt = MetaOptState::by_name(opt, n, 0.3).unwrap();
        checkpoint::save(&p, &s).unwrap();
        let back = checkpoint::load(&p).unwrap();
        assert_bit_equal(&back, &s);
        assert_eq!(
            (back.lstm, &back.train, &back.metaopt),
            (s.lstm, &s.train, &s.metaopt)
        );
        assert!(back.history[0].val_loss.unwrap().is_nan() && back.best_val.is_none());
        assert_eq!(back.history[1].meta_loss, Some(f64::INFINITY));

        // A meta learning-rate schedule (an optional scalar slot) round-trips bit for bit.
        let mut s = state(opt);
        s.train.meta_lr_final = Some(0.1 / 3.0);
        checkpoint::save(&p, &s).unwrap();
        let back = checkpoint::load(&p).unwrap();
        assert_eq!(back, s, "{opt} with a schedule");
        assert_eq!(
            back.train.meta_lr_final.map(f64::to_bits),
            Some((0.1f64 / 3.0).to_bits())
        );
    }
}

/// The cosine schedule: meta_lr in the first epoch, the final rate in the last, the midpoint halfway, monotone;
/// constant without a final rate; a final rate that is not positive and finite is refused.
#[test]
fn meta_lr_schedule_is_a_half_cosine() {
    let mut tc = train_config("adam");
    assert!((0..60).all(|e| tc.meta_lr_at(e) == 0.1));
    tc.meta_lr_final = Some(0.001);
    tc.epochs = 11;
    assert_eq!(tc.meta_lr_at(0), 0.1);
    assert!((tc.meta_lr_at(10) - 0.001).abs() < 1e-15);
    assert!((tc.meta_lr_at(5) - 0.0505).abs() < 1e-12);
    assert!((1..11).all(|e| tc.meta_lr_at(e) < tc.meta_lr_at(e - 1)));
    assert!((tc.meta_lr_at(40) - 0.001).abs() < 1e-15, "past the configured epochs: the final rate");
    tc.validate("unroll").unwrap();
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        tc.meta_lr_final = Some(bad);
        assert!(tc.validate("unroll").is_err(), "{bad}");
    }
}

#[test]
fn layout_is_as_documented() {
    let (_, bytes) = saved("layout");
    let s = state("adam");
    assert_eq!(&bytes[..8], MAGIC);
    assert_eq!(
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
        FORMAT_VERSION
    );
    let h = header_len(&bytes);
    let header: serde_json::Value = serde_json::from_slice(&bytes[20..20 + h]).unwrap();
    let arrays = header["arrays"].as_array().unwrap();
    let names: Vec<&str> = arrays.iter().map(|a| a[0].as_str().unwrap()).collect();
    assert_eq!(names, ["scalars", "phi", "best_phi", "m", "v"]);
    let n = s.phi.len() as u64;
    let lens: Vec<u64> = arrays.iter().map(|a| a[1].as_u64().unwrap()).collect();
    // scalars: scale, p, meta_lr, best_val, Adam's lr β1 β2 ε, then the 6 meta_loss and 1 val_loss that are Some.
    assert_eq!(lens, [4 + 4 + 7, n, n, n, n]);
    let total: u64 = lens.iter().sum();
    assert_eq!(bytes.len() as u64, 20 + h as u64 + 8 * total + 4);
    // φ starts right after the scalars, little-endian.
    let off = 20 + h + 8 * lens[0] as usize;
    assert_eq!(
        f64::from_le_bytes(bytes[off..off + 8].try_into().unwrap()).to_bits(),
        s.phi[0].to_bits()
    );
    let crc = crc32fast::hash(&bytes[..bytes.len() - 4]);
    assert_eq!(&bytes[bytes.len() - 4..], crc.to_le_bytes());
}

#[test]
fn truncated_files_are_reported_as_truncated() {
    let (p, bytes) = saved("truncated");
    let h = header_len(&bytes);
    let cuts = [
        0,
        3,
        8,
        12,
        19,
        20,
        21,
        20 + h / 2,
        20 + h,
        20 + h + 3,
        20 + h + 100,
        bytes.len() - 5,
        bytes.len() - 1,
    ];
    for cut in cuts {
        fs::write(&p, &bytes[..cut]).unwrap();
        let e = load_err(&p);
        assert!(
            e.contains("truncated"),
            "cut at {cut} of {}: {e}",
            bytes.len()
        );
        assert!(e.contains(&p.display().to_string()), "{e}");
    }
}

#[test]
fn trailing_bytes_are_rejected() {
    let (p, mut bytes) = saved("trailing");
    bytes.extend_from_slice(&[0; 8]);
    fs::write(&p, &bytes).unwrap();
    let e = load_err(&p);
    assert!(e.contains("trailing"), "{e}");
}

#[test]
fn flipped_bytes_are_reported_as_corrupted() {
    let (p, bytes) = saved("corrupted");
    let h = header_len(&bytes);
    // In φ, in the scalars, in the last array, in the CRC itself.
    for at in [
        20 + h + 8 * 30 + 3,
        20 + h + 1,
        bytes.len() - 9,
        bytes.len() - 2,
    ] {
        let mut b = bytes.clone();
        b[at] ^= 0x10;
        fs::write(&p, &b).unwrap();
        let e = load_err(&p);
        assert!(
            e.contains("corrupted") && e.contains("checksum"),
            "flip at {at}: {e}"
        );
    }
    // A byte of the JSON header that breaks its syntax.
    let mut b = bytes.clone();
    b[20] = b'#';
    fs::write(&p, &b).unwrap();
    let e = load_err(&p);
    assert!(e.contains("corrupted"), "{e}");
}

#[test]
fn bad_magic_is_not_a_checkpoint() {
    let (p, mut bytes) = saved("magic");
    bytes[0] = b'X';
    fs::write(&p, &bytes).unwrap();
    let e = load_err(&p);
    assert!(e.contains("not an l2o checkpoint"), "{e}");
    fs::write(&p, b"hello").unwrap();
    assert!(load_err(&p).contains("not an l2o checkpoint"));
}

/// A version-2 file (before the Hilbert LSTM: same layout, no `hlstm` or `hlstm_training` in the header) still
/// loads, with those fields absent.
#[test]
fn version_2_files_load() {
    let (p, bytes) = saved("v2");
    let h = header_len(&bytes);
    let header = std::str::from_utf8(&bytes[20..20 + h]).unwrap();
    assert!(
        header.contains("\"hlstm\":null,\"hlstm_training\":null,"),
        "{header}"
    );
    let old = header.replace("\"hlstm\":null,\"hlstm_training\":null,", "");
    let mut v2 = bytes[..8].to_vec();
    v2.extend(2u32.to_le_bytes());
    v2.extend((old.len() as u64).to_le_bytes());
    v2.extend(old.as_bytes());
    v2.extend(&bytes[20 + h..]);
    fix_crc(&mut v2);
    fs::write(&p, &v2).unwrap();
    let back = checkpoint::load(&p).unwrap();
    assert!(back.hlstm.is_none() && back.hlstm_training.is_none());
    assert_bit_equal(&state("adam"), &back);
}

/// A version-1 file (written before L-BFGS-π policies existed: same layout, no `policy` in the header) still
/// loads as an LSTM checkpoint.
#[test]
fn version_1_files_load() {
    let (p, mut bytes) = saved("v1");
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    fix_crc(&mut bytes);
    fs::write(&p, &bytes).unwrap();
    let back = checkpoint::load(&p).unwrap();
    assert!(back.policy.is_none());
    assert_bit_equal(&state("adam"), &back);
}

#[test]
fn future_version_is_unsupported() {
    let (p, mut bytes) = saved("version");
    bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    fix_crc(&mut bytes);
    fs::write(&p, &bytes).unwrap();
    let e = load_err(&p);
    assert!(
        e.contains("unsupported")
            && e.contains(&format!("version {}", FORMAT_VERSION + 1))
            && e.contains("[1, 2, 3]"),
        "{e}"
    );
}

#[test]
fn architecture_mismatch_is_refused() {
    let s = state("adam");
    checkpoint::check_compatible(&s, &LstmConfig::default()).unwrap();
    let other = LstmConfig {
        hidden: 16,
        ..LstmConfig::default()
    };
    let e = checkpoint::check_compatible(&s, &other)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "checkpoint has hidden = 20, preprocessing p = 10, scale 1, but the command asks for hidden = 16, \
         preprocessing p = 10, scale 1"
    );
    let e = checkpoint::check_compatible(
        &s,
        &LstmConfig {
            preprocess: None,
            scale: 0.1,
            ..LstmConfig::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no preprocessing, scale 0.1"), "{e}");
}

#[test]
fn phi_length_disagreeing_with_layout_is_refused() {
    let d = scratch("layout_mismatch");
    let p = d.join("bad.ckpt");
    // save refuses...
    let mut s = state("adam");
    s.lstm.hidden = 19;
    let e = format!("{:#}", checkpoint::save(&p, &s).unwrap_err());
    assert!(
        e.contains("inconsistent with the architecture") && e.contains("hidden = 19"),
        "{e}"
    );
    assert!(!p.exists() && !d.join("bad.ckpt.tmp").exists());
    // ...and so does load: rewrite the header of a good file to say hidden = 19 (same byte length), fix the CRC.
    let (p, mut bytes) = saved("layout_mismatch_load");
    let h = header_len(&bytes);
    let json = std::str::from_utf8(&bytes[20..20 + h]).unwrap().to_string();
    assert_eq!(json.matches("\"hidden\":20").count(), 1, "{json}");
    let edited = json.replace("\"hidden\":20", "\"hidden\":19");
    bytes[20..20 + h].copy_from_slice(edited.as_bytes());
    fix_crc(&mut bytes);
    fs::write(&p, &bytes).unwrap();
    let e = load_err(&p);
    assert!(e.contains("inconsistent with the architecture"), "{e}");
    // best_phi or a meta-optimizer vector of the wrong length: save refuses as well.
    let mut s = state("adadelta");
    s.best_phi.pop();
    assert!(format!("{:#}", checkpoint::save(&p, &s).unwrap_err()).contains("best_phi"));
    let mut s = state("adadelta");
    s.metaopt.vectors_mut()[1].push(0.0);
    assert!(format!("{:#}", checkpoint::save(&p, &s).unwrap_err()).contains("edx2"));
}

#[test]
fn nan_phi_is_never_written() {
    let d = scratch("nan");
    let p = d.join("nan.ckpt");
    for what in ["phi", "best_phi", "m", "v"] {
        let mut s = state("adam");
        match what {
            "phi" => s.phi[17] = f64::NAN,
            "best_phi" => s.best_phi[0] = f64::INFINITY,
            "m" => s.metaopt.vectors_mut()[0][3] = f64::NAN,
            _ => s.metaopt.vectors_mut()[1][3] = f64::NEG_INFINITY,
        }
        let e = format!("{:#}", checkpoint::save(&p, &s).unwrap_err());
        assert!(e.contains("non-finite") && e.contains(what), "{what}: {e}");
        assert!(!p.exists(), "no file may be written");
        assert!(
            !d.join("nan.ckpt.tmp").exists(),
            "no temporary file may be left"
        );
    }
    // A refused save leaves an existing good checkpoint untouched.
    let good = state("adam");
    checkpoint::save(&p, &good).unwrap();
    let mut bad = good.clone();
    bad.phi[0] = f64::NAN;
    assert!(checkpoint::save(&p, &bad).is_err());
    assert_bit_equal(&checkpoint::load(&p).unwrap(), &good);
}

#[test]
fn nan_in_a_crafted_file_is_rejected_on_load() {
    let (p, mut bytes) = saved("nan_load");
    let h = header_len(&bytes);
    let scalars = 4 + 4 + 7;
    let off = 20 + h + 8 * (scalars + 5); // φ[5]
    bytes[off..off + 8].copy_from_slice(&f64::NAN.to_le_bytes());
    fix_crc(&mut bytes);
    fs::write(&p, &bytes).unwrap();
    let e = load_err(&p);
    assert!(e.contains("non-finite") && e.contains("phi[5]"), "{e}");
}

#[test]
fn missing_file_names_the_path() {
    let d = scratch("missing");
    let p = d.join("does-not-exist.ckpt");
    let e = load_err(&p);
    assert!(
        e.contains(&p.display().to_string()) && e.contains("cannot read"),
        "{e}"
    );
}

#[test]
fn overwriting_replaces_the_checkpoint() {
    let d = scratch("overwrite");
    let p = d.join("run.ckpt");
    let mut s = state("adadelta");
    checkpoint::save(&p, &s).unwrap();
    s.epoch += 1;
    s.phi[0] += 1.0;
    checkpoint::save(&p, &s).unwrap();
    let back = checkpoint::load(&p).unwrap();
    assert_eq!(back.epoch, s.epoch);
    assert_bit_equal(&back, &s);
}

/// An L-BFGS-π policy checkpoint (format ≥ 2) round-trips bit-exactly, including the policy's constants, and a
/// policy φ of the wrong length is refused with the architecture named; the LSTM loaders refuse it.
#[test]
fn policy_checkpoint_round_trips_and_is_checked() {
    use l2o_optim::step_policy::PolicyConfig;
    let d = scratch("policy");
    let p = d.join("pi.l2o");
    let pc = PolicyConfig {
        tau_min: -3.0 + 1e-17,
        curvature_eps: Some(1e-10 / 3.0),
        ..PolicyConfig::default()
    };
    let mut st = state("adadelta");
    let phi = pc.init(5);
    let n = phi.len();
    st.policy = Some(pc);
    st.phi = phi.clone();
    st.best_phi = phi.iter().map(|v| v * 1.5 - 0.1 / 3.0).collect();
    st.metaopt = MetaOptState::by_name("adadelta", n, 1.0).unwrap();
    checkpoint::save(&p, &st).unwrap();
    assert_eq!(
        u32::from_le_bytes(fs::read(&p).unwrap()[8..12].try_into().unwrap()),
        FORMAT_VERSION
    );
    let back = checkpoint::load(&p).unwrap();
    assert_bit_equal(&st, &back);
    let q = back.policy.expect("policy kept");
    assert_eq!(q.tau_min.to_bits(), pc.tau_min.to_bits());
    assert_eq!(
        q.curvature_eps.map(f64::to_bits),
        pc.curvature_eps.map(f64::to_bits)
    );
    assert!(l2o_meta::policy::train::policy_optimizer(&p).is_ok());
    let e = refused(l2o_meta::l2l::optimizer::LstmOptimizer::from_checkpoint(&p));
    assert!(e.contains("L-BFGS-π"), "{e}");
    st.best_phi.pop();
    let e = refused(checkpoint::save(&d.join("bad.l2o"), &st));
    assert!(e.contains("n_h = 6"), "{e}");
}

/// A Hilbert LSTM checkpoint (format 3) round-trips bit-exactly with its training options (log floor, clip,
/// curvature ε among the bit-exact scalars); the HLSTM loaders accept it, the others refuse it by name, and a
/// φ of the wrong length is refused with the architecture named.
#[test]
fn hlstm_checkpoint_round_trips_and_is_checked() {
    use l2o_meta::hlstm::{HlstmConfig, HlstmTraining, MetaLoss};
    let d = scratch("hlstm");
    let p = d.join("h.l2o");
    let hc = HlstmConfig {
        cell: 1,
        m: 3,
        hidden: 7,
        curvature_eps: Some(1e-7 / 3.0),
    };
    let ht = HlstmTraining {
        loss: MetaLoss::Log { floor: 1e-8 / 3.0 },
        clip: Some(0.1 + 0.2),
        memory_grad: false,
    };
    let mut st = state("adam");
    let phi = hc.init(5);
    let n = phi.len();
    st.hlstm = Some(hc);
    st.hlstm_training = Some(ht);
    st.phi = phi.clone();
    st.best_phi = phi.iter().map(|v| v * 1.5 - 0.1 / 3.0).collect();
    st.metaopt = MetaOptState::by_name("adam", n, 1e-3).unwrap();
    checkpoint::save(&p, &st).unwrap();
    let back = checkpoint::load(&p).unwrap();
    assert_bit_equal(&st, &back);
    assert_eq!(back.hlstm, Some(hc));
    assert_eq!(back.hlstm_training, Some(ht));
    let Some(MetaLoss::Log { floor }) = back.hlstm_training.map(|t| t.loss) else {
        panic!("log loss kept")
    };
    assert_eq!(floor.to_bits(), (1e-8f64 / 3.0).to_bits());
    assert!(l2o_meta::hlstm::device::HlstmOptimizer::from_checkpoint(&p).is_ok());
    assert!(l2o_meta::load_optimizer(&p).is_ok());
    let e = refused(l2o_meta::l2l::optimizer::LstmOptimizer::from_checkpoint(&p));
    assert!(e.contains("Hilbert LSTM"), "{e}");
    let e = refused(l2o_meta::policy::train::policy_optimizer(&p));
    assert!(e.contains("Hilbert LSTM"), "{e}");
    st.best_phi.pop();
    let e = refused(checkpoint::save(&d.join("bad.l2o"), &st));
    assert!(e.contains("cell 1, m = 3, 7 hidden"), "{e}");
}

#[test]
fn phi_digest_is_sha256_of_the_little_endian_values() {
    // reference digests from Python's hashlib: sha256(b"") and sha256(struct.pack("<2d", 1.0, -0.5))
    assert_eq!(
        checkpoint::phi_sha256(&[]),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        checkpoint::phi_sha256(&[1.0, -0.5]),
        "b75ba3b875def5d2f34361fcc7cbea9b45aa3f9ef590f96ad71c90a955800533"
    );
    // one bit of difference (−0.0 vs 0.0) changes it
    assert_ne!(
        checkpoint::phi_sha256(&[0.0]),
        checkpoint::phi_sha256(&[-0.0])
    );
}

#[test]
fn inspect_reports_what_the_checkpoint_holds() {
    let (p, _) = saved("inspect");
    let s = state("adam");
    let lines = checkpoint::inspect(&p).unwrap();
    let get = |k: &str| {
        lines
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {k} line in {lines:?}"))
    };
    assert_eq!(get("format_version"), FORMAT_VERSION.to_string());
    assert!(get("kind").starts_with("lstm"), "{}", get("kind"));
    assert!(
        get("architecture").contains("hidden = 20"),
        "{}",
        get("architecture")
    );
    assert_eq!(get("parameters"), s.phi.len().to_string());
    assert_eq!(get("task"), "quadratic, n = 10, batch 128");
    assert_eq!(get("epochs_trained"), s.epoch.to_string());
    assert_eq!(get("best_epoch"), s.best_epoch.to_string());
    assert_eq!(get("phi_sha256"), checkpoint::phi_sha256(&s.phi));
    assert_eq!(get("best_phi_sha256"), checkpoint::phi_sha256(&s.best_phi));
    assert_ne!(get("phi_sha256"), get("best_phi_sha256"));
    // a damaged file is the same clear error as for load
    let mut bytes = fs::read(&p).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 1;
    fs::write(&p, &bytes).unwrap();
    let e = format!("{:#}", checkpoint::inspect(&p).unwrap_err());
    assert!(e.contains("corrupted"), "{e}");
}
