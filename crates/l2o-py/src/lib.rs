//! `l2o._l2o`: the native half of the Python package (the Pythonic half, argument checks, result objects and
//! the progress bar, is `python/l2o/__init__.py`). Arrays cross as flat float64 numpy arrays; device work runs
//! with the interpreter lock released, and the user's functions are called with it retaken (host steps,
//! [`l2o_tasks::HostTask`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result, anyhow, bail};
use l2o_engine::{Context, ContextOptions, Precision, ScalarOut};
use l2o_meta::kinds::{LearnedOptions, by_name};
use l2o_meta::learned::new_state;
use l2o_meta::state::{TrainConfig, TrainState};
use l2o_meta::train::{HostSource, train_on};
use l2o_optim::stepper::{Snapshot, Stepper};
use l2o_optim::{Direction, LbfgsConfig, LineSearch, RunOptions, make_optimizer, run};
use l2o_tasks::{HostFn, HostProblem, NonFinite, Sampler, Task, TaskOptions, build_task};
use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

pyo3::create_exception!(
    _l2o,
    NonFiniteError,
    PyValueError,
    "A function returned NaN or ±inf (or meta-training diverged)."
);

/// A Python exception raised inside a callback, kept until the Rust call it interrupted returns.
type ErrSlot = Arc<Mutex<Option<PyErr>>>;

/// The Rust error as a Python exception: the callback's own exception when one was raised; otherwise
/// `NonFiniteError` for non-finite values, `ValueError` for bad arguments and shapes, `RuntimeError` for
/// device and file problems.
fn py_err(e: anyhow::Error, slot: Option<&ErrSlot>) -> PyErr {
    if let Some(s) = slot {
        if let Some(pe) = s.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return pe;
        }
    }
    let msg = format!("{e:#}");
    let m = msg.to_ascii_lowercase();
    if m.contains("non-finite") || m.contains("not finite") || m.contains("diverged") {
        return NonFiniteError::new_err(msg);
    }
    const ARGUMENT: &[&str] = &[
        "unknown",
        "must be",
        "wrong dimensions",
        "values, the task has",
        "use one of",
        "needs an even",
        "expected",
        "empty problem",
        "θ is not the point",
        "θ has",
        "at least",
        "positive",
        "l2o.minimize",
        "resume: ",
    ];
    if ARGUMENT.iter().any(|k| m.contains(&k.to_lowercase())) {
        PyValueError::new_err(msg)
    } else {
        PyRuntimeError::new_err(msg)
    }
}

fn value_err(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

#[pyclass(name = "Context", module = "l2o", frozen)]
struct PyContext {
    ctx: Arc<Context>,
}

#[pymethods]
impl PyContext {
    #[new]
    #[pyo3(signature = (backend=None, adapter=None, precision="f32"))]
    fn new(
        py: Python<'_>,
        backend: Option<String>,
        adapter: Option<String>,
        precision: &str,
    ) -> PyResult<Self> {
        let best = precision.eq_ignore_ascii_case("best");
        let p = match precision.to_ascii_lowercase().as_str() {
            "f32" | "float32" | "best" => Precision::F32,
            "f64" | "float64" => Precision::F64,
            other => {
                return Err(value_err(format!(
                    "precision {other:?}: use \"f32\", \"f64\" or \"best\""
                )));
            }
        };
        let o = ContextOptions {
            backend,
            adapter,
            precision: p,
            kernels: None,
            local_rank: None,
        };
        let ctx = py
            .detach(|| {
                if best {
                    Context::new_best_precision(&o)
                } else {
                    Context::new(&o)
                }
            })
            .map_err(|e| PyRuntimeError::new_err(format!("{e:#}")))?;
        Ok(Self { ctx: Arc::new(ctx) })
    }

    /// The adapter's name.
    #[getter]
    fn name(&self) -> String {
        self.ctx.info.name.clone()
    }
    #[getter]
    fn backend(&self) -> String {
        format!("{:?}", self.ctx.info.backend).to_lowercase()
    }
    #[getter]
    fn precision(&self) -> String {
        self.ctx.precision().to_string()
    }
    /// Whether the adapter can compute in f64.
    #[getter]
    fn f64(&self) -> bool {
        self.ctx.supports_f64()
    }
    fn __repr__(&self) -> String {
        format!(
            "l2o.Context({} — {})",
            self.ctx.describe(),
            self.ctx.precision()
        )
    }
}

/// Every adapter wgpu finds (optionally on one backend).
#[pyfunction]
#[pyo3(signature = (backend=None))]
fn adapters(py: Python<'_>, backend: Option<String>) -> PyResult<Vec<Py<PyDict>>> {
    let list = py
        .detach(|| Context::adapters(backend.as_deref()))
        .map_err(|e| PyRuntimeError::new_err(format!("{e:#}")))?;
    list.into_iter()
        .map(|a| {
            let d = PyDict::new(py);
            d.set_item("name", a.name)?;
            d.set_item("backend", a.backend)?;
            d.set_item("device_type", a.device_type)?;
            d.set_item("driver", a.driver)?;
            d.set_item("f64", a.f64)?;
            Ok(d.unbind())
        })
        .collect()
}

/// Call `f(args)` with the interpreter lock taken; its exception, if any, is kept in `slot` (the first one
/// wins: it is what the user sees once the Rust call returns) and comes back as an error carrying its message.
fn call_keeping<'py>(
    py: Python<'py>,
    f: &Py<PyAny>,
    args: impl pyo3::call::PyCallArgs<'py>,
    slot: &ErrSlot,
) -> Result<Py<PyAny>> {
    f.call1(py, args).map_err(|e| {
        let msg = e.to_string();
        slot.lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(e);
        anyhow!("{msg}")
    })
}

/// A host closure calling `evaluate(x_flat) -> (f_flat, g_flat)` (the Python wrapper checks shapes).
fn host_fn(evaluate: Py<PyAny>, slot: ErrSlot) -> HostFn {
    Arc::new(move |theta: &[f64], f: &mut [f64], g: &mut [f64]| {
        Python::attach(|py| -> Result<()> {
            let x = PyArray1::from_slice(py, theta);
            let r = call_keeping(py, &evaluate, (x,), &slot).context("the function raised")?;
            let (fa, ga): (PyReadonlyArray1<f64>, PyReadonlyArray1<f64>) = r
                .extract(py)
                .map_err(|e| anyhow!("the function must return (f, grad) arrays: {e}"))?;
            let (fs, gs) = (fa.as_slice()?, ga.as_slice()?);
            if fs.len() != f.len() || gs.len() != g.len() {
                bail!(
                    "the function returned {} losses and {} gradient values, expected {} and {}",
                    fs.len(),
                    gs.len(),
                    f.len(),
                    g.len()
                );
            }
            f.copy_from_slice(fs);
            g.copy_from_slice(gs);
            Ok(())
        })
    })
}

fn sampler(sample: Py<PyAny>, slot: ErrSlot) -> Sampler {
    Arc::new(move |seed: u64| {
        Python::attach(|py| -> Result<Vec<f64>> {
            let r = call_keeping(py, &sample, (seed,), &slot)
                .with_context(|| format!("sample({seed}) raised"))?;
            let a: PyReadonlyArray1<f64> = r
                .extract(py)
                .map_err(|e| anyhow!("sample must return an array: {e}"))?;
            Ok(a.as_slice()?.to_vec())
        })
    })
}

fn non_finite(policy: &str) -> PyResult<NonFinite> {
    match policy {
        "raise" | "error" => Ok(NonFinite::Error),
        "diverge" | "diverged" => Ok(NonFinite::Diverge),
        other => Err(value_err(format!(
            "on_nonfinite={other:?}: use \"raise\" or \"diverge\""
        ))),
    }
}

/// One of l2o's built-in tasks (quadratic, rosenbrock, logistic, mnist, …) drawn from a seed.
#[pyclass(name = "BuiltinTask", module = "l2o")]
struct BuiltinTask {
    ctx: Arc<Context>,
    task: Arc<Mutex<Box<dyn Task>>>,
    #[pyo3(get)]
    name: String,
    #[pyo3(get)]
    dim: usize,
    #[pyo3(get)]
    batch: usize,
    #[pyo3(get)]
    seed: u64,
}

#[pymethods]
impl BuiltinTask {
    #[new]
    fn new(
        py: Python<'_>,
        ctx: &PyContext,
        name: String,
        dim: usize,
        batch: usize,
        seed: u64,
    ) -> PyResult<Self> {
        let c = ctx.ctx.clone();
        let t = py
            .detach(|| build_task(&c, &name, dim, &TaskOptions::default(), batch, seed, false))
            .map_err(|e| py_err(e, None))?;
        Ok(Self {
            dim: t.dim(),
            batch: t.batch(),
            ctx: c,
            task: Arc::new(Mutex::new(t)),
            name,
            seed,
        })
    }

    /// θ₀ of every problem, flat (B·n).
    fn x0<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        let t = self.task.lock().unwrap_or_else(|p| p.into_inner());
        PyArray1::from_vec(py, t.initial_point())
    }

    /// (f, ∇f) at θ (flat B·n), computed on the device by the task's kernels.
    fn evaluate<'py>(
        &self,
        py: Python<'py>,
        theta: PyReadonlyArray1<'py, f64>,
    ) -> PyResult<(Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>)> {
        let th = theta.as_slice()?.to_vec();
        let (ctx, task) = (self.ctx.clone(), self.task.clone());
        let (f, g) = py
            .detach(move || -> Result<(Vec<f64>, Vec<f64>)> {
                let t = task.lock().unwrap_or_else(|p| p.into_inner());
                let (n, b) = (t.dim(), t.batch());
                if th.len() != n * b {
                    bail!("θ has {} values, expected {b} × {n}", th.len());
                }
                let x = ctx.upload("theta", &th)?;
                let g = ctx.zeros("grad", n * b)?;
                let f = ctx.zeros("f", b)?;
                let out = ScalarOut {
                    buf: &f,
                    stride: 1,
                    col: 0,
                };
                ctx.submit(&t.loss_and_grad(&ctx, x.view(n), g.view(n), out)?)?;
                let mut r = ctx.read_many(&[&f, &g])?;
                let gv = r.pop().expect("two");
                Ok((r.pop().expect("two"), gv))
            })
            .map_err(|e| py_err(e, None))?;
        Ok((PyArray1::from_vec(py, f), PyArray1::from_vec(py, g)))
    }
}

/// The task a run is on: the Python function `evaluate` from `x0` (B × n, flat), or a built-in task.
#[allow(clippy::too_many_arguments)]
fn task_of(
    py: Python<'_>,
    ctx: &Arc<Context>,
    x0: PyReadonlyArray1<'_, f64>,
    n: usize,
    batch: usize,
    evaluate: Option<Py<PyAny>>,
    builtin: Option<PyRef<'_, BuiltinTask>>,
    policy: NonFinite,
    slot: &ErrSlot,
) -> PyResult<Arc<Mutex<Box<dyn Task>>>> {
    match (evaluate, builtin) {
        (Some(ev), None) => {
            let p = HostProblem::new("fun", n, batch, host_fn(ev, slot.clone()))
                .map_err(|e| py_err(e, None))?
                .on_non_finite(policy);
            let x = x0.as_slice()?.to_vec();
            let t = py
                .detach(|| p.task_at(ctx, x))
                .map_err(|e| py_err(e, None))?;
            Ok(Arc::new(Mutex::new(Box::new(t))))
        }
        (None, Some(b)) => Ok(b.task.clone()),
        _ => Err(value_err("give a function or a built-in task, not both")),
    }
}

fn optimizer_for(
    method: &str,
    lr: Option<f64>,
    line_search: &str,
    history: usize,
    direction: &str,
) -> Result<Box<dyn l2o_optim::Optimizer>> {
    if method.ends_with(".l2o") || Path::new(method).is_file() {
        return l2o_meta::load_optimizer(Path::new(method));
    }
    let ls = LineSearch::parse(line_search)?;
    make_optimizer(
        method,
        lr,
        LbfgsConfig {
            m: history,
            line_search: ls,
            direction: Direction::parse(direction)?,
            ..Default::default()
        },
    )
}

/// Run an optimizer (a built-in name or a checkpoint path) on a task: the Python function `evaluate` from
/// `x0` (B × n, flat), or a built-in task. Returns the trace as a dict of flat arrays.
#[pyfunction]
#[pyo3(signature = (ctx, x0, n, batch, method, steps, evaluate=None, builtin=None, lr=None,
    line_search="wolfe", history=5, direction="auto", gtol=0.0, on_nonfinite="raise", callback=None))]
#[allow(clippy::too_many_arguments)]
fn minimize<'py>(
    py: Python<'py>,
    ctx: &PyContext,
    x0: PyReadonlyArray1<'py, f64>,
    n: usize,
    batch: usize,
    method: String,
    steps: usize,
    evaluate: Option<Py<PyAny>>,
    builtin: Option<PyRef<'py, BuiltinTask>>,
    lr: Option<f64>,
    line_search: &str,
    history: usize,
    direction: &str,
    gtol: f64,
    on_nonfinite: &str,
    callback: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    if steps == 0 {
        return Err(value_err("steps must be at least 1"));
    }
    let policy = non_finite(on_nonfinite)?;
    let slot: ErrSlot = Arc::new(Mutex::new(None));
    let c = ctx.ctx.clone();
    let task = task_of(py, &c, x0, n, batch, evaluate, builtin, policy, &slot)?;
    let mut opt =
        optimizer_for(&method, lr, line_search, history, direction).map_err(|e| py_err(e, None))?;
    let o = RunOptions {
        steps,
        eps_g: gtol,
        check_every: if gtol > 0.0 { 10 } else { 0 },
        // the callback is the progress bar: free-running rounds report coarser (round-based) progress
        lockstep: false,
    };
    let cb_slot = slot.clone();
    let tr = py
        .detach(move || {
            let t = task.lock().unwrap_or_else(|p| p.into_inner());
            run(&c, t.as_ref(), opt.as_mut(), &o, &mut |k| {
                if let Some(cb) = &callback {
                    let _ = Python::attach(|py| call_keeping(py, cb, (k,), &cb_slot));
                }
            })
        })
        .map_err(|e| py_err(e, Some(&slot)))?;
    if let Some(e) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    let d = PyDict::new(py);
    d.set_item("optimizer", tr.optimizer.clone())?;
    d.set_item("x", PyArray1::from_vec(py, tr.final_theta.clone()))?;
    d.set_item("f", PyArray1::from_vec(py, tr.f.concat()))?;
    d.set_item("gnorm", PyArray1::from_vec(py, tr.gnorm.concat()))?;
    let last = tr.steps();
    d.set_item("nit", tr.iterations[last].clone())?;
    d.set_item("nfev", tr.final_evaluations.clone())?;
    // "running", "converged" (‖g‖ < gtol, ∇f = 0, or no decrease resolvable at the working precision: the
    // message tells which), "diverged", "line_search_failed"
    use l2o_engine::status::Status;
    let st: Vec<&str> = (0..tr.batch)
        .map(|b| match tr.status_of(b) {
            Status::Running => "running",
            Status::Converged | Status::AtPrecision => "converged",
            Status::Diverged => "diverged",
            Status::LineSearchFailed => "line_search_failed",
        })
        .collect();
    d.set_item("status", st)?;
    let msg: Vec<&str> = (0..tr.batch).map(|b| tr.status_of(b).message()).collect();
    d.set_item("message", msg)?;
    Ok(d)
}

/// A trained learned optimizer (the best φ of a checkpoint), with a stepper for a loop the user drives.
#[pyclass(name = "LearnedOptimizer", module = "l2o")]
struct Learned {
    ctx: Arc<Context>,
    state: Arc<TrainState>,
    #[pyo3(get)]
    path: String,
    stepper: Mutex<Option<Stepper>>,
}

impl Learned {
    /// Makes this checkpoint's optimizer (its best φ), for a stepper.
    fn maker(&self) -> l2o_optim::stepper::MakeOptimizer {
        let st = self.state.clone();
        Box::new(move || l2o_meta::kinds::of_state(&st).optimizer(st.best_phi.clone()))
    }
}

#[pymethods]
impl Learned {
    #[new]
    fn new(py: Python<'_>, ctx: &PyContext, path: PathBuf) -> PyResult<Self> {
        let st = py
            .detach(|| l2o_meta::checkpoint::load(&path))
            .map_err(|e| py_err(e, None))?;
        Ok(Self {
            ctx: ctx.ctx.clone(),
            state: Arc::new(st),
            path: path.display().to_string(),
            stepper: Mutex::new(None),
        })
    }

    /// "lstm", "hlstm" or "lbfgs-policy" (the `l2o train --optimizer` value).
    #[getter]
    fn kind(&self) -> &'static str {
        l2o_meta::kinds::of_state(&self.state).about().flag
    }

    /// What `l2o inspect` prints, as (field, value) pairs, plus the training configuration.
    fn inspect(&self) -> PyResult<Vec<(String, String)>> {
        let v =
            l2o_meta::checkpoint::inspect(Path::new(&self.path)).map_err(|e| py_err(e, None))?;
        Ok(v.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    /// The training configuration and the seed of the held-out problems `l2o eval` uses.
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let t = &self.state.train;
        let d = PyDict::new(py);
        d.set_item("task", &t.task)?;
        d.set_item("dim", t.dim)?;
        d.set_item("batch", t.batch)?;
        d.set_item("horizon", t.horizon)?;
        d.set_item("unroll", t.unroll)?;
        d.set_item("epochs", t.epochs)?;
        d.set_item("meta_optimizer", &t.meta_optimizer)?;
        d.set_item("meta_lr", t.meta_lr)?;
        d.set_item("seed", t.seed)?;
        d.set_item("test_seed", l2o_meta::state::test_seed(t.seed))?;
        d.set_item("epoch", self.state.epoch)?;
        d.set_item("best_epoch", self.state.best_epoch)?;
        d.set_item("best_validation", self.state.best_val)?;
        Ok(d)
    }

    /// One step for B problems of n parameters (flat θ and ∇f; f optional). Returns the new θ (flat).
    #[pyo3(signature = (theta, grad, n, batch, loss=None))]
    fn step<'py>(
        &self,
        py: Python<'py>,
        theta: PyReadonlyArray1<'py, f64>,
        grad: PyReadonlyArray1<'py, f64>,
        n: usize,
        batch: usize,
        loss: Option<PyReadonlyArray1<'py, f64>>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let kind = self.kind();
        if kind == "lbfgs-policy" {
            return Err(value_err(
                "an L-BFGS-π policy needs its own function evaluations (a line search's worth per step): run it \
                 with l2o.minimize(fun, x0, method=<this checkpoint>)",
            ));
        }
        let mut guard = self.stepper.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = guard
            .as_ref()
            .filter(|s| s.dim() != n || s.batch() != batch)
        {
            return Err(value_err(format!(
                "step: this optimizer is stepping {} × {} parameters; use one object per parameter set, or reset()",
                s.batch(),
                s.dim()
            )));
        }
        if guard.is_none() {
            let s = Stepper::new(self.ctx.clone(), self.maker(), n, batch)
                .map_err(|e| py_err(e, None))?;
            *guard = Some(s);
        }
        let (th, g) = (theta.as_slice()?.to_vec(), grad.as_slice()?.to_vec());
        let l = loss.map(|l| l.as_slice().map(|s| s.to_vec())).transpose()?;
        let s = guard.as_mut().expect("made");
        let out = py
            .detach(|| s.step(&th, &g, l.as_deref()))
            .map_err(|e| py_err(e, None))?;
        Ok(PyArray1::from_vec(py, out))
    }

    /// The optimizer's device state as a dict of plain values (bytes, a float64 array, numbers, strings): None
    /// before the first step. `resume` continues from it, in this process or another, bit for bit.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let mut guard = self.stepper.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = guard.as_mut() else {
            return Ok(None);
        };
        let Some(snap) = py.detach(|| s.snapshot()).map_err(|e| py_err(e, None))? else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("format", 1)?;
        d.set_item("optimizer", &snap.optimizer)?;
        d.set_item("precision", &snap.precision)?;
        d.set_item("n", snap.n)?;
        d.set_item("batch", snap.batch)?;
        d.set_item("steps", snap.steps)?;
        d.set_item("step", snap.step)?;
        d.set_item("evaluation", snap.evaluation)?;
        d.set_item("pending", PyArray1::from_vec(py, snap.pending))?;
        let bufs: Vec<Bound<'py, PyBytes>> = snap.buffers.iter().map(|b| PyBytes::new(py, b)).collect();
        d.set_item("buffers", bufs)?;
        Ok(Some(d))
    }

    /// Continue from a `snapshot` (of a LearnedOptimizer of the same checkpoint and precision): the next step
    /// takes the gradient at the snapshot's point.
    fn resume(&self, py: Python<'_>, state: &Bound<'_, PyDict>) -> PyResult<()> {
        let bad = |what: &str| value_err(format!("resume: the state has no valid {what:?}: pass what snapshot() returned"));
        let get = |k: &str| state.get_item(k).ok().flatten().ok_or_else(|| bad(k));
        let format: u64 = get("format")?.extract().map_err(|_| bad("format"))?;
        if format != 1 {
            return Err(value_err(format!(
                "resume: state format {format}; this l2o reads format 1 (saved by another version?)"
            )));
        }
        let pending: Vec<f64> = get("pending")?
            .extract::<PyReadonlyArray1<'_, f64>>()
            .map_err(|_| bad("pending"))?
            .as_slice()?
            .to_vec();
        let buffers: Vec<Vec<u8>> = get("buffers")?.extract().map_err(|_| bad("buffers"))?;
        let snap = Snapshot {
            optimizer: get("optimizer")?.extract().map_err(|_| bad("optimizer"))?,
            precision: get("precision")?.extract().map_err(|_| bad("precision"))?,
            n: get("n")?.extract().map_err(|_| bad("n"))?,
            batch: get("batch")?.extract().map_err(|_| bad("batch"))?,
            steps: get("steps")?.extract().map_err(|_| bad("steps"))?,
            step: get("step")?.extract().map_err(|_| bad("step"))?,
            evaluation: get("evaluation")?.extract().map_err(|_| bad("evaluation"))?,
            pending,
            buffers,
        };
        let (ctx, make) = (self.ctx.clone(), self.maker());
        let s = py
            .detach(|| Stepper::resume(ctx, make, snap))
            .map_err(|e| py_err(e, None))?;
        *self.stepper.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
        Ok(())
    }

    /// Forget the optimizer's state (and the parameter shape): the next step starts a new run.
    fn reset(&self) {
        *self.stepper.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Steps taken since the start or the last reset.
    #[getter]
    fn steps(&self) -> u64 {
        self.stepper
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(0, |s| s.steps())
    }
}

/// A built-in method (or a checkpoint) stepped from a loop the caller drives, one function evaluation per
/// `step` (a line search's trial points included): what `l2o.torch.Optimizer(method="lbfgs")` keeps between
/// its `step(closure)` calls, so the L-BFGS memory carries over as in `torch.optim.LBFGS`.
#[pyclass(name = "MethodStepper", module = "l2o")]
struct MethodStepper {
    stepper: Mutex<Stepper>,
}

#[pymethods]
impl MethodStepper {
    #[new]
    #[pyo3(signature = (ctx, method, n, batch, lr=None, line_search="wolfe", history=5, direction="auto"))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        ctx: &PyContext,
        method: String,
        n: usize,
        batch: usize,
        lr: Option<f64>,
        line_search: &str,
        history: usize,
        direction: &str,
    ) -> PyResult<Self> {
        let (ls, dir) = (line_search.to_string(), direction.to_string());
        // Stepper::new builds one (for its name), so bad options are refused here, not at the first step
        let make: l2o_optim::stepper::MakeOptimizer =
            Box::new(move || optimizer_for(&method, lr, &ls, history, &dir));
        let c = ctx.ctx.clone();
        let s = py
            .detach(|| Stepper::new(c, make, n, batch))
            .map_err(|e| py_err(e, None))?;
        Ok(Self {
            stepper: Mutex::new(s),
        })
    }

    /// Give ∇f (and f) at the point the previous step returned (any point at the first step); returns the next
    /// point the method evaluates.
    #[pyo3(signature = (theta, grad, loss=None))]
    fn step<'py>(
        &self,
        py: Python<'py>,
        theta: PyReadonlyArray1<'py, f64>,
        grad: PyReadonlyArray1<'py, f64>,
        loss: Option<PyReadonlyArray1<'py, f64>>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let (th, g) = (theta.as_slice()?.to_vec(), grad.as_slice()?.to_vec());
        let l = loss.map(|l| l.as_slice().map(|s| s.to_vec())).transpose()?;
        let mut guard = self.stepper.lock().unwrap_or_else(|p| p.into_inner());
        let s: &mut Stepper = &mut guard;
        let out = py
            .detach(|| s.step(&th, &g, l.as_deref()))
            .map_err(|e| py_err(e, None))?;
        Ok(PyArray1::from_vec(py, out))
    }

    /// (k, e): the method's iteration k ≥ 1 and its evaluation e within it that the next step brings the gradient
    /// of; None before the first step.
    #[getter]
    fn position(&self) -> Option<(u64, u64)> {
        self.stepper
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .position()
    }

    /// The point whose gradient the next step brings; None before the first step.
    #[getter]
    fn pending<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyArray1<f64>>> {
        let s = self.stepper.lock().unwrap_or_else(|p| p.into_inner());
        s.pending().map(|x| PyArray1::from_slice(py, x))
    }

    fn reset(&self) {
        self.stepper.lock().unwrap_or_else(|p| p.into_inner()).reset();
    }
}

fn opt_get<'py, T: FromPyObjectOwned<'py>>(
    d: &Bound<'py, PyDict>,
    key: &str,
    used: &mut Vec<String>,
) -> PyResult<Option<T>> {
    used.push(key.to_string());
    match d.get_item(key)? {
        Some(v) if !v.is_none() => v.extract::<T>().map(Some).map_err(|e| {
            let e: PyErr = e.into();
            value_err(format!("option {key}: {e}"))
        }),
        _ => Ok(None),
    }
}

/// Meta-train a learned optimizer on a built-in task (by name) or a user task (evaluate + sample), writing
/// `out/checkpoint.l2o` after every epoch. `progress(kind, epoch, unroll, value)` is called after every unroll
/// ("unroll", meta-loss per step) and every epoch ("epoch", validation loss or NaN).
#[pyfunction]
#[pyo3(signature = (ctx, optimizer, epochs, out, options, task=None, evaluate=None, sample=None,
    dim=None, batch=None, name="user", on_nonfinite="raise", progress=None))]
#[allow(clippy::too_many_arguments)]
fn train(
    py: Python<'_>,
    ctx: &PyContext,
    optimizer: &str,
    epochs: usize,
    out: PathBuf,
    options: &Bound<'_, PyDict>,
    task: Option<String>,
    evaluate: Option<Py<PyAny>>,
    sample: Option<Py<PyAny>>,
    dim: Option<usize>,
    batch: Option<usize>,
    name: &str,
    on_nonfinite: &str,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    let mut used = vec![];
    let d = LearnedOptions::default();
    let lo_opts = LearnedOptions {
        lstm_hidden: opt_get(options, "lstm_hidden", &mut used)?.unwrap_or(d.lstm_hidden),
        preprocess: opt_get(options, "preprocess", &mut used)?.unwrap_or(d.preprocess),
        scale: opt_get(options, "scale", &mut used)?.unwrap_or(d.scale),
        memory: opt_get(options, "memory", &mut used)?.unwrap_or(d.memory),
        policy_width: opt_get(options, "policy_width", &mut used)?.unwrap_or(d.policy_width),
        cell: opt_get(options, "cell", &mut used)?.unwrap_or(d.cell),
        hlstm_hidden: opt_get(options, "hlstm_hidden", &mut used)?.unwrap_or(d.hlstm_hidden),
        meta_loss: opt_get(options, "meta_loss", &mut used)?.unwrap_or(d.meta_loss),
        loss_floor: opt_get(options, "loss_floor", &mut used)?.unwrap_or(d.loss_floor),
        clip: opt_get(options, "clip", &mut used)?,
        memory_grad: opt_get(options, "memory_grad", &mut used)?.unwrap_or(d.memory_grad),
    };
    let lo = by_name(optimizer, &lo_opts).map_err(|e| py_err(e, None))?;
    let def = lo.about().defaults;
    let slot: ErrSlot = Arc::new(Mutex::new(None));
    let host = match (&task, &evaluate) {
        (None, Some(ev)) => {
            let (Some(n), Some(b), Some(s)) = (dim, batch, &sample) else {
                return Err(value_err(
                    "meta-training on a task of your own needs its dim, batch and sample(seed)",
                ));
            };
            Some(
                HostProblem::new(name, n, b, host_fn(ev.clone_ref(py), slot.clone()))
                    .map_err(|e| py_err(e, None))?
                    .with_sampler(sampler(s.clone_ref(py), slot.clone()))
                    .on_non_finite(non_finite(on_nonfinite)?),
            )
        }
        (Some(_), None) => None,
        _ => return Err(value_err("give a built-in task name or a task of your own")),
    };
    let tb = host.as_ref().map(|h| h.batch());
    let shards: usize = opt_get(options, "shards", &mut used)?.unwrap_or(1);
    let tc = TrainConfig {
        task: task.clone().unwrap_or_else(|| name.to_string()),
        dim: host.as_ref().map_or(dim.unwrap_or(10), |h| h.dim()),
        batch: tb.or(batch).unwrap_or(32),
        horizon: opt_get(options, "horizon", &mut used)?.unwrap_or(def.horizon),
        unroll: opt_get(options, "unroll", &mut used)?.unwrap_or(def.unroll),
        epochs,
        meta_optimizer: opt_get(options, "meta_optimizer", &mut used)?
            .unwrap_or_else(|| def.meta_optimizer.to_string()),
        meta_lr: opt_get(options, "meta_lr", &mut used)?.unwrap_or(def.meta_lr),
        meta_lr_final: opt_get(options, "meta_lr_final", &mut used)?,
        seed: opt_get(options, "seed", &mut used)?.unwrap_or(1),
        // a task of your own: one sample(seed) per validation shard
        val_batch: tb
            .map(|b| b * shards)
            .or(opt_get(options, "val_batch", &mut used)?)
            .unwrap_or(128),
        validate_every: opt_get(options, "validate_every", &mut used)?.unwrap_or(10),
        max_nonfinite: 10,
        shards,
        task_options: TaskOptions::default(),
    };
    used.push("val_batch".into());
    for k in options.keys() {
        let k: String = k.extract()?;
        if !used.contains(&k) {
            return Err(value_err(format!(
                "unknown option {k:?} of l2o.train: valid options are {}",
                used.join(", ")
            )));
        }
    }
    let mut state = new_state(lo.as_ref(), tc.clone()).map_err(|e| py_err(e, None))?;
    std::fs::create_dir_all(&out)
        .map_err(|e| PyRuntimeError::new_err(format!("cannot create {}: {e}", out.display())))?;
    let ckpt = out.join("checkpoint.l2o");
    let c = ctx.ctx.clone();
    let cb_slot = slot.clone();
    let report = move |kind: &str, e: usize, u: usize, v: f64| {
        if let Some(p) = &progress {
            let _ = Python::attach(|py| call_keeping(py, p, (kind, e, u, v), &cb_slot));
        }
    };
    let ck = ckpt.clone();
    py.detach(|| -> Result<()> {
        let report = &report;
        let mut on_unroll = |e: usize, u: usize, l: f64| report("unroll", e, u, l);
        let mut on_epoch = |r: &l2o_meta::state::EpochRecord, _: &TrainState| {
            report("epoch", r.epoch, 0, r.val_loss.unwrap_or(f64::NAN))
        };
        match &host {
            Some(h) => {
                let src = HostSource {
                    problem: h,
                    seed: tc.seed,
                };
                train_on(
                    &c,
                    &mut state,
                    &src,
                    Some(&ck),
                    &mut on_unroll,
                    &mut on_epoch,
                )
            }
            None => train_on(
                &c,
                &mut state,
                &tc,
                Some(&ck),
                &mut on_unroll,
                &mut on_epoch,
            ),
        }
    })
    .map_err(|e| py_err(e, Some(&slot)))?;
    if let Some(e) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    Ok(ckpt.display().to_string())
}

/// Tune a first-order method's learning rate on a task (the user's function from x0, or a built-in task):
/// returns (best rate, [(rate, mean final loss)]).
#[pyfunction]
#[pyo3(signature = (ctx, x0, n, batch, method, steps, grid, evaluate=None, builtin=None))]
#[allow(clippy::too_many_arguments)]
fn tune<'py>(
    py: Python<'py>,
    ctx: &PyContext,
    x0: PyReadonlyArray1<'py, f64>,
    n: usize,
    batch: usize,
    method: &str,
    steps: usize,
    grid: Vec<f64>,
    evaluate: Option<Py<PyAny>>,
    builtin: Option<PyRef<'py, BuiltinTask>>,
) -> PyResult<(f64, Vec<(f64, f64)>)> {
    let kind = l2o_optim::parse_kind(method).ok_or_else(|| {
        value_err(format!(
            "tune: {method:?} is not a first-order method (sgd, momentum, nesterov, rmsprop, adam, adagrad)"
        ))
    })?;
    let slot: ErrSlot = Arc::new(Mutex::new(None));
    let c = ctx.ctx.clone();
    let task = task_of(
        py,
        &c,
        x0,
        n,
        batch,
        evaluate,
        builtin,
        NonFinite::Diverge,
        &slot,
    )?;
    let r = py
        .detach(move || {
            let t = task.lock().unwrap_or_else(|p| p.into_inner());
            l2o_optim::tune::tune(&c, &[t.as_ref()], kind, &grid, steps)
        })
        .map_err(|e| py_err(e, Some(&slot)))?;
    Ok((r.best_lr, r.table))
}

/// (horizon, unroll) a learned optimizer trains with when they are not given.
#[pyfunction]
fn train_defaults(optimizer: &str) -> PyResult<(usize, usize)> {
    let d = by_name(optimizer, &LearnedOptions::default())
        .map_err(|e| py_err(e, None))?
        .about()
        .defaults;
    Ok((d.horizon, d.unroll))
}

/// The {1, 3} × 10^j grid for j in lo..=hi.
#[pyfunction]
fn log_grid(lo: i32, hi: i32) -> Vec<f64> {
    l2o_optim::tune::log_grid(lo, hi)
}

#[pymodule]
fn _l2o(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyContext>()?;
    m.add_class::<BuiltinTask>()?;
    m.add_class::<Learned>()?;
    m.add_class::<MethodStepper>()?;
    m.add_function(wrap_pyfunction!(adapters, m)?)?;
    m.add_function(wrap_pyfunction!(minimize, m)?)?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(tune, m)?)?;
    m.add_function(wrap_pyfunction!(log_grid, m)?)?;
    m.add("NonFiniteError", m.py().get_type::<NonFiniteError>())?;
    m.add_function(wrap_pyfunction!(train_defaults, m)?)?;
    Ok(())
}
