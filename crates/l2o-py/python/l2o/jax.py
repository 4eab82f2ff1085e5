"""JAX front end: JAX models as meta-training tasks, and a learned optimizer stepping a pytree.

::

    import jax, jax.numpy as jnp, l2o, l2o.jax
    def loss(params, data):                      # one copy: params and data of one problem
        x, y = data
        return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)
    init = lambda key: {"w": jax.random.normal(key, (4,)) * 0.1, "b": jnp.zeros(())}
    def sample(seed):                            # every copy's data, leading dimension B
        k1, k2 = jax.random.split(jax.random.key(seed))
        x = jax.random.normal(k1, (16, 32, 4)); return x, x @ jax.random.normal(k2, (16, 4))
    opt = l2o.train("lstm", l2o.jax.task(loss, init, sample, batch=16), epochs=50, out="run")
    stepper = l2o.jax.Stepper(opt.path)          # then, in your own loop:
    params = stepper.step(params, jax.grad(loss)(params, data))

The B copies are evaluated together, one ``jax.jit(jax.vmap(jax.value_and_grad(loss)))`` call per evaluation;
parameters travel to l2o as one flat float64 vector per copy (``jax.flatten_util.ravel_pytree``).
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from . import LearnedOptimizer, Task

__all__ = ["task", "Stepper"]


def task(loss_fn: Callable, init_fn: Callable, sample: Callable, *, batch: int, name: str = "jax") -> Task:
    """An :class:`l2o.Task` of ``batch`` copies of a JAX model.

    ``loss_fn(params, data) -> scalar`` for one copy; ``init_fn(key) -> params`` (a pytree) draws one copy's
    starting point, called for ``batch`` keys split from ``jax.random.key(seed)``; ``sample(seed) -> data`` draws
    every copy's data (a pytree whose leaves have a leading dimension of ``batch``). Both must be pure functions
    of the seed; seeds are reduced to [0, 2^63) so that ``jax.random.key(seed)`` takes them."""
    B = int(batch)
    if B < 1:
        raise ValueError(f"batch must be positive, got {batch}")
    one = init_fn(jax.random.key(0))
    flat0, unravel = ravel_pytree(one)
    dim = int(flat0.size)
    vg = jax.jit(jax.vmap(jax.value_and_grad(lambda v, d: loss_fn(unravel(v), d))))
    data: dict = {}

    def fun(X: np.ndarray):
        if "data" not in data:
            raise ValueError("l2o.jax.task: fun called before sample(seed) drew the data")
        f, g = vg(jnp.asarray(X, dtype=flat0.dtype), data["data"])
        return np.asarray(f, dtype=np.float64), np.asarray(g, dtype=np.float64)

    def draw(seed: int) -> np.ndarray:
        seed = int(seed) % (1 << 63)  # meta-training's seeds are 64-bit; jax.random.key takes int64
        keys = jax.random.split(jax.random.key(seed), B)
        params = jax.vmap(lambda k: ravel_pytree(init_fn(k))[0])(keys)
        d = sample(seed)
        bad = [leaf.shape for leaf in jax.tree_util.tree_leaves(d) if not leaf.shape or leaf.shape[0] != B]
        if bad:
            raise ValueError(f"sample({seed}) returned data leaves of shapes {bad}: each needs leading dimension {B}")
        data["data"] = d
        return np.asarray(params, dtype=np.float64)

    return Task(fun, draw, dim=dim, batch=B, name=name)


class Stepper:
    """A trained learned optimizer (L2L or Hilbert LSTM checkpoint) stepping a pytree of parameters:
    ``params = stepper.step(params, grads[, loss])``. The optimizer's state lives on the device, for one
    parameter pytree at a time (``reset()`` to start again)."""

    def __init__(self, checkpoint, *, precision: Optional[str] = None, ctx=None):
        self._opt = LearnedOptimizer(os.fspath(checkpoint), ctx=ctx, precision=precision)

    @property
    def kind(self) -> str:
        return self._opt.kind

    def step(self, params, grads, loss=None):
        v, unravel = ravel_pytree(params)
        g, _ = ravel_pytree(grads)
        if g.shape != v.shape:
            raise ValueError(f"grads flatten to {g.shape[0]} values, params to {v.shape[0]}: same pytree needed")
        f = None if loss is None else [float(loss)]
        new = self._opt.step(np.asarray(v, dtype=np.float64), np.asarray(g, dtype=np.float64), f)
        return unravel(jnp.asarray(new, dtype=v.dtype))

    def reset(self) -> None:
        self._opt.reset()

    def state(self):
        """The device state (a picklable dict; None before the first step): :meth:`load_state` continues from it
        bit for bit, given the parameters of the same moment (see ``LearnedOptimizer.state``)."""
        return self._opt.state()

    def load_state(self, state) -> None:
        self._opt.load_state(state)
