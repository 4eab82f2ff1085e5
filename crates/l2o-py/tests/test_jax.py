"""l2o.jax: a JAX model as a meta-training task and a learned optimizer stepping a pytree (skipped without jax)."""

from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="JAX is not installed (pip install jax)")
jnp = jax.numpy
jax.config.update("jax_enable_x64", True)

import l2o  # noqa: E402
import l2o.jax  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
B = 6


def loss(params, data):
    x, y = data
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def init(key):
    return {"w": jax.random.normal(key, (4,)) * 0.1, "b": jnp.zeros(())}


def sample(seed):
    k1, k2 = jax.random.split(jax.random.key(seed))
    x = jax.random.normal(k1, (B, 32, 4))
    return x, jnp.einsum("bmn,bn->bm", x, jax.random.normal(k2, (B, 4)))


def test_a_jax_model_is_a_task_whose_gradients_are_jaxs_own():
    t = l2o.jax.task(loss, init, sample, batch=B)
    assert (t.dim, t.batch) == (5, B)
    X = t.sample(3)
    f, G = t.fun(X)
    x, y = sample(3)
    for b in range(B):
        p = {"b": jnp.asarray(X[b, 0]), "w": jnp.asarray(X[b, 1:])}  # ravel_pytree orders the keys: b, w
        fb, gb = jax.value_and_grad(loss)(p, (x[b], y[b]))
        assert f[b] == pytest.approx(float(fb), rel=1e-12)
        np.testing.assert_allclose(G[b], np.r_[float(gb["b"]), np.asarray(gb["w"])], rtol=1e-12)
    with pytest.raises(ValueError, match="leading dimension"):
        l2o.jax.task(loss, init, lambda s: (jnp.zeros((2, 32, 4)), jnp.zeros((2, 32))), batch=B).sample(0)


def test_meta_train_on_a_jax_model_then_step_a_pytree(tmp_path):
    t = l2o.jax.task(loss, init, sample, batch=B)
    opt = l2o.train("lstm", t, epochs=3, out=str(tmp_path / "run"), horizon=20, unroll=10, progress=False)
    stepper = l2o.jax.Stepper(opt.path, precision="f64")
    ref = l2o.load(opt.path, precision="f64")
    x, y = sample(77)
    params, theta = init(jax.random.key(5)), None
    for _ in range(5):
        g = jax.grad(loss)(params, (x[0], y[0]))
        flat = np.asarray(jax.flatten_util.ravel_pytree(params)[0], dtype=np.float64)
        theta = ref.step(flat, np.asarray(jax.flatten_util.ravel_pytree(g)[0], dtype=np.float64))
        params = stepper.step(params, g)
        np.testing.assert_array_equal(np.asarray(jax.flatten_util.ravel_pytree(params)[0]), theta)


def test_a_pytree_steppers_state_resumes_bit_for_bit():
    ckpt = ROOT / "docs/results/l2l-quadratic/l2l-quadratic.l2o"
    x, y = sample(3)
    s = l2o.jax.Stepper(ckpt, precision="f64")
    params = init(jax.random.key(1))

    def go(st, params, k):
        for _ in range(k):
            params = st.step(params, jax.grad(loss)(params, (x[0], y[0])))
        return params

    params = go(s, params, 4)
    saved = s.state()
    want = go(s, params, 3)
    again = l2o.jax.Stepper(ckpt, precision="f64")
    again.load_state(saved)
    got = go(again, params, 3)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
