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
    match (st.policy, st.hlstm) {
        (Some(pc), _) => policy::policy_eval(dev, a, &st, pc),
        (None, Some(hc)) => hlstm::hlstm_eval(dev, a, &st, hc),
        (None, None) => l2l::l2l_eval(dev, a, &st),
    }
}
