"""Two measurements of l2o.torch.Optimizer against torch.optim (issue 26's targets). Run from the repository root.

1. Overhead of step() with a trained L2L against torch.optim.Adam.step(), same model and gradients, CPU tensors
   (target: ≤ 20× Adam at 10⁶ parameters).
2. L-BFGS (strong Wolfe, history 5) against torch.optim.LBFGS on the digits MLP of examples/python/torch_digits.py
   (64-32-10 tanh, cross entropy, all 1,797 of scikit-learn's bundled digits, float64, 3 initializations): the
   iterations each needs to reach the loss both reach, and the wall-clock ratio (target: iterations within ±15 %).
   Needs scikit-learn; skipped without it."""
import statistics
import sys
import time

import torch

import l2o.torch

CKPT = sys.argv[1] if len(sys.argv) > 1 else "docs/results/l2l-quadratic/l2l-quadratic.l2o"
REPS = 20


def timed(opt, model):
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    opt.step()  # warm-up (pipelines, buffers)
    ts = []
    for _ in range(REPS):
        t0 = time.perf_counter()
        opt.step()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts)


print(f"{torch.__version__=}, adapter: {l2o.adapters()[0]['name']}, checkpoint {CKPT}, median / min of {REPS} steps")
print("| parameters | Adam.step ms | l2o.torch L2L step ms | ratio (median) | ratio (min) |")
print("|---|---|---|---|---|")
for rows, cols in [(1000, 100), (1000, 1000)]:
    torch.manual_seed(0)
    m = torch.nn.Linear(cols, rows, bias=False)
    n = sum(p.numel() for p in m.parameters())
    adam = timed(torch.optim.Adam(m.parameters(), lr=1e-3), m)
    ours = timed(l2o.torch.Optimizer(m.parameters(), CKPT), m)
    print(f"| {n:,} | {adam[0] * 1e3:.2f} | {ours[0] * 1e3:.2f} | {ours[0] / adam[0]:.1f} | {ours[1] / adam[1]:.1f} |")


def lbfgs_run(make_opt, model, X, y, iters):
    """One step(closure) per iteration (max_iter=1; the memory carries over in both): losses after each, time."""
    opt = make_opt(model)
    lossf = torch.nn.functional.cross_entropy

    def closure():
        opt.zero_grad()
        loss = lossf(model(X), y)
        loss.backward()
        return loss

    losses, t0 = [], time.perf_counter()
    for _ in range(iters):
        opt.step(closure)
        with torch.no_grad():
            losses.append(float(lossf(model(X), y)))
    return losses, time.perf_counter() - t0


try:
    from sklearn.datasets import load_digits
except ImportError:
    print("scikit-learn is not installed: the L-BFGS comparison on the digits MLP is skipped")
    sys.exit(0)
digits = load_digits()
X = torch.tensor(digits.data / 16.0, dtype=torch.float64)
y = torch.tensor(digits.target)
ITERS = 200
makers = {
    "torch": lambda m: torch.optim.LBFGS(m.parameters(), max_iter=1, history_size=5, line_search_fn="strong_wolfe",
                                         tolerance_grad=0, tolerance_change=0),
    "l2o": lambda m: l2o.torch.Optimizer(m.parameters(), method="lbfgs", max_iter=1, history_size=5,
                                         tolerance_grad=0),
}
print(f"\nL-BFGS on the digits MLP (2,410 parameters, float64, full batch), {ITERS} iterations, one per step(closure)")
print("| init | loss reached by both | torch iterations | l2o iterations | ratio | torch s | l2o s | time ratio |")
print("|---|---|---|---|---|---|---|---|")
for seed in range(3):
    res = {}
    for name, make in makers.items():
        torch.manual_seed(seed)
        m = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10)).double()
        res[name] = lbfgs_run(make, m, X, y, ITERS)
    target = max(res["torch"][0][-1], res["l2o"][0][-1])
    first = {k: next(i + 1 for i, v in enumerate(r[0]) if v <= target) for k, r in res.items()}
    print(f"| {seed} | {target:.3e} | {first['torch']} | {first['l2o']} | {first['l2o'] / first['torch']:.2f} "
          f"| {res['torch'][1]:.2f} | {res['l2o'][1]:.2f} | {res['l2o'][1] / res['torch'][1]:.1f} |")
