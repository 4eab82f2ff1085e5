"""l2o.load + .step: a trained L2L LSTM (docs/results/l2l-quadratic/l2l-quadratic.l2o) drives a loop you own — here numpy least
squares; with PyTorch pass p.detach().numpy() and p.grad.numpy() and copy the result back into p."""
from pathlib import Path

import numpy as np

import l2o

opt = l2o.load(Path(__file__).resolve().parents[2] / "docs/results/l2l-quadratic/l2l-quadratic.l2o")
print(opt, opt.info()["kind"])
rng = np.random.default_rng(0)
W, y = rng.standard_normal((10, 10)), rng.standard_normal(10)
theta = rng.standard_normal(10)
for t in range(100):
    r = W @ theta - y
    f, g = r @ r, 2 * W.T @ r
    if t % 20 == 0:
        print(f"step {t:3d}: f = {f:.4e}")
    theta = opt.step(theta, g)
print(f"step 100: f = {np.sum((W @ theta - y) ** 2):.4e}")
