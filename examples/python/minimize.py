"""l2o.minimize: 64 Rosenbrock problems at once, written in numpy, with L-BFGS (Wolfe) and with tuned Adam."""
import numpy as np

import l2o


def rosenbrock(X):  # X: (B, n), n even → f (B,), grad (B, n)
    a, b = X[:, 0::2], X[:, 1::2]
    d, e = b - a * a, 1.0 - a
    G = np.empty_like(X)
    G[:, 0::2], G[:, 1::2] = -400.0 * a * d - 2.0 * e, 200.0 * d
    return (100.0 * d * d + e * e).sum(axis=1), G


x0 = np.tile([-1.2, 1.0], (64, 5)) + 0.1 * np.random.default_rng(0).standard_normal((64, 10))
r = l2o.minimize(rosenbrock, x0, method="lbfgs", steps=300, line_search="wolfe", gtol=1e-8, precision="f64")
print(r)
print("L-BFGS (f64): mean final loss", r.fun.mean(), "iterations", r.nit.mean(), "evaluations", r.nfev.mean())
lr, _ = l2o.tune(rosenbrock, x0, "adam", steps=100)
a = l2o.minimize(rosenbrock, x0, method="adam", lr=lr, steps=100)
print(f"Adam (lr {lr}): mean final loss {a.fun.mean():.3e}; per-step mean loss {a.trace['mean'][::20]}")
