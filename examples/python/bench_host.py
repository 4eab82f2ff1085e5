"""Per-evaluation cost of a Python function against the built-in kernel it copies (Rosenbrock, SGD)."""
import time

import numpy as np

import l2o


def rosenbrock(X):
    a, b = X[:, 0::2], X[:, 1::2]
    d, e = b - a * a, 1.0 - a
    G = np.empty_like(X)
    G[:, 0::2], G[:, 1::2] = -400.0 * a * d - 2.0 * e, 200.0 * d
    return (100.0 * d * d + e * e).sum(axis=1), G


steps = 200
print("| n | B | built-in ms/eval | numpy fun ms/eval | python host task ms/eval | overhead ms/eval |")
print("|---|---|---|---|---|---|")
for n, B in [(10, 1), (100, 16), (1000, 256), (100000, 16)]:
    t = l2o.task("rosenbrock", dim=n, batch=B, seed=1)
    x0 = t.x0().reshape(B, n)
    l2o.minimize(t, method="sgd", lr=1e-5, steps=5)  # warm-up
    t0 = time.perf_counter(); l2o.minimize(t, method="sgd", lr=1e-5, steps=steps); tb = time.perf_counter() - t0
    t0 = time.perf_counter(); l2o.minimize(rosenbrock, x0, method="sgd", lr=1e-5, steps=steps)
    th = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(50):
        rosenbrock(x0)
    tf = (time.perf_counter() - t0) / 50
    e = steps + 1
    print(f"| {n} | {B} | {tb / e * 1e3:.3f} | {tf * 1e3:.3f} | {th / e * 1e3:.3f} | {(th - tb) / e * 1e3 - tf * 1e3:.3f} |")
