//! Versioned, checksummed checkpoints of a [`TrainState`].
//!
//! ## File layout (format version 3; all integers little-endian)
//! ```text
//! offset        size   content
//! 0             8      MAGIC = b"L2OCKPT\0"
//! 8             4      u32 format version (3; versions 1 and 2, which predate `policy` and `hlstm`, are read too)
//! 12            8      u64 header length H (bytes)
//! 20            H      header: UTF-8 JSON (serde_json) of `{"arrays": [[name, len], ...], "state": TrainState}`
//! 20+H          8·N    the f64 arrays, little-endian IEEE-754 bits, in the order (and with the lengths) of
//!                      "arrays": scalars, phi, best_phi, then the meta-optimizer's two vectors
//!                      (Adam: m, v; ADADELTA: eg2, edx2); N = Σ len
//! 20+H+8N       4      u32 CRC-32 (crc32fast, IEEE) of every preceding byte
//! ```
//! The header's `state` is the [`TrainState`] with `phi`, `best_phi` and the meta-optimizer vectors emptied
//! (they live in the binary arrays). Every other f64 of the state (the *scalars*: output scale, preprocessing
//! p, the L-BFGS-π policy's τm, τM, ε and ε_c when the checkpoint holds a policy, the HLSTM's ε_c and the log
//! meta-loss floor when present, meta learning rate, best
//! validation loss, the meta-optimizer's hyperparameters, each history record's
//! meta- and validation loss; optional ones only when present; see `scalar_slots` for the order) is also
//! stored bit-exactly in the `scalars` array, because JSON cannot hold NaN/±∞ (serde_json writes them as `null`,
//! which would read back as None or fail) and serde_json's default float parsing is not guaranteed bit-exact. In the JSON these scalars are informative only
//! (non-finite ones are written as 0); on load the `scalars` array overwrites them. So the whole state
//! round-trips bit-exactly while the header stays readable (`head -c 20000 file | tail -c +21`).
//!
//! ## Guarantees
//! * [`save`] never writes a checkpoint with a non-finite φ, best φ or meta-optimizer vector, nor one whose
//!   array lengths disagree with the architecture; it writes `<path>.tmp`, syncs it and renames it over
//!   `<path>`, so a crash leaves either the old or the new checkpoint.
//! * [`load`] answers every defect with an error naming the file and the problem (missing, not a checkpoint,
//!   unsupported version, truncated, corrupted (checksum), inconsistent lengths, non-finite values, trailing
//!   bytes); it never panics on any input.
//! * A version bump is required for any change to this layout or to the meaning of the header fields; the
//!   exhaustive destructuring in `scalar_slots` makes adding a field to the state a compile error here, so
//!   the format is revisited whenever the state changes.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::l2l::LstmConfig;
use crate::metaopt::MetaOptState;
use crate::state::{EpochRecord, TrainConfig, TrainState};

/// The first 8 bytes of every checkpoint.
pub const MAGIC: &[u8; 8] = b"L2OCKPT\0";
/// The format version this build writes (and the only one it reads).
pub const FORMAT_VERSION: u32 = 3;
/// Versions [`load`] accepts (1: before L-BFGS-π policies, 2: before the Hilbert LSTM; their files read with
/// the newer fields absent).
pub const SUPPORTED_VERSIONS: &[u32] = &[1, 2, 3];

/// Bytes before the header: magic, version, header length.
const PREAMBLE: usize = 8 + 4 + 8;
/// Bytes of the trailing CRC.
const CRC_LEN: usize = 4;

#[derive(Serialize, Deserialize)]
struct Header {
    /// (name, number of f64) of each binary array, in file order.
    arrays: Vec<(String, u64)>,
    /// The state with its vectors emptied (scalars informative; see the module doc).
    state: TrainState,
}

/// Every f64 scalar of the state, in the fixed order of the `scalars` array:
/// lstm.scale, lstm.preprocess, the policy's tau_min, tau_max, eps, curvature_eps (when present), the HLSTM's
/// curvature_eps, the log meta-loss floor and the meta-gradient clip, train.meta_lr, train.meta_lr_final, best_val, the meta-optimizer's hyperparameters
/// (Adam: lr, beta1, beta2, eps; ADADELTA: lr, rho, eps), then meta_loss, val_loss of each history record.
/// Optional fields contribute a slot only when they are Some (whether they are is recorded by the JSON).
///
/// The destructuring is exhaustive on purpose: a new field in any of these structs fails to compile here.
fn scalar_slots(s: &mut TrainState) -> Vec<&mut f64> {
    let TrainState {
        lstm,
        policy,
        hlstm,
        hlstm_training,
        train,
        epoch: _,
        updates: _,
        phi: _,
        best_phi: _,
        best_val,
        best_epoch: _,
        metaopt,
        skipped_total: _,
        skipped_in_row: _,
        history,
    } = s;
    let LstmConfig {
        hidden: _,
        preprocess,
        scale,
    } = lstm;
    let TrainConfig {
        task: _,
        dim: _,
        batch: _,
        horizon: _,
        unroll: _,
        epochs: _,
        meta_optimizer: _,
        meta_lr,
        meta_lr_final,
        seed: _,
        val_batch: _,
        validate_every: _,
        max_nonfinite: _,
        shards: _,
        task_options: _,
    } = train;
    let mut out: Vec<&mut f64> = vec![scale];
    if let Some(p) = preprocess.as_mut() {
        out.push(p);
    }
    if let Some(pc) = policy.as_mut() {
        let l2o_optim::step_policy::PolicyConfig {
            nh: _,
            m: _,
            tau_min,
            tau_max,
            eps,
            curvature_eps,
        } = pc;
        out.extend([tau_min, tau_max, eps]);
        out.extend(curvature_eps.as_mut());
    }
    if let Some(hc) = hlstm.as_mut() {
        let crate::hlstm::HlstmConfig {
            cell: _,
            m: _,
            hidden: _,
            curvature_eps,
        } = hc;
        out.extend(curvature_eps.as_mut());
    }
    if let Some(ht) = hlstm_training.as_mut() {
        let crate::hlstm::HlstmTraining {
            loss,
            clip,
            memory_grad: _,
        } = ht;
        if let crate::hlstm::MetaLoss::Log { floor } = loss {
            out.push(floor);
        }
        out.extend(clip.as_mut());
    }
    out.push(meta_lr);
    out.extend(meta_lr_final.as_mut());
    out.extend(best_val.as_mut());
    match metaopt {
        MetaOptState::Adam {
            lr,
            beta1,
            beta2,
            eps,
            m: _,
            v: _,
            t: _,
        } => out.extend([lr, beta1, beta2, eps]),
        MetaOptState::Adadelta {
            lr,
            rho,
            eps,
            eg2: _,
            edx2: _,
        } => out.extend([lr, rho, eps]),
    }
    for r in history.iter_mut() {
        let EpochRecord {
            epoch: _,
            meta_loss,
            val_loss,
            skipped: _,
        } = r;
        out.extend(meta_loss.as_mut());
        out.extend(val_loss.as_mut());
    }
    out
}

/// Names of the binary arrays in file order, for a state with this meta-optimizer.
fn array_names(metaopt: &MetaOptState) -> [&'static str; 5] {
    let [(a, _), (b, _)] = metaopt.vectors();
    ["scalars", "phi", "best_phi", a, b]
}

/// The checks shared by save and load: lengths agree with the architecture, vectors are finite.
fn validate(state: &TrainState) -> Result<()> {
    ensure!(
        state.policy.is_none() || state.hlstm.is_none(),
        "the state holds both an L-BFGS-π policy and a Hilbert LSTM"
    );
    let n = match (&state.policy, &state.hlstm) {
        (Some(pc), _) => {
            pc.validate()
                .map_err(|e| anyhow!("invalid policy architecture: {e:#}"))?;
            pc.layout().len
        }
        (None, Some(hc)) => {
            hc.validate()
                .map_err(|e| anyhow!("invalid HLSTM architecture: {e:#}"))?;
            hc.layout().len
        }
        (None, None) => {
            state
                .lstm
                .validate()
                .map_err(|e| anyhow!("invalid architecture: {e:#}"))?;
            state.lstm.layout().len
        }
    };
    let [(an, a), (bn, b)] = state.metaopt.vectors();
    let vectors: [(&str, &[f64]); 4] = [
        ("phi", &state.phi),
        ("best_phi", &state.best_phi),
        (an, a),
        (bn, b),
    ];
    for (name, v) in vectors {
        ensure!(
            v.len() == n,
            "array lengths inconsistent with the architecture: {name} has {} entries but {} has {n} parameters",
            v.len(),
            match (&state.policy, &state.hlstm) {
                (Some(pc), _) => format!("an L-BFGS-π policy with n_h = {}", pc.nh),
                (None, Some(hc)) => format!(
                    "a Hilbert LSTM (cell {}, m = {}, {} hidden units)",
                    hc.cell, hc.m, hc.hidden
                ),
                (None, None) => format!(
                    "an LSTM with hidden = {} and input dimension {}",
                    state.lstm.hidden,
                    state.lstm.input_dim()
                ),
            }
        );
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            bail!("non-finite value {} in {name}[{i}]", v[i]);
        }
    }
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Serialize a state to the bytes of a checkpoint (after [`validate`]).
fn encode(state: &TrainState) -> Result<Vec<u8>> {
    validate(state)?;
    let mut stripped = state.clone();
    stripped.phi = Vec::new();
    stripped.best_phi = Vec::new();
    for v in stripped.metaopt.vectors_mut() {
        *v = Vec::new();
    }
    let scalars: Vec<f64> = scalar_slots(&mut stripped)
        .into_iter()
        .map(|x| {
            let v = *x;
            if !v.is_finite() {
                *x = 0.0;
            }
            v
        })
        .collect();
    let [(_, a), (_, b)] = state.metaopt.vectors();
    let arrays: [&[f64]; 5] = [&scalars, &state.phi, &state.best_phi, a, b];
    let names = array_names(&state.metaopt);
    let header = Header {
        arrays: names
            .iter()
            .zip(arrays)
            .map(|(n, a)| (n.to_string(), a.len() as u64))
            .collect(),
        state: stripped,
    };
    let json = serde_json::to_vec(&header)?;
    let total: usize = arrays.iter().map(|a| a.len()).sum();
    let mut out = Vec::with_capacity(PREAMBLE + json.len() + 8 * total + CRC_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for a in arrays {
        for x in a {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Parse the bytes of a checkpoint (every check of [`load`] except the file read).
fn decode(bytes: &[u8]) -> Result<TrainState> {
    let len = bytes.len();
    let magic_len = len.min(MAGIC.len());
    if bytes[..magic_len] != MAGIC[..magic_len] {
        bail!("not an l2o checkpoint (bad magic: the file does not start with \"L2OCKPT\\0\")");
    }
    if len < PREAMBLE {
        bail!("truncated: {len} bytes, shorter than the {PREAMBLE}-byte preamble");
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    if !SUPPORTED_VERSIONS.contains(&version) {
        bail!(
            "unsupported checkpoint format version {version} (this build reads version(s) {SUPPORTED_VERSIONS:?})"
        );
    }
    let hlen = u64::from_le_bytes(bytes[12..20].try_into().unwrap());
    let header_end = usize::try_from(hlen)
        .ok()
        .and_then(|h| h.checked_add(PREAMBLE));
    let header_end = match header_end {
        Some(e) if e.checked_add(CRC_LEN).is_some_and(|t| t <= len) => e,
        _ => bail!(
            "truncated: the header says it is {hlen} bytes long but the file has only {len} bytes"
        ),
    };
    let header: Header = serde_json::from_slice(&bytes[PREAMBLE..header_end])
        .map_err(|e| anyhow!("corrupted: the header is not a valid checkpoint header ({e})"))?;
    let mut state = header.state;

    // The arrays: names in the expected order, total size, then the checksum.
    let names = array_names(&state.metaopt);
    let got: Vec<&str> = header.arrays.iter().map(|(n, _)| n.as_str()).collect();
    ensure!(
        got == names,
        "corrupted: the header lists the arrays {got:?}, expected {names:?}"
    );
    let mut total: u64 = 0;
    for (_, n) in &header.arrays {
        total = total
            .checked_add(*n)
            .ok_or_else(|| anyhow!("corrupted: array lengths overflow"))?;
    }
    let expected = total
        .checked_mul(8)
        .and_then(|b| b.checked_add((header_end + CRC_LEN) as u64))
        .ok_or_else(|| anyhow!("corrupted: array lengths overflow"))?;
    if (len as u64) < expected {
        bail!("truncated: the header describes {expected} bytes but the file has only {len}");
    }
    if (len as u64) > expected {
        bail!("trailing bytes: the checkpoint ends at byte {expected} but the file has {len}");
    }
    let body_end = len - CRC_LEN;
    let stored = u32::from_le_bytes(bytes[body_end..].try_into().unwrap());
    let computed = crc32fast::hash(&bytes[..body_end]);
    ensure!(
        stored == computed,
        "corrupted: checksum mismatch (stored CRC-32 {stored:08x}, computed {computed:08x})"
    );

    let mut arrays: Vec<Vec<f64>> = Vec::with_capacity(5);
    let mut off = header_end;
    for (_, n) in &header.arrays {
        let n = *n as usize; // fits: the file holds 8·n bytes
        let v = bytes[off..off + 8 * n]
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        off += 8 * n;
        arrays.push(v);
    }
    let mut it = arrays.into_iter();
    let scalars = it.next().unwrap();
    state.phi = it.next().unwrap();
    state.best_phi = it.next().unwrap();
    for v in state.metaopt.vectors_mut() {
        *v = it.next().unwrap();
    }
    let slots = scalar_slots(&mut state);
    ensure!(
        slots.len() == scalars.len(),
        "corrupted: {} scalars stored but the header's state has {}",
        scalars.len(),
        slots.len()
    );
    for (slot, x) in slots.into_iter().zip(scalars) {
        *slot = x;
    }
    validate(&state)?;
    Ok(state)
}

/// Write `state` to `path` atomically (via `<path>.tmp` and a rename). Refuses, writing nothing, when φ, best φ
/// or a meta-optimizer vector holds a non-finite value or their lengths disagree with the architecture.
pub fn save(path: &Path, state: &TrainState) -> Result<()> {
    let bytes = encode(state)
        .map_err(|e| anyhow!("refusing to write checkpoint {}: {e:#}", path.display()))?;
    let tmp = tmp_path(path);
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        bail!("cannot write checkpoint {}: {e}", path.display());
    }
    // Make the rename durable where the platform allows it (best effort).
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// SHA-256 of a parameter vector: of its f64 values as little-endian IEEE-754 bytes, in order (so two runs
/// that agree bit for bit have the same digest), as lowercase hex.
pub fn phi_sha256(phi: &[f64]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for x in phi {
        h.update(x.to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What a checkpoint holds, as `key: value` lines (the output of `l2o inspect`): file and format version, the
/// learned optimizer's kind and architecture, the training configuration and task options, progress (epochs,
/// meta-updates, skipped updates), the best epoch and validation loss, and SHA-256 digests of latest and best φ
/// (`phi_sha256`, `best_phi_sha256`; see [`phi_sha256`]) so scripts can compare runs. Reads with every check of
/// [`load`].
pub fn inspect(path: &Path) -> Result<Vec<(&'static str, String)>> {
    let bytes =
        fs::read(path).map_err(|e| anyhow!("cannot read checkpoint {}: {e}", path.display()))?;
    let s = decode(&bytes).map_err(|e| anyhow!("checkpoint {}: {e:#}", path.display()))?;
    let version = u32::from_le_bytes(
        bytes[8..12]
            .try_into()
            .expect("decode checked the preamble"),
    );
    let (kind, arch) = if let Some(p) = &s.policy {
        ("lbfgs-pi (L-BFGS step-size policy, seed 003)", json(p))
    } else if let Some(h) = &s.hlstm {
        ("hlstm (Hilbert LSTM, seed 000)", json(h))
    } else {
        (
            "lstm (L2L coordinatewise LSTM, seed 002)",
            describe(&s.lstm),
        )
    };
    let t = &s.train;
    let mut out = vec![
        ("file", path.display().to_string()),
        ("format_version", version.to_string()),
        ("kind", kind.to_string()),
        ("architecture", arch),
        ("parameters", s.phi.len().to_string()),
    ];
    if let Some(h) = &s.hlstm_training {
        out.push(("hlstm_training", json(h)));
    }
    out.extend([
        (
            "task",
            if t.task == "mnist" {
                // the dimension is the MLP's, given by the task options
                format!("mnist, batch {}", t.batch)
            } else {
                format!("{}, n = {}, batch {}", t.task, t.dim, t.batch)
            },
        ),
        ("task_options", json(&t.task_options)),
        (
            "training",
            format!(
                "horizon {}, unrolls of {}, {} epochs configured, meta-optimizer {} (lr {}{}), seed {}, \
                 validation on {} problems every {} epochs, {} shard(s)",
                t.horizon,
                t.unroll,
                t.epochs,
                t.meta_optimizer,
                t.meta_lr,
                t.meta_lr_final
                    .map_or(String::new(), |f| format!(", cosine decay to {f}")),
                t.seed,
                t.val_batch,
                t.validate_every,
                t.shards
            ),
        ),
        ("epochs_trained", s.epoch.to_string()),
        ("meta_updates", s.updates.to_string()),
        ("skipped_updates", s.skipped_total.to_string()),
        ("best_epoch", s.best_epoch.to_string()),
        (
            "best_validation",
            s.best_val.map_or("none (not validated yet)".to_string(), |v| format!("{v:e}")),
        ),
        ("phi_sha256", phi_sha256(&s.phi)),
        ("best_phi_sha256", phi_sha256(&s.best_phi)),
    ]);
    Ok(out)
}

/// Compact JSON of a configuration struct (for [`inspect`]).
fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| format!("(unprintable: {e})"))
}

/// Read a checkpoint written by [`save`]. Every defect is an error naming the file and the problem.
pub fn load(path: &Path) -> Result<TrainState> {
    let bytes =
        fs::read(path).map_err(|e| anyhow!("cannot read checkpoint {}: {e}", path.display()))?;
    decode(&bytes).map_err(|e| anyhow!("checkpoint {}: {e:#}", path.display()))
}

fn describe(l: &LstmConfig) -> String {
    let pre = match l.preprocess {
        Some(p) => format!("preprocessing p = {p}"),
        None => "no preprocessing".to_string(),
    };
    format!("hidden = {}, {pre}, scale {}", l.hidden, l.scale)
}

/// Error unless the checkpoint's architecture is exactly `lstm` (resuming must not change it).
pub fn check_compatible(state: &TrainState, lstm: &LstmConfig) -> Result<()> {
    ensure!(
        state.lstm == *lstm,
        "checkpoint has {}, but the command asks for {}",
        describe(&state.lstm),
        describe(lstm)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmp_path_appends_suffix() {
        assert_eq!(
            tmp_path(Path::new("a/b.ckpt")),
            PathBuf::from("a/b.ckpt.tmp")
        );
    }
}
