"""Meta-train L2L on a small PyTorch MLP (scikit-learn's bundled digits, no download), then train fresh models
with it, with tuned torch.optim.Adam and with torch.optim.LBFGS; print the table and write a loss plot.

    pip install ./crates/l2o-py torch scikit-learn matplotlib
    python examples/python/torch_digits.py [OUT_DIR] [EPOCHS]

Each problem is one copy of a 64-32-10 tanh MLP with its own initialization and its own 256 training images.
Meta-training sees copies drawn from the training half of the digits; the comparison runs on held-out
initializations and images from the other half. Reported: the mean loss over the training horizon, and the final
loss, averaged over the held-out models.
"""

import os
import sys

import numpy as np
import torch
from sklearn.datasets import load_digits

import l2o
import l2o.torch

out = sys.argv[1] if len(sys.argv) > 1 else "out/torch-digits"
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 40
B, M, STEPS = 8, 256, 100
os.makedirs(out, exist_ok=True)

digits = load_digits()
X_all = torch.tensor(digits.data / 16.0, dtype=torch.float32)
y_all = torch.tensor(digits.target)
half = len(X_all) // 2
split = {"train": (X_all[:half], y_all[:half]), "test": (X_all[half:], y_all[half:])}

model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))
loss_fn = torch.nn.functional.cross_entropy


def init_copies(g, n):
    """n initializations in PyTorch's default (uniform ±1/√fan_in) scheme, one per copy."""
    out, params = {}, dict(model.named_parameters())
    for name, p in params.items():
        fan_in = params[name.replace("bias", "weight")].shape[1]  # a bias uses its layer's weight's fan-in
        a = 1.0 / fan_in**0.5
        out[name] = (torch.rand((n, *p.shape), generator=g) * 2 - 1) * a
    return out


def sampler(which):
    X, y = split[which]

    def sample(seed):
        g = torch.Generator().manual_seed(seed % (1 << 63))
        idx = torch.stack([torch.randperm(len(X), generator=g)[:M] for _ in range(B)])
        return init_copies(g, B), X[idx], y[idx]

    return sample


task = l2o.torch.task(model, loss_fn, sampler("train"), batch=B, name="digits-mlp")
print(f"meta-training L2L on {B} copies of a {task.dim}-parameter MLP for {epochs} epochs ...")
lstm = l2o.train("lstm", task, epochs=epochs, out=os.path.join(out, "train"), horizon=STEPS, unroll=10,
                 meta_lr=3e-3, meta_lr_final=3e-4)  # unrolls of 10: the trajectory of 8 × 2,410 fits 128 MiB

# held-out models: initializations and images from the test half
held = sampler("test")(12345)


def curves(make_opt, closure_based=False):
    """Loss per step of every held-out copy, each trained by its own optimizer."""
    init, Xs, ys = held
    all_losses = []
    for b in range(B):
        m = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))
        with torch.no_grad():
            for name, p in m.named_parameters():
                p.copy_(init[name][b])
        opt = make_opt(m)
        losses = []

        def closure():
            opt.zero_grad()
            loss = loss_fn(m(Xs[b]), ys[b])
            loss.backward()
            return loss

        for _ in range(STEPS):
            if closure_based:
                opt.step(closure)
                with torch.no_grad():
                    losses.append(float(loss_fn(m(Xs[b]), ys[b])))
            else:
                losses.append(float(closure().detach()))
                opt.step()
        all_losses.append(losses)
    return np.array(all_losses)


# Adam's rate tuned on training copies ({1, 3} × 10^-4..-1), never on the held-out ones
tune_init, tX, ty = sampler("train")(999)
best = None
for lr in [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]:
    finals = []
    for b in range(4):
        m = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))
        with torch.no_grad():
            for name, p in m.named_parameters():
                p.copy_(tune_init[name][b])
        opt = torch.optim.Adam(m.parameters(), lr=lr)
        for _ in range(STEPS):
            opt.zero_grad()
            loss = loss_fn(m(tX[b]), ty[b])
            loss.backward()
            opt.step()
        finals.append(float(loss.detach()))
    if best is None or np.mean(finals) < best[1]:
        best = (lr, float(np.mean(finals)))
print(f"Adam's tuned rate: {best[0]}")

runs = {
    "L2L (meta-trained here)": curves(lambda m: l2o.torch.Optimizer(m.parameters(), lstm.path)),
    f"Adam (lr={best[0]})": curves(lambda m: torch.optim.Adam(m.parameters(), lr=best[0])),
    "torch.optim.LBFGS (strong Wolfe, 1 iteration per step)": curves(
        lambda m: torch.optim.LBFGS(m.parameters(), max_iter=1, history_size=5, line_search_fn="strong_wolfe"),
        closure_based=True,
    ),
}
print(f"\n{B} held-out models, {STEPS} steps each")
print("| optimizer | mean loss over the steps | final loss |")
print("|---|---|---|")
for name, L in runs.items():
    print(f"| {name} | {L.mean():.4f} | {L[:, -1].mean():.4f} |")
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, L in runs.items():
        plt.semilogy(L.mean(0), label=name)
    plt.xlabel("step")
    plt.ylabel("training loss (mean over held-out models)")
    plt.legend()
    plt.title("digits 64-32-10 MLP")
    plt.savefig(os.path.join(out, "loss.png"), dpi=120)
    print(f"wrote {os.path.join(out, 'loss.png')}")
except ImportError:
    print("matplotlib is not installed: no plot (pip install matplotlib)")
