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
    """One step(closure) of `iters` iterations. Returns the loss of each iterate (the last evaluation of each
    iteration, read from the optimizer's live n_iter: both count the iteration in progress), evaluations, time."""
    opt = make_opt(model)
    lossf = torch.nn.functional.cross_entropy
    state = lambda: opt.state[next(iter(model.parameters()))]  # noqa: E731
    seen = {}

    def closure():
        opt.zero_grad()
        loss = lossf(model(X), y)
        loss.backward()
        seen[state().get("n_iter", 0)] = float(loss.detach())
        return loss

    t0 = time.perf_counter()
    opt.step(closure)
    dt = time.perf_counter() - t0
    return [seen[k] for k in sorted(seen)], state()["func_evals"], dt


try:
    from sklearn.datasets import load_digits
except ImportError:
    print("scikit-learn is not installed: the L-BFGS comparison on the digits MLP is skipped")
    sys.exit(0)
digits = load_digits()
X = torch.tensor(digits.data / 16.0, dtype=torch.float64)
y = torch.tensor(digits.target)
ITERS = 200
makers = {  # torch's max_eval raised from 1.25 × max_iter so that only the iterations bound both
    "torch": lambda m: torch.optim.LBFGS(m.parameters(), max_iter=ITERS, max_eval=10 * ITERS, history_size=5,
                                         line_search_fn="strong_wolfe", tolerance_grad=0, tolerance_change=0),
    "l2o": lambda m: l2o.torch.Optimizer(m.parameters(), method="lbfgs", max_iter=ITERS, history_size=5,
                                         tolerance_grad=0),
}
LEVELS = [1e-1, 1e-2, 1e-4, 1e-6, 1e-8]
print(f"\nL-BFGS on the digits MLP (2,410 parameters, float64, full batch), one step(closure) of up to {ITERS} "
      "iterations; iterations to reach each loss, torch / l2o")
print("| init | " + " | ".join(f"loss ≤ {v:g}" for v in LEVELS) + " | evaluations, torch / l2o | seconds, torch / l2o |")
print("|---" * (len(LEVELS) + 3) + "|")
tot = {"torch": 0, "l2o": 0}
for seed in range(3):
    res = {}
    for name, make in makers.items():
        torch.manual_seed(seed)
        m = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10)).double()
        res[name] = lbfgs_run(make, m, X, y, ITERS)
    # entry i of the losses is iterate i (0: the start): the first iterate at or below each level
    first = {k: [next((i for i, v in enumerate(r[0]) if v <= lv), None) for lv in LEVELS] for k, r in res.items()}
    for k in tot:
        tot[k] += sum(i for i in first[k] if i is not None)
    t, o = res["torch"], res["l2o"]
    cells = " | ".join(f"{a} / {b}" for a, b in zip(first["torch"], first["l2o"]))
    print(f"| {seed} | {cells} | {t[1]} / {o[1]} | {t[2]:.2f} / {o[2]:.2f} |")
print(f"iterations summed over the levels and initializations: torch {tot['torch']}, l2o {tot['l2o']} "
      f"(l2o / torch = {tot['l2o'] / tot['torch']:.2f})")
