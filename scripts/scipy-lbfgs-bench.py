"""Batched L-BFGS against scipy's L-BFGS-B called once per problem, on the same problems, in the same minute.

The scipy side of `l2o bench --lbfgs` (BENCHMARKS.md, "Batched L-BFGS"): B problems of l2o's built-in extended
Rosenbrock task (n even; θ₀ = (−1.2, 1, …) + N(0, 0.1²), seed 1), strong-Wolfe L-BFGS with m = 5 for a fixed number
of iterations, in f64 —
  l2o:   l2o.minimize(task, method="lbfgs", line_search="wolfe", history=5, steps=K, precision="f64") on all B
         at once (the task's own kernels evaluate f and ∇f on the device),
  scipy: scipy.optimize.minimize(method="L-BFGS-B", jac=True, maxcor=5, maxiter=K) per problem, with the same
         f and ∇f written in numpy (checked against the task's kernels at θ₀ before timing).
Prints problem-iterations per second of each and their ratio. Needs the l2o package (bash scripts/test-python.sh
builds one) and scipy: `python scripts/scipy-lbfgs-bench.py [--dim 100] [--batch 256] [--steps 200]`.
"""

import argparse
import time

import numpy as np
import scipy.optimize

import l2o


def rosenbrock(x):
    """Extended Rosenbrock (l2o_tasks::Rosenbrock): Σ_i 100 (x_{2i+1} − x_{2i}²)² + (1 − x_{2i})², and ∇f."""
    a, b = x[0::2], x[1::2]
    d, e = b - a * a, 1.0 - a
    g = np.empty_like(x)
    g[0::2] = -400.0 * a * d - 2.0 * e
    g[1::2] = 200.0 * d
    return float(np.sum(100.0 * d * d + e * e)), g


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=200)
    a = ap.parse_args()
    task = l2o.task("rosenbrock", dim=a.dim, batch=a.batch, seed=1, precision="f64")
    x0 = np.asarray(task.x0()).reshape(a.batch, a.dim)
    f_dev, g_dev = task.evaluate(x0.reshape(-1))
    for b in range(a.batch):
        f, g = rosenbrock(x0[b])
        assert abs(f - f_dev[b]) <= 1e-12 * max(1.0, abs(f)), (b, f, f_dev[b])
        assert np.allclose(g, np.asarray(g_dev).reshape(a.batch, a.dim)[b], rtol=1e-12, atol=1e-12)

    l2o.minimize(task, method="lbfgs", line_search="wolfe", history=5, steps=2, precision="f64")  # warm-up
    t0 = time.perf_counter()
    r = l2o.minimize(task, method="lbfgs", line_search="wolfe", history=5, steps=a.steps, precision="f64")
    t_l2o = time.perf_counter() - t0
    it_l2o = int(np.sum(r.nit))

    t0 = time.perf_counter()
    it_scipy, f_scipy = 0, []
    for b in range(a.batch):
        s = scipy.optimize.minimize(
            rosenbrock, x0[b], jac=True, method="L-BFGS-B",
            options={"maxcor": 5, "maxiter": a.steps, "gtol": 0.0, "ftol": 0.0},
        )
        it_scipy += int(s.nit)
        f_scipy.append(s.fun)
    t_scipy = time.perf_counter() - t0

    print(f"extended Rosenbrock n = {a.dim}, B = {a.batch}, at most {a.steps} iterations, f64")
    print(f"l2o, all B at once: {t_l2o:.3f} s, "
          f"{it_l2o} problem-iterations, {it_l2o / t_l2o:.0f}/s, median f {np.median(r.fun):.3e}")
    print(f"scipy L-BFGS-B, one problem at a time: {t_scipy:.3f} s, {it_scipy} problem-iterations, "
          f"{it_scipy / t_scipy:.0f}/s, median f {np.median(f_scipy):.3e}")
    print(f"l2o / scipy problem-iterations per second: {(it_l2o / t_l2o) / (it_scipy / t_scipy):.2f}x")


if __name__ == "__main__":
    main()
