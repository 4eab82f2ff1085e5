"""PyTorch front end: an ``torch.optim.Optimizer`` that steps a model's parameters with l2o.

Five lines, with a checkpoint written by ``l2o train`` (L2L or the Hilbert LSTM)::

    import l2o.torch
    opt = l2o.torch.Optimizer(model.parameters(), "run/checkpoint.l2o")
    for x, y in data:
        opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()

or L-BFGS, driven through a closure exactly like ``torch.optim.LBFGS``::

    opt = l2o.torch.Optimizer(model.parameters(), method="lbfgs", max_iter=100)
    def closure():
        opt.zero_grad(); loss = loss_fn(model(x), y); loss.backward(); return loss
    opt.step(closure)

Each parameter group is stepped as one vector (its parameters flattened in order) by its own learned optimizer,
whose state (LSTM cells, memory of pairs) lives on l2o's device; l2o runs on its own adapter through wgpu, so the
parameters must be CPU tensors (float32 or float64). ``method="lbfgs"`` or an L-BFGS-π checkpoint runs
``max_iter`` iterations per ``step(closure)`` with l2o's line search (``line_search="wolfe"`` by default, the
strong Wolfe conditions as ``torch.optim.LBFGS(line_search_fn="strong_wolfe")``), calling the closure once per
function evaluation; the L-BFGS memory and line search carry over from one ``step`` to the next, as in
``torch.optim.LBFGS`` (the run restarts when the parameters were changed outside the optimizer).

:func:`task` makes a model a meta-training task: B copies of its parameters, evaluated together with
``torch.func.functional_call`` and ``vmap``, so ``l2o.train("lstm", l2o.torch.task(...), epochs=...)`` meta-trains
a learned optimizer on your own model.

``state_dict()`` carries each group's device state (the LSTM cells, the Hilbert LSTM's memory) next to torch's
bookkeeping; ``load_state_dict`` continues bit for bit once the model holds the parameters of the same moment.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import numpy as np
import torch

from . import LearnedOptimizer, Task, _context, _l2o

__all__ = ["Optimizer", "task"]


def _check_group(params, g: int) -> None:
    for i, p in enumerate(params):
        _check(p, g, i)


def _check(p: torch.Tensor, g: int, i: int) -> None:
    if p.device.type != "cpu":
        raise ValueError(
            f"parameter {i} of group {g} is on {p.device}: l2o steps CPU tensors (it runs on its own adapter "
            "through wgpu); move the model to the CPU, e.g. model.cpu()"
        )
    if p.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"parameter {i} of group {g} is {p.dtype}: l2o steps float32 or float64 parameters")
    if p.grad is not None and p.grad.is_sparse:
        raise ValueError(
            f"parameter {i} of group {g} has a sparse gradient: l2o steps dense gradients (use a dense "
            "embedding, or torch.optim.SparseAdam for that parameter)"
        )


def _scalar(loss) -> float:
    """The closure's loss as a float (a 0-d tensor, detached, or a number)."""
    if isinstance(loss, torch.Tensor):
        if loss.numel() != 1:
            raise ValueError(f"the closure returned a loss of shape {tuple(loss.shape)}: return a scalar")
        return float(loss.detach())
    return float(loss)


def _flat(ts) -> np.ndarray:
    """The tensors as one float64 vector (n,) (detached; one copy)."""
    return torch.cat([t.detach().reshape(-1).to(torch.float64) for t in ts]).numpy()


def _unflat(params, v: np.ndarray) -> None:
    """Write the vector back into the parameters, in order."""
    at = 0
    with torch.no_grad():
        for p in params:
            k = p.numel()
            p.copy_(torch.from_numpy(v[at : at + k]).view_as(p))
            at += k


class Optimizer(torch.optim.Optimizer):
    """A learned optimizer (``checkpoint``: L2L, Hilbert LSTM or L-BFGS-π, from ``l2o train``) or ``method=
    "lbfgs"`` as a ``torch.optim.Optimizer``.

    ``precision``: "f32" or "f64" arithmetic on the device (default: f64 when every parameter is float64, else
    f32). L-BFGS options (``method="lbfgs"`` or an L-BFGS-π checkpoint): ``max_iter`` iterations per
    ``step(closure)``, ``history_size`` (m), ``line_search`` ("wolfe", "armijo" or "constant"),
    ``tolerance_grad`` (a group stops once ‖∇f‖ < it). ``chunk``: L2L steps a group in pieces of this many
    coordinates (the same numbers; each piece's state must fit one device buffer)."""

    def __init__(
        self,
        params,
        checkpoint=None,
        *,
        method: Optional[str] = None,
        max_iter: int = 20,
        history_size: int = 5,
        line_search: str = "wolfe",
        tolerance_grad: float = 1e-7,
        chunk: int = 100_000,
        precision: Optional[str] = None,
        ctx=None,
    ):
        if (checkpoint is None) == (method is None):
            raise ValueError('give a checkpoint (a path written by l2o train) or method="lbfgs", not both')
        if method is not None and method != "lbfgs":
            raise ValueError(f'method {method!r}: l2o.torch.Optimizer takes method="lbfgs" (or a checkpoint)')
        if int(max_iter) < 1:
            raise ValueError(f"max_iter must be at least 1, got {max_iter}")
        super().__init__(params, {})
        for g, group in enumerate(self.param_groups):
            _check_group(group["params"], g)
        if precision is None:
            all64 = all(p.dtype == torch.float64 for grp in self.param_groups for p in grp["params"])
            precision = "f64" if all64 else "f32"
        self._ctx = _context(ctx, precision)
        self._checkpoint = None if checkpoint is None else os.fspath(checkpoint)
        self._kind = "lbfgs"
        if self._checkpoint is not None:
            # one learned optimizer per group (its state belongs to that group's flat vector); L2L is
            # coordinatewise, so a long group is stepped in chunks of `chunk` coordinates, each with its own
            # state — the same numbers as one piece, and each chunk's LSTM state fits the device's buffer
            # limit (lavapipe: 128 MiB, i.e. 2×10⁵ coordinates of a 2-layer H = 20 LSTM in f32)
            self._learned = [[LearnedOptimizer(self._checkpoint, ctx=self._ctx)] for _ in self.param_groups]
            self._kind = self._learned[0][0].kind
            self._chunk = int(chunk) if self._kind == "lstm" else None
            if self._chunk is not None and self._chunk < 1:
                raise ValueError(f"chunk must be positive, got {chunk}")
        self._lbfgs = dict(
            steps=int(max_iter), history=int(history_size), line_search=line_search, gtol=float(tolerance_grad)
        )
        # L-BFGS: each group's paused run and the parameters its last step left (see _line_search_step)
        self._steppers = [None for _ in self.param_groups]
        self._last = [None for _ in self.param_groups]

    @property
    def kind(self) -> str:
        """"lstm" (L2L), "hlstm" (the Hilbert LSTM), "lbfgs-policy" (L-BFGS-π) or "lbfgs"."""
        return self._kind

    def state_dict(self) -> dict:
        """torch's optimizer state (per-parameter counters, the groups' options) plus, under ``"l2o"``, the device
        state of each group's learned optimizer (its LSTM cells or Hilbert LSTM memory, as uint8 and float64
        tensors: ``torch.save`` / ``torch.load`` keep it, ``weights_only`` loading included). Save it with the
        model's ``state_dict`` of the same moment: the saved state belongs to the parameters the last ``step``
        left. L-BFGS has no device state here (its steps branch on values read back, so its run cannot be
        replayed): after ``load_state_dict`` its memory starts empty."""
        sd = super().state_dict()
        if self._checkpoint is not None:
            sd["l2o"] = {
                "kind": self._kind,
                "chunk": self._chunk,
                "groups": [[_state_to_torch(o.state()) for o in opts] for opts in self._learned],
            }
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a :meth:`state_dict` (an optimizer of the same checkpoint, parameter groups and precision): the
        next ``step`` continues each group's learned optimizer bit for bit, once the model holds the parameters of
        the same moment."""
        sd = dict(state_dict)
        dev = sd.pop("l2o", None)
        if dev is not None:
            if self._checkpoint is None:
                raise ValueError("load_state_dict: this state holds a learned optimizer's device state; this "
                                 "optimizer runs L-BFGS")
            if dev.get("kind") != self._kind or dev.get("chunk") != self._chunk:
                raise ValueError(
                    f"load_state_dict: the state is of a {dev.get('kind')} optimizer stepping chunks of "
                    f"{dev.get('chunk')}; this one is {self._kind} with chunks of {self._chunk}"
                )
            if len(dev["groups"]) != len(self.param_groups):
                raise ValueError(
                    f"load_state_dict: the state has {len(dev['groups'])} parameter groups, this optimizer "
                    f"{len(self.param_groups)}"
                )
        elif self._checkpoint is not None:
            raise ValueError("load_state_dict: the state has no \"l2o\" device state (saved by another optimizer?)")
        super().load_state_dict(sd)
        if dev is None:
            return
        for g, saved in enumerate(dev["groups"]):
            opts = [LearnedOptimizer(self._checkpoint, ctx=self._ctx) for _ in saved] or [
                LearnedOptimizer(self._checkpoint, ctx=self._ctx)
            ]
            for o, st in zip(opts, saved):
                o.load_state(_state_from_torch(st))
            self._learned[g] = opts

    def step(self, closure: Optional[Callable] = None):
        """One step of every group. L2L: after ``backward()``; the Hilbert LSTM reads the loss, so give
        ``closure`` (it is called once, as torch's optimizers do); L-BFGS and L-BFGS-π need ``closure`` (called
        once per function evaluation). Returns the closure's loss (the first evaluation's, for L-BFGS), or None."""
        if self._kind in ("lbfgs", "lbfgs-policy"):
            if closure is None:
                raise ValueError(f"{self._kind} evaluates the loss itself: call step(closure), as torch.optim.LBFGS")
            return self._line_search_step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        elif self._kind == "hlstm":
            raise ValueError("the Hilbert LSTM reads the loss: call step(closure), the closure returning the loss")
        for g, (group, opt) in enumerate(zip(self.param_groups, self._learned)):
            params = group["params"]
            _check_group(params, g)
            missing = [i for i, p in enumerate(params) if p.grad is None]
            if len(missing) == len(params):
                continue  # nothing of this group took part in the loss
            if missing:
                raise ValueError(
                    f"parameters {missing} of group {g} have no gradient while others do: l2o steps a group as "
                    "one vector, so every parameter of it needs .grad (freeze unused ones with "
                    "requires_grad_(False) and leave them out of the optimizer)"
                )
            f = None if loss is None else np.array([_scalar(loss)])
            theta, grad = _flat(params), _flat(p.grad for p in params)
            size = self._chunk or theta.size
            pieces = range(0, theta.size, size)
            while len(opt) < len(pieces):
                opt.append(LearnedOptimizer(self._checkpoint, ctx=self._ctx))
            new = np.empty_like(theta)
            for o, a in zip(opt, pieces):
                try:
                    new[a : a + size] = o.step(theta[None, a : a + size], grad[None, a : a + size], f)[0]
                except ValueError as e:
                    if "not the point" not in str(e):
                        raise
                    raise ValueError(
                        f"group {g}: the parameters are not those the optimizer's state belongs to (the ones its "
                        "last step left): after load_state_dict, load the model's state_dict saved at the same "
                        "moment; to start the learned optimizer afresh from changed parameters, build a new "
                        "l2o.torch.Optimizer"
                    ) from e
            _unflat(params, new)
            self.state[params[0]]["step"] = opt[0].steps
        return loss

    def _line_search_step(self, closure: Callable):
        """L-BFGS (or L-BFGS-π) for up to ``max_iter`` iterations per group, its memory carried over from the
        previous call as in ``torch.optim.LBFGS``: one l2o run per group, driven one function evaluation at a
        time (:class:`l2o._l2o.MethodStepper`), paused between calls at the start of an iteration. The closure is
        first evaluated at the parameters the last call left (the loss returned, the stop test on ‖∇f‖); the
        model is left at the last accepted iterate."""
        orig = None
        for g, group in enumerate(self.param_groups):
            params = group["params"]
            _check_group(params, g)
            st = self.state[params[0]]
            st.setdefault("n_iter", 0)
            st.setdefault("func_evals", 0)

            def evaluate():
                for p in params:
                    p.grad = None
                with torch.enable_grad():
                    loss = closure()
                grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
                return loss, np.array([_scalar(loss)]), _flat(grads)

            theta = _flat(params)
            loss, f, grad = evaluate()
            st["func_evals"] += 1
            orig = loss if orig is None else orig
            if not np.isfinite(f[0]):
                raise ValueError(f"group {g}: the closure returned a non-finite loss ({f[0]}) at the parameters")
            if np.linalg.norm(grad) <= self._lbfgs["gtol"]:
                st["status"] = "converged"
                continue
            s = self._steppers[g]
            if s is not None and not np.array_equal(theta, self._last[g]):
                s = None  # the parameters were changed outside the optimizer (loaded, edited): a new run
            if s is None or s.pending is None:
                method = self._checkpoint if self._kind == "lbfgs-policy" else "lbfgs"
                s = _l2o.MethodStepper(
                    self._ctx, method, theta.size, 1,
                    line_search=self._lbfgs["line_search"], history=self._lbfgs["history"],
                )
                self._steppers[g] = s
                s.step(theta, grad, f)  # the run's evaluation at θ₀
            pending = s.pending
            last = theta
            k0, n0 = s.position[0], st["n_iter"]
            status = "running"
            while True:
                k, e = s.position
                if e == 0 and k > k0:
                    # iteration k − 1 ended at the point evaluated last
                    if np.linalg.norm(grad) <= self._lbfgs["gtol"]:
                        status = "converged"
                        break
                    if np.array_equal(pending, last):
                        status = "stalled"  # no step the line search could take (the run is frozen)
                        break
                    if k - k0 >= self._lbfgs["steps"]:
                        break
                _unflat(params, pending)
                st["n_iter"] = n0 + int(k - k0) + 1  # the iteration in progress, as torch counts during its own
                loss, f, grad = evaluate()
                st["func_evals"] += 1
                last = pending
                pending = s.step(pending, grad, f)
            _unflat(params, last)
            self._last[g] = _flat(params)
            st["n_iter"] = n0 + int(k - k0)
            st["status"] = status
        return orig


def _state_to_torch(st: Optional[dict]) -> Optional[dict]:
    """A learned optimizer's state with its bytes and arrays as tensors (what ``torch.load(weights_only=True)``
    reads back)."""
    if st is None:
        return None
    out = dict(st)
    out["pending"] = torch.from_numpy(np.asarray(st["pending"], dtype=np.float64).copy())
    out["buffers"] = [torch.frombuffer(bytearray(b), dtype=torch.uint8) if len(b) else torch.zeros(0, dtype=torch.uint8)
                      for b in st["buffers"]]
    return out


def _state_from_torch(st: Optional[dict]) -> Optional[dict]:
    if st is None:
        return None
    out = dict(st)
    out["pending"] = np.ascontiguousarray(torch.as_tensor(st["pending"]).to(torch.float64).numpy())
    out["buffers"] = [bytes(torch.as_tensor(b).to(torch.uint8).numpy().tobytes()) for b in st["buffers"]]
    return out


def task(model: torch.nn.Module, loss_fn: Callable, sample: Callable, *, batch: int, name: str = "torch") -> Task:
    """An :class:`l2o.Task` whose ``batch`` problems are copies of ``model``'s parameters.

    ``sample(seed) -> (init, inputs, targets)`` draws the copies: ``init`` maps each parameter name of
    ``model.named_parameters()`` to a tensor of shape (batch, *parameter shape) (each copy's starting point), and
    ``inputs`` / ``targets`` hold each copy's data with a leading dimension of batch. Problem b's loss is
    ``loss_fn(model(inputs[b]) with parameters init[b], targets[b])``; all B losses and gradients come from one
    ``torch.func.vmap`` of ``torch.func.grad_and_value`` over the copies, per evaluation. ``sample`` must be a
    pure function of ``seed`` (use ``torch.Generator().manual_seed(seed)``)."""
    from torch.func import functional_call, grad_and_value, vmap

    names = [k for k, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    dtype = next(model.parameters()).dtype
    dim = sum(sizes)
    B = int(batch)
    data: dict = {}

    def loss_one(params, x, y):
        return loss_fn(functional_call(model, params, (x,)), y)

    both = vmap(grad_and_value(loss_one))

    def unflat(X: np.ndarray) -> dict:
        T = torch.from_numpy(np.ascontiguousarray(X)).to(dtype)
        out, at = {}, 0
        for k, shp, n in zip(names, shapes, sizes):
            out[k] = T[:, at : at + n].reshape(B, *shp)
            at += n
        return out

    def fun(X: np.ndarray):
        if "inputs" not in data:
            raise ValueError("l2o.torch.task: fun called before sample(seed) drew the data")
        grads, loss = both(unflat(X), data["inputs"], data["targets"])
        G = torch.cat([grads[k].reshape(B, -1) for k in names], dim=1)
        return loss.detach().to(torch.float64).numpy(), G.detach().to(torch.float64).numpy()

    def draw(seed: int) -> np.ndarray:
        init, inputs, targets = sample(int(seed))
        missing = [k for k in names if k not in init]
        if missing:
            raise ValueError(f"sample({seed}) gave no initialization for parameters {missing}")
        for k, shp in zip(names, shapes):
            if tuple(init[k].shape) != (B, *shp):
                raise ValueError(
                    f"sample({seed}): init[{k!r}] has shape {tuple(init[k].shape)}, expected {(B, *shp)}"
                )
        for what, t in (("inputs", inputs), ("targets", targets)):
            if t.shape[0] != B:
                raise ValueError(f"sample({seed}): {what} has leading dimension {t.shape[0]}, expected {B}")
        data["inputs"], data["targets"] = inputs, targets
        return torch.cat([init[k].detach().reshape(B, -1) for k in names], dim=1).to(torch.float64).numpy()

    return Task(fun, draw, dim=dim, batch=B, name=name)
