//! `l2o eval`: a checkpoint's learned optimizer against tuned baselines on held-out problems — one module per
//! learned optimizer (each has its seed's evaluation protocol), chosen by what the checkpoint holds.

mod hlstm;
mod l2l;
mod policy;

use anyhow::Result;
use l2o_meta::checkpoint;

use crate::DeviceArgs;
use crate::args::EvalArgs;

pub fn eval_cmd(dev: &DeviceArgs, a: &EvalArgs) -> Result<()> {
    let st = checkpoint::load(&a.checkpoint)?;
    let task = a.task.as_deref().unwrap_or(&st.train.task);
    if task.eq_ignore_ascii_case(&st.train.task)
        && let Some(w) = a
            .mlp
            .options(&st.train.task_options)?
            .dataset_warning(task)?
        && crate::cluster::is_root()
    {
        eprintln!("warning: {}: {w}", a.checkpoint.display());
    }
    if a.protocol.is_some() && st.policy.is_none() {
        anyhow::bail!(
            "--protocol paper is the L-BFGS-π test protocol of Egidio et al. 2021 (Table 1); {} holds {}",
            a.checkpoint.display(),
            if st.hlstm.is_some() {
                "a Hilbert LSTM"
            } else {
                "an L2L LSTM"
            }
        );
    }
    match (st.policy, st.hlstm) {
        (Some(pc), _) => policy::policy_eval(dev, a, &st, pc),
        (None, Some(hc)) => hlstm::hlstm_eval(dev, a, &st, hc),
        (None, None) => l2l::l2l_eval(dev, a, &st),
    }
}

/// How a table names the evaluated checkpoint: the path as the user gave it (made relative when it lies under
/// the current directory, so tables carry no folder of one machine) and the first 12 hex digits of its
/// `best_phi_sha256`, which identify the φ evaluated wherever the file moves.
fn checkpoint_label(path: &std::path::Path, st: &l2o_meta::state::TrainState) -> String {
    let shown = std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(&cwd).ok().map(|p| p.to_path_buf()))
        .unwrap_or_else(|| path.to_path_buf());
    let sha = checkpoint::phi_sha256(&st.best_phi);
    format!("{} [best_phi_sha256 {}]", shown.display(), &sha[..12])
}
