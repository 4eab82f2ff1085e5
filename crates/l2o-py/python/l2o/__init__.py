"""l2o: learned optimizers on any GPU (Vulkan, Metal, DX12; Mesa's software adapter without one).

Four calls do most things::

    import l2o
    r = l2o.minimize(fun, x0, method="lbfgs")          # fun(X) -> (f, G) over a batch; any built-in method
    opt = l2o.load("checkpoint.l2o"); x = opt.step(x, g)  # a trained L2L / Hilbert LSTM in your own loop
    task = l2o.Task(fun, sample, dim=10, batch=32)      # your problem: sample(seed) -> x0 sets up its data
    opt = l2o.train(optimizer="lstm", task=task, epochs=50, out="run")  # meta-train on it

Arrays are numpy float32/float64 of shape (B, n) — B independent problems of dimension n — or (n,) for one
problem; anything with ``__array__`` (JAX arrays, PyTorch CPU tensors) is converted through numpy. Device work
runs with the GIL released; your functions are called with it held, once per evaluation of all B problems.
Errors: ``ValueError`` for bad arguments and shapes (``NonFiniteError``, a ValueError, when a function returns
NaN/inf), ``RuntimeError`` for device and file problems, and your function's own exception when it raises.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np


def _load_triton_first() -> None:
    """PyTorch's Triton (imported lazily by torch.compile and by torch.optim's fused paths) carries its own LLVM;
    imported after Mesa's software adapter has loaded its LLVM into the process, Triton's import crashes
    (segfault, measured with torch 2.15 / triton 3.9 and Mesa 22.3). Imported first, both work. So when Triton is
    installed, its native library is loaded before l2o can open an adapter (0.5 s, once)."""
    import importlib.util

    try:
        if importlib.util.find_spec("triton") is not None:
            import triton._C.libtriton  # noqa: F401
    except Exception:  # a broken Triton install is torch's problem, not a reason to fail importing l2o
        pass


_load_triton_first()

from . import _l2o  # noqa: E402
from ._l2o import BuiltinTask, Context, NonFiniteError, adapters  # noqa: E402

__all__ = [
    "Context",
    "adapters",
    "minimize",
    "OptimizeResult",
    "load",
    "LearnedOptimizer",
    "Task",
    "task",
    "train",
    "tune",
    "NonFiniteError",
    "BuiltinTask",
]

_contexts: dict = {}


def _context(ctx: Optional[Context], precision: Optional[str]) -> Context:
    """The context to run on: the one given, else one per precision, opened on first use (L2O_BACKEND and
    L2O_ADAPTER choose the adapter, as for the CLI)."""
    if ctx is not None:
        if not isinstance(ctx, Context):
            raise ValueError(f"ctx must be an l2o.Context, got {type(ctx).__name__}")
        if precision is not None and precision != ctx.precision:
            raise ValueError(f"precision={precision!r} but the context computes in {ctx.precision}")
        return ctx
    p = precision or "f32"
    if p not in ("f32", "f64"):
        raise ValueError(f'precision {p!r}: use "f32" or "f64"')
    if p not in _contexts:
        _contexts[p] = Context(precision=p)
    return _contexts[p]


def _as_batch(x, what: str) -> tuple[np.ndarray, bool]:
    """(B, n) float64 C-contiguous copy of x, and whether x was one problem of shape (n,)."""
    a = np.asarray(x)
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{what} must hold real numbers (float32 or float64), got dtype {a.dtype}")
    if a.dtype.kind == "f" and a.dtype not in (np.float32, np.float64):
        raise ValueError(f"{what} must be float32 or float64, got {a.dtype}")
    single = a.ndim == 1
    if a.ndim not in (1, 2) or a.size == 0:
        raise ValueError(f"{what} must have shape (B, n) or (n,), got {a.shape}")
    a = np.ascontiguousarray(a.reshape(1, -1) if single else a, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise NonFiniteError(f"{what} holds NaN or inf")
    return a, single


def _evaluator(fun: Callable, batch: int, n: int, single: bool) -> Callable:
    """fun over (B, n) [or (n,)] → (f, G), as the native side calls it: flat float64 in, flat float64 out."""

    def evaluate(flat: np.ndarray):
        X = flat.reshape(batch, n)
        out = fun(X[0] if single else X)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise ValueError(f"fun must return (f, grad), got {type(out).__name__}")
        f = np.asarray(out[0], dtype=np.float64).reshape(-1)
        g = np.asarray(out[1], dtype=np.float64)
        if f.size != batch:
            raise ValueError(f"fun returned {f.size} loss values for {batch} problems (shape {np.shape(out[0])})")
        want = (n,) if single else (batch, n)
        if g.shape != want:
            raise ValueError(f"fun returned a gradient of shape {g.shape}, expected {want}")
        return np.ascontiguousarray(f), np.ascontiguousarray(g.reshape(-1))

    return evaluate


@dataclass
class OptimizeResult:
    """What :func:`minimize` returns. Per problem: ``x`` (the final point, shaped like ``x0``), ``fun`` (final
    loss), ``nit`` (iterations), ``nfev`` (function evaluations after the one at x0), ``status`` ("running",
    "converged", "diverged", "line_search_failed") and ``message`` (why, as scipy words it: a converged problem
    reached ‖∇f‖ < gtol or ∇f = 0, or "CONVERGENCE: NO DECREASE RESOLVABLE AT THE WORKING PRECISION" when the
    line search could not resolve the decrease it predicted — L-BFGS's usual end in float32). ``trace``: per-step statistics of the loss over the problems
    (arrays of length steps + 1: ``mean``, ``median``, ``min``, ``max``, ``gnorm_mean``) and the full ``f`` and
    ``gnorm`` tables (steps + 1, B)."""

    x: np.ndarray
    fun: np.ndarray
    nit: np.ndarray
    nfev: np.ndarray
    status: list
    message: list
    trace: dict
    method: str
    success: bool = field(default=False)

    def __repr__(self) -> str:
        return (
            f"OptimizeResult(method={self.method!r}, problems={len(self.status)}, "
            f"final loss mean={float(np.mean(self.fun)):.4e}, nit max={int(np.max(self.nit))}, "
            f"status={dict((s, self.status.count(s)) for s in set(self.status))})"
        )


def _problem(fun, x0):
    """(x0 as (B, n), single, evaluate or None, builtin or None)."""
    if isinstance(fun, BuiltinTask):
        if x0 is not None:
            raise ValueError("a built-in task starts from its own x0 (task.x0()); do not pass x0")
        return fun.x0().reshape(fun.batch, fun.dim), False, None, fun
    if not callable(fun):
        raise ValueError("fun must be a callable fun(X) -> (f, grad), an l2o.Task or a built-in task")
    if x0 is None:
        raise ValueError("x0 is required")
    X, single = _as_batch(x0, "x0")
    return X, single, _evaluator(fun, X.shape[0], X.shape[1], single), None


def minimize(
    fun,
    x0=None,
    method: str = "lbfgs",
    steps: int = 100,
    precision: Optional[str] = None,
    *,
    lr: Optional[float] = None,
    line_search: str = "wolfe",
    history: int = 5,
    direction: str = "auto",
    gtol: float = 0.0,
    on_nonfinite: str = "raise",
    progress: bool = False,
    ctx: Optional[Context] = None,
) -> OptimizeResult:
    """Minimize B problems at once on the device.

    ``fun(X) -> (f, G)``: X of shape (B, n) (or (n,) when x0 is), f of B losses, G of shape X. ``method``: sgd,
    momentum, nesterov, rmsprop, adam, adagrad (``lr=`` sets the rate), lbfgs (``line_search`` "constant" |
    "armijo" | "wolfe", ``history=m``, ``direction`` "auto" | "fused" | "two-loop" | "gram": how each iteration
    is scheduled on the device, the same algorithm), or the path of a trained checkpoint (``"run/checkpoint.l2o"``: L2L, the
    Hilbert LSTM or an L-BFGS-π policy). ``steps`` iterations; a problem stops once ‖∇f‖ < ``gtol`` (0: never).
    A NaN/inf from fun raises :class:`NonFiniteError` (``on_nonfinite="raise"``) or marks that problem
    "diverged" and freezes it (``"diverge"``). ``fun`` may also be a built-in task (:func:`task`)."""
    c = _context(ctx, precision)
    if isinstance(fun, Task):
        raise ValueError("minimize takes a function; for an l2o.Task pass task.fun and x0 = task.sample(seed)")
    X, single, evaluate, builtin = _problem(fun, x0)
    B, n = X.shape
    if not isinstance(method, str):
        method = os.fspath(method)
    if int(steps) < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    bar = _Progress(int(steps), f"minimize {method}") if progress else None
    d = _l2o.minimize(
        c, X.reshape(-1), n, B, method, int(steps), evaluate=evaluate, builtin=builtin, lr=lr,
        line_search=line_search, history=int(history), direction=direction, gtol=float(gtol),
        on_nonfinite=on_nonfinite,
        callback=(lambda k: bar.update(k)) if bar else None,
    )
    if bar:
        bar.close()
    f = d["f"].reshape(-1, B)
    g = d["gnorm"].reshape(-1, B)
    fin = np.where(np.isfinite(f), f, np.nan)
    with np.errstate(all="ignore"):
        trace = {
            "f": f,
            "gnorm": g,
            "mean": np.nanmean(fin, axis=1),
            "median": np.nanmedian(fin, axis=1),
            "min": np.nanmin(fin, axis=1),
            "max": np.nanmax(fin, axis=1),
            "gnorm_mean": np.nanmean(np.where(np.isfinite(g), g, np.nan), axis=1),
        }
    x = d["x"].reshape(B, n)
    return OptimizeResult(
        x=x[0] if single else x,
        fun=f[-1][0] if single else f[-1],
        nit=np.asarray(d["nit"])[0] if single else np.asarray(d["nit"]),
        nfev=np.asarray(d["nfev"])[0] if single else np.asarray(d["nfev"]),
        status=d["status"],
        message=d["message"],
        trace=trace,
        method=d["optimizer"],
        success=all(s != "diverged" and s != "line_search_failed" for s in d["status"]),
    )


def task(name: str, dim: int = 10, batch: int = 1, seed: int = 1, *, precision=None, ctx=None) -> BuiltinTask:
    """One of l2o's built-in tasks (quadratic, quadratic-cond, rosenbrock, logistic, mnist) drawn from ``seed`` —
    the problems ``l2o run --task NAME --dim --batch --seed`` uses. ``.x0()`` is θ₀ (flat), and the task itself
    can be passed to :func:`minimize` (evaluated by its kernels on the device)."""
    return BuiltinTask(_context(ctx, precision), name, int(dim), int(batch), int(seed))


class LearnedOptimizer:
    """A trained learned optimizer (the best φ of a checkpoint). ``step(theta, grad)`` returns the next θ for a
    training loop you drive; the optimizer's state (LSTM cells, the memory of pairs) lives on the device inside
    the object: one object per parameter set, ``reset()`` to start again."""

    def __init__(self, path, ctx: Optional[Context] = None, precision: Optional[str] = None):
        self._ctx = _context(ctx, precision)
        self._native = _l2o.LearnedOptimizer(self._ctx, os.fspath(path))
        self.path = os.fspath(path)
        self._shape = None

    @property
    def kind(self) -> str:
        """"lstm", "hlstm" or "lbfgs-policy"."""
        return self._native.kind

    def info(self) -> dict:
        """What ``l2o inspect`` prints (field → value), plus ``"config"``: the training configuration (task,
        dim, seed, horizon, …, and ``test_seed``: the seed of the held-out problems ``l2o eval`` uses)."""
        d = dict(self._native.inspect())
        d["config"] = self._native.config()
        return d

    def step(self, theta, grad, loss=None):
        """One step: ``theta`` (the point the previous step returned, or any point at the start) and ``grad`` =
        ∇f(theta), of shape (B, n) or (n,); ``loss`` f(theta) per problem (the Hilbert LSTM reads it; optional).
        Returns the new θ as a numpy array of theta's shape and dtype."""
        dtype = np.asarray(theta).dtype
        T, single = _as_batch(theta, "theta")
        G, _ = _as_batch(grad, "grad")
        if G.shape != T.shape:
            raise ValueError(f"grad has shape {np.shape(grad)}, theta {np.shape(theta)}")
        B, n = T.shape
        L = None
        if loss is not None:
            L = np.ascontiguousarray(np.asarray(loss, dtype=np.float64).reshape(-1))
            if L.size != B:
                raise ValueError(f"loss has {L.size} values for {B} problems")
        out = self._native.step(T.reshape(-1), G.reshape(-1), n, B, L).reshape(B, n)
        out = out[0] if single else out
        return out.astype(dtype if dtype.kind == "f" else np.float64, copy=False)

    def reset(self) -> None:
        self._native.reset()

    def state(self) -> Optional[dict]:
        """The device state of the run being stepped (the LSTM cells, the Hilbert LSTM's memory, where it stands
        and the point whose gradient the next step takes), as a picklable dict of bytes, a float64 array, numbers
        and strings; None before the first step. :meth:`load_state` continues from it bit for bit, in this or
        another process, with the same checkpoint and precision."""
        return self._native.snapshot()

    def load_state(self, state: Optional[dict]) -> None:
        """Continue the run saved by :meth:`state` (None: start afresh, as :meth:`reset`). The next ``step`` must
        be given the point the saved run was at (``state["pending"]``, the θ its last step returned)."""
        if state is None:
            self._native.reset()
            return
        if not isinstance(state, dict):
            raise ValueError(f"load_state takes the dict state() returned, not {type(state).__name__}")
        self._native.resume(state)

    @property
    def steps(self) -> int:
        return self._native.steps

    def __repr__(self) -> str:
        return f"l2o.LearnedOptimizer({self.kind}, {self.path!r})"


def load(path, *, precision: Optional[str] = None, ctx: Optional[Context] = None) -> LearnedOptimizer:
    """Load a checkpoint written by ``l2o train`` or :func:`train`."""
    return LearnedOptimizer(path, ctx=ctx, precision=precision)


class Task:
    """A problem family of your own: ``fun(X) -> (f, G)`` over a batch X of shape (batch, dim), and
    ``sample(seed) -> x0`` drawing a fresh batch (shape (batch, dim)) — typically also setting up the data that
    ``fun`` closes over (a design matrix per problem, say). ``sample`` must be a pure function of ``seed``
    (use ``numpy.random.default_rng(seed)``): meta-training keeps the training and validation batches alive
    together and calls ``sample`` again to switch between them."""

    def __init__(self, fun: Callable, sample: Optional[Callable] = None, *, dim: int, batch: int, name="user"):
        if not callable(fun):
            raise ValueError("fun must be callable: fun(X) -> (f, grad)")
        if sample is not None and not callable(sample):
            raise ValueError("sample must be callable: sample(seed) -> x0 of shape (batch, dim)")
        if int(dim) < 1 or int(batch) < 1:
            raise ValueError(f"dim and batch must be positive, got dim={dim}, batch={batch}")
        self.fun, self._sample, self.dim, self.batch, self.name = fun, sample, int(dim), int(batch), str(name)

    def sample(self, seed: int) -> np.ndarray:
        """θ₀ of the batch drawn from ``seed``, (batch, dim) float64 (and the data fun sees are that batch's)."""
        if self._sample is None:
            raise ValueError(f"task {self.name!r} has no sampler: give Task(fun, sample, ...)")
        x0 = np.asarray(self._sample(int(seed)), dtype=np.float64)
        if x0.shape != (self.batch, self.dim):
            raise ValueError(
                f"sample({seed}) returned shape {x0.shape}, the task has batch={self.batch}, dim={self.dim}"
            )
        return x0

    def _native_sample(self, seed: int) -> np.ndarray:
        return np.ascontiguousarray(self.sample(seed).reshape(-1))

    def __repr__(self) -> str:
        return f"l2o.Task({self.name!r}, dim={self.dim}, batch={self.batch})"


class _Progress:
    """tqdm when installed, plain lines on stderr otherwise."""

    def __init__(self, total: int, desc: str):
        try:
            from tqdm.auto import tqdm  # type: ignore

            self._bar = tqdm(total=total, desc=desc)
        except ImportError:
            self._bar = None
        self.total, self.desc, self.n, self._last = total, desc, 0, -1

    def update(self, n: int, postfix: str = "") -> None:
        if self._bar is not None:
            self._bar.update(n - self._bar.n)
            if postfix:
                self._bar.set_postfix_str(postfix)
            return
        self.n = n
        pct = 100 * n // max(self.total, 1)
        if pct // 10 != self._last // 10 or n == self.total:
            self._last = pct
            print(f"{self.desc}: {n}/{self.total} ({pct}%) {postfix}", file=sys.stderr, flush=True)

    def write(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def train(
    optimizer: str = "lstm",
    task="quadratic",
    epochs: int = 100,
    out="out/train",
    *,
    dim: int = 10,
    batch: int = 32,
    callback: Optional[Callable] = None,
    progress: bool = True,
    on_nonfinite: str = "raise",
    precision: Optional[str] = None,
    ctx: Optional[Context] = None,
    **options,
) -> LearnedOptimizer:
    """Meta-train a learned optimizer — ``"lstm"`` (L2L), ``"hlstm"`` (the Hilbert LSTM) or ``"lbfgs-policy"``
    (L-BFGS-π) — on a built-in task (by name, with ``dim`` and ``batch``) or on an :class:`l2o.Task` of your own,
    for ``epochs`` meta-iterations (each on a fresh batch), writing ``out/checkpoint.l2o`` (the CLI's format)
    after every epoch. ``options``: ``horizon``, ``unroll``, ``meta_lr``, ``meta_lr_final`` (a half-cosine decay of the meta
    learning rate to this value over the epochs), ``meta_optimizer``, ``seed``,
    ``validate_every``, ``val_batch`` (built-in tasks), ``shards``, and the architecture (``lstm_hidden``,
    ``preprocess``, ``scale``, ``memory``, ``cell``, ``hlstm_hidden``, ``meta_loss``, ``loss_floor``, ``clip``,
    ``memory_grad``, ``policy_width``) — the flags of ``l2o train``. ``callback(record)`` gets a dict after every
    unroll (``{"kind": "unroll", "epoch", "unroll", "meta_loss"}``) and epoch (``{"kind": "epoch", "epoch",
    "validation"}``). Returns the trained optimizer (:func:`load` of the checkpoint)."""
    c = _context(ctx, precision)
    horizon, unroll = _l2o.train_defaults(optimizer)
    unrolls = max(1, int(options.get("horizon", horizon)) // int(options.get("unroll", unroll)))
    bar = _Progress(int(epochs) * unrolls, f"meta-training {optimizer}") if progress else None
    done = [0]

    def report(kind, epoch, unroll, value):
        if kind == "unroll":
            done[0] += 1
            if bar:
                bar.update(done[0], f"epoch {epoch + 1} meta-loss {value:.3e}")
            rec = {"kind": "unroll", "epoch": epoch, "unroll": unroll, "meta_loss": value}
        else:
            if bar and value == value:
                bar.write(f"epoch {epoch}: validation {value:.4e}")
            rec = {"kind": "epoch", "epoch": epoch, "validation": value}
        if callback is not None:
            callback(rec)

    common = dict(on_nonfinite=on_nonfinite, progress=report)
    try:
        if isinstance(task, Task):
            if task._sample is None:
                raise ValueError("meta-training needs fresh problems: give the Task a sample(seed) function")
            path = _l2o.train(
                c, optimizer, int(epochs), os.fspath(out), options,
                evaluate=_evaluator(task.fun, task.batch, task.dim, False), sample=task._native_sample,
                dim=task.dim, batch=task.batch, name=task.name, **common,
            )
        elif isinstance(task, str):
            path = _l2o.train(
                c, optimizer, int(epochs), os.fspath(out), options, task=task, dim=int(dim), batch=int(batch),
                **common,
            )
        else:
            raise ValueError(f"task must be a built-in task name or an l2o.Task, got {type(task).__name__}")
    finally:
        if bar:
            bar.close()
    return LearnedOptimizer(path, ctx=c)


def tune(fun, x0=None, method: str = "adam", steps: int = 100, grid=None, *, precision=None, ctx=None):
    """Tune a first-order method's learning rate by grid search ({1, 3} × 10^j, j = -4..0 unless ``grid``) on
    the problems ``fun`` from ``x0`` (or a built-in task): the rate with the best mean final loss after
    ``steps`` steps. Returns (best rate, [(rate, mean final loss), ...])."""
    c = _context(ctx, precision)
    X, single, evaluate, builtin = _problem(fun, x0)
    B, n = X.shape
    g = list(map(float, grid)) if grid is not None else _l2o.log_grid(-4, 0)
    return _l2o.tune(c, X.reshape(-1), n, B, method, int(steps), g, evaluate=evaluate, builtin=builtin)
