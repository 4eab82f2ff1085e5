//! # l2o-tasks: optimizees
//!
//! A [`Task`] is a batch of B independent problems of dimension n: `loss_and_grad` records device dispatches
//! that write f_b(θ_b) into a per-problem scalar column and ∇f_b(θ_b) into a gradient buffer, for all B at once,
//! and `oracle_loss_grad` is the f64 CPU reference of the same function.
//!
//! **Depends on** l2o-engine (context, buffers, kernels) only.
//!
//! Tasks shipped here (kernels in `shaders/tasks.wgsl`, family [`TASKS`]):
//! - [`Quadratic`]: f(θ) = ‖Wθ − y‖² with Gaussian W, y (Andrychowicz et al. 2016, §3.1); also with a
//!   prescribed condition number, axis-aligned or rotated ([`Quadratic::conditioned`]);
//! - [`Rosenbrock`]: the extended Rosenbrock function, n even;
//! - [`Logistic`]: ℓ2-regularised binary logistic regression on a synthetic data set per problem;
//! - [`Mixture`]: families joined by `+` (`quadratic-cond-rotated+rosenbrock+logistic`), the batch split into
//!   one block per family;
//! - [`HostTask`]: any function the host computes (a closure over B × n arrays — a Python function, say), one
//!   upload of f and ∇f per evaluation ([`host`]).
//!
//! Each task samples its data and θ_0 from one `seed` (rand's `StdRng`), keeps the f64 host data for the
//! oracle and uploads device buffers (and its scratch buffers) at construction, so the dispatches returned by
//! `loss_and_grad` can be recorded once and replayed every step. Loss terms are written to a scratch buffer and
//! reduced with the engine's deterministic [`l2o_engine::dot`] / [`l2o_engine::sum`].

use anyhow::{Result, bail};
use l2o_engine::shaders::{Layout, ShaderFamily};
use l2o_engine::{Context, Dispatch, ScalarOut, View};

pub mod host;
pub mod idx;
pub mod kit;
mod logistic;
pub mod mixture;
pub mod mlp;
pub mod mlp_gemm;
mod quadratic;
mod rosenbrock;

pub use host::{HostFn, HostProblem, HostStats, HostTask, NonFinite, Sampler};
pub use kit::{
    CheckOptions, TaskCheck, TaskParams, check_dims, check_fits, check_task, check_views, grid,
};
pub use logistic::Logistic;
pub use mixture::Mixture;
pub use mlp::{Activation, Mlp, MlpConfig};
pub use quadratic::{Quadratic, random_orthogonal};
pub use rosenbrock::Rosenbrock;

/// `Send`: tasks travel with the optimizer to a worker thread ([`HostTask`]s evaluated from Python release and
/// retake the interpreter lock there).
pub trait Task: Send {
    /// Short name, e.g. "quadratic".
    fn name(&self) -> String;
    /// Dimension n of every problem.
    fn dim(&self) -> usize;
    /// Number of problems B.
    fn batch(&self) -> usize;
    /// Record dispatches computing f_b(θ_b) → out.buf[b·out.stride + out.col] and ∇f_b(θ_b) → grad, for all b.
    /// `theta` and `grad` are views of B × n. The dispatches can be replayed every step.
    fn loss_and_grad(
        &self,
        ctx: &Context,
        theta: View,
        grad: View,
        out: ScalarOut,
    ) -> Result<Vec<Dispatch>>;
    /// The starting point θ_0 of every problem, B × n row-major (drawn with the task's seed).
    fn initial_point(&self) -> Vec<f64>;
    /// θ_0 of problem b alone (the slice of [`Task::initial_point`] that [`Task::oracle_loss_grad`] takes).
    fn initial_point_of(&self, b: usize) -> Vec<f64> {
        let n = self.dim();
        self.initial_point()[b * n..(b + 1) * n].to_vec()
    }
    /// f64 CPU reference: (f_b(θ), ∇f_b(θ)) for problem b.
    fn oracle_loss_grad(&self, b: usize, theta: &[f64]) -> (f64, Vec<f64>);
    /// Rewind any per-evaluation state (the MNIST minibatch stream) so that a new run sees the same sequence of
    /// evaluations as the first: every optimizer compared on one task object gets the same minibatches.
    fn reset(&self, _ctx: &Context) -> Result<()> {
        Ok(())
    }
}

use Layout::{Read as R, ReadWrite as W};

/// The optimizee kernels (`shaders/tasks.wgsl`). Bindings: params, θ (read_write so θ and ∇f may share a
/// buffer), ∇f, task data A (W or X), task data B (y or labels), constants (λ), scratch 1 (loss terms),
/// scratch 2 (per-sample coefficients).
pub static TASKS: ShaderFamily = ShaderFamily {
    name: "tasks",
    body: include_str!("../../../shaders/tasks.wgsl"),
    layout: &[R, W, W, R, R, R, W, W],
    entries: &[
        "quad_residual",
        "quad_grad",
        "rosen",
        "logit_z",
        "logit_grad",
        "host_gather",
        "host_scatter",
    ],
    default_defines: "",
};

/// Every kernel family of this crate (for pipeline warm-up and naga validation).
pub fn families() -> Vec<&'static ShaderFamily> {
    vec![&TASKS, &mlp::MLP]
}

/// Names accepted by [`make_task`].
pub const TASK_NAMES: &[&str] = &[
    "quadratic",
    "quadratic-cond",
    "quadratic-cond-rotated",
    "rosenbrock",
    "logistic",
    "mnist",
];

/// Condition numbers of the `quadratic-cond` tasks (log-uniform per problem).
pub const COND_RANGE: (f64, f64) = (1e3, 1e4);

/// A task by name with its default options: "quadratic", "rosenbrock" (n even) or "logistic" (100 samples,
/// λ = 1e-3); "mnist" (the 1×20 sigmoid MLP on minibatches of 128 training images, data from
/// [`idx::data_dir`]).
pub fn make_task(
    ctx: &Context,
    name: &str,
    n: usize,
    batch: usize,
    seed: u64,
) -> Result<Box<dyn Task>> {
    build_task(ctx, name, n, &TaskOptions::default(), batch, seed, false)
}

/// Options of the tasks that have them (stored in training checkpoints).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskOptions {
    /// MNIST MLP: units per hidden layer.
    pub mlp_hidden: Vec<usize>,
    /// MNIST MLP: sigmoid, relu or tanh.
    pub activation: String,
    /// MNIST MLP: images per evaluation.
    pub minibatch: usize,
    /// MNIST MLP: the same images every evaluation (seed 003) instead of fresh minibatches (seed 002).
    pub full_batch: bool,
    /// Directory of the MNIST IDX files for this process (None: [`idx::data_dir`]'s rule: `L2O_DATA`, else the
    /// user's data folder). Never stored: a folder is one machine's layout, so checkpoints record `dataset`.
    #[serde(skip)]
    pub data: Option<String>,
    /// MNIST: the files the task was trained on (names and SHA-256), recorded in checkpoints so that `l2o eval`
    /// can say when it is given a different MNIST. None for the synthetic tasks (and in checkpoints written
    /// before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<idx::DataSetId>,
}

impl Default for TaskOptions {
    fn default() -> Self {
        Self {
            mlp_hidden: vec![20],
            activation: "sigmoid".into(),
            minibatch: 128,
            full_batch: false,
            data: None,
            dataset: None,
        }
    }
}

impl TaskOptions {
    /// The MNIST folder these options read ([`idx::data_dir`] of `data`).
    pub fn data_dir(&self) -> Result<std::path::PathBuf> {
        idx::data_dir(self.data.as_deref().map(std::path::Path::new))
    }

    /// For task `task` = "mnist": records in `dataset` what identifies the files of [`Self::data_dir`] (names
    /// and SHA-256); other tasks have no files and keep `None`.
    pub fn record_dataset(&mut self, task: &str) -> Result<()> {
        if task.eq_ignore_ascii_case("mnist") {
            self.dataset = Some(idx::DataSetId::of_mnist(&self.data_dir()?)?);
        }
        Ok(())
    }

    /// Options loaded from a checkpoint, about to be used again (resume, upgrade): records `dataset` when the
    /// checkpoint has none (written before it was recorded), else returns [`Self::dataset_warning`].
    pub fn reconcile_dataset(&mut self, task: &str) -> Result<Option<String>> {
        if self.dataset.is_none() {
            self.record_dataset(task)?;
            return Ok(None);
        }
        self.dataset_warning(task)
    }

    /// For an MNIST task whose options recorded a `dataset`: a warning when the files of
    /// [`Self::data_dir`] are not those (None when they are, when nothing was recorded, or for other tasks).
    pub fn dataset_warning(&self, task: &str) -> Result<Option<String>> {
        let Some(want) = self
            .dataset
            .as_ref()
            .filter(|_| task.eq_ignore_ascii_case("mnist"))
        else {
            return Ok(None);
        };
        let dir = self.data_dir()?;
        let have = idx::DataSetId::of_mnist(&dir)?;
        let diff = want.differences(&have);
        Ok((!diff.is_empty()).then(|| {
            format!(
                "the MNIST files in {} are not the ones this checkpoint was trained on ({}): results are not \
                 comparable with its training",
                dir.display(),
                diff.join("; ")
            )
        }))
    }
}

/// MNIST, loaded once per directory and shared by every task built from it.
fn mnist(dir: Option<&str>) -> Result<std::sync::Arc<idx::MnistData>> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<std::path::PathBuf, Arc<idx::MnistData>>>> =
        OnceLock::new();
    let dir = idx::data_dir(dir.map(std::path::Path::new))?;
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(d) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&dir) {
        return Ok(d.clone());
    }
    let d = Arc::new(idx::load_mnist(&dir)?);
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(dir, d.clone());
    Ok(d)
}

/// Any task by name with options. `test_split` selects MNIST's test images (other tasks ignore it; their
/// held-out problems come from other seeds). For "mnist" the dimension follows from the architecture and `n`
/// is ignored.
pub fn build_task(
    ctx: &Context,
    name: &str,
    n: usize,
    opts: &TaskOptions,
    batch: usize,
    seed: u64,
    test_split: bool,
) -> Result<Box<dyn Task>> {
    if name.contains(mixture::SEPARATOR) {
        let names: Vec<&str> = name.split(mixture::SEPARATOR).map(str::trim).collect();
        if names.iter().any(|s| s.is_empty()) || batch < names.len() {
            bail!(
                "task {name:?}: a mixture is families joined by '+' (e.g. quadratic-cond-rotated+rosenbrock) with \
                 at least one problem per family (batch {batch} < {} families)",
                names.len()
            );
        }
        let sizes = mixture::block_sizes(batch, names.len());
        let parts = names
            .iter()
            .zip(sizes)
            .enumerate()
            .map(|(i, (f, b))| {
                build_task(ctx, f, n, opts, b, mixture::family_seed(seed, i), test_split)
            })
            .collect::<Result<Vec<_>>>()?;
        return Ok(Box::new(Mixture::new(parts)?));
    }
    Ok(match name.to_ascii_lowercase().as_str() {
        "quadratic" => Box::new(Quadratic::sample(ctx, n, batch, seed)?),
        "quadratic-cond" => Box::new(Quadratic::conditioned(
            ctx, n, batch, seed, COND_RANGE, false,
        )?),
        "quadratic-cond-rotated" => Box::new(Quadratic::conditioned(
            ctx, n, batch, seed, COND_RANGE, true,
        )?),
        "rosenbrock" => Box::new(Rosenbrock::sample(ctx, n, batch, seed)?),
        "logistic" => Box::new(Logistic::sample(ctx, n, batch, seed)?),
        "mnist" => {
            let cfg = MlpConfig {
                hidden: opts.mlp_hidden.clone(),
                activation: Activation::parse(&opts.activation)?,
                minibatch: opts.minibatch,
                full_batch: opts.full_batch,
                test_split,
            };
            Box::new(Mlp::new(
                ctx,
                mnist(opts.data.as_deref())?,
                cfg,
                batch,
                seed,
            )?)
        }
        _ => bail!(
            "unknown task {name:?}; valid tasks: {}, or several joined by '+' (a mixture)",
            TASK_NAMES.join(", ")
        ),
    })
}

/// A standard normal sample.
pub(crate) fn normal(rng: &mut rand::rngs::StdRng) -> f64 {
    use rand::Rng;
    rng.sample(rand_distr::StandardNormal)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tasks_wgsl_validates_with_naga() {
        for f in super::families() {
            l2o_engine::shaders::validate(f).unwrap();
        }
    }
}
