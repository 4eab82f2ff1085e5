"""Overhead of l2o.torch.Optimizer.step() with a trained L2L against torch.optim.Adam.step(), same model and
gradients, CPU tensors (issue 26's target: ≤ 20× Adam at 10⁶ parameters). Run from the repository root."""
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
