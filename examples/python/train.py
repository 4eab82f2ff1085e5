"""l2o.train on a problem of your own: L2L meta-trained on numpy least squares with a fresh random design matrix
per problem, then held-out problems against Adam with a tuned learning rate. `python train.py [EPOCHS]`."""
import sys

import numpy as np

import l2o

N, M, B = 10, 20, 16
data = {}


def sample(seed):  # a fresh batch of problems (and its x0) from a seed: y_b = A_b x*_b
    rng = np.random.default_rng(seed)
    data["A"] = rng.standard_normal((B, M, N)) / np.sqrt(M)
    data["y"] = np.einsum("bmn,bn->bm", data["A"], rng.standard_normal((B, N)))
    return np.zeros((B, N))


def fun(X):  # f_b = |A_b x_b - y_b|^2 over the batch, and its gradient
    r = np.einsum("bmn,bn->bm", data["A"], X) - data["y"]
    return (r * r).sum(1), 2 * np.einsum("bmn,bm->bn", data["A"], r)


task = l2o.Task(fun, sample, dim=N, batch=B, name="least-squares")
epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 60
opt = l2o.train("lstm", task, epochs=epochs, out="out/py-train", horizon=40, unroll=20, meta_lr=0.01)
lr, _ = l2o.tune(fun, task.sample(7), "adam", steps=40)
x0 = task.sample(1001)  # held out
lstm = l2o.minimize(fun, x0, method=opt.path, steps=40).fun.mean()
adam = l2o.minimize(fun, x0, method="adam", lr=lr, steps=40).fun.mean()
print(f"held-out mean final loss after 40 steps: LSTM {lstm:.4e}, tuned Adam (lr {lr}) {adam:.4e}")
