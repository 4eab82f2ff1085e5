#!/usr/bin/env bash
# The Hilbert LSTM study (docs/hlstm.md §5; docs/studies/hlstm.md), every number in that study's tables:
#  1. meta-train HLSTM cells 1 and 2 on n = 50 rotated quadratics with condition numbers 1e3–1e4 (budget K = 50
#     gradient evaluations; greedy unrolls of 1 step, meta-gradient stopped at the memory) and an L2L LSTM on
#     the same problems;
#  2. evaluate on held-out problems of that family at n = 10, 50, 100, 1000, on the axis-aligned family, on
#     extended Rosenbrock, logistic regression and the MNIST MLP (full batch), without retraining, against tuned
#     SGD / Nesterov / RMSprop / Adam, L-BFGS (constant step, backtracking) and the L2L LSTM;
#  3. seed 000 Figure 13: 5-d random quadratics, 100 steps (HLSTM cell 2 and L2L trained there).
# Usage: scripts/hlstm-study.sh OUT_DIR   (a finished step's output is reused: delete it to re-run)
set -euo pipefail
out=${1:?usage: scripts/hlstm-study.sh OUT_DIR}
l2o=${L2O:-./target/release/l2o}
mkdir -p "$out"
# shellcheck source=scripts/study-steps.sh
. "$(dirname "$0")/study-steps.sh"
fam=(--task quadratic-cond-rotated --dim 50 --batch 32 --horizon 50 --val-batch 64 --validate-every 10 --seed 1)
train cell2 --optimizer hlstm --cell 2 "${fam[@]}" --unroll 1 --no-memory-grad --epochs 400
train cell1 --optimizer hlstm --cell 1 "${fam[@]}" --unroll 1 --no-memory-grad --epochs 400
train l2l --optimizer lstm "${fam[@]}" --unroll 10 --epochs 200 --meta-lr 0.003
vs=(--vs sgd,nesterov,rmsprop,adam,lbfgs-constant,lbfgs-armijo --l2l "$out/l2l/checkpoint.l2o" --budgets 20,50 --steps 50)
for cell in cell2 cell1; do
  evaluate "$cell-rotated" --checkpoint "$out/$cell/checkpoint.l2o" "${vs[@]}" --dims 10,50,100 --batch 64
  evaluate "$cell-rotated-1000" --checkpoint "$out/$cell/checkpoint.l2o" "${vs[@]}" --dims 1000 --batch 8
  evaluate "$cell-aligned" --checkpoint "$out/$cell/checkpoint.l2o" "${vs[@]}" --task quadratic-cond --dims 50 --batch 64
done
evaluate cell2-rosenbrock --checkpoint "$out/cell2/checkpoint.l2o" "${vs[@]}" --task rosenbrock --dims 50 --batch 64
evaluate cell2-logistic --checkpoint "$out/cell2/checkpoint.l2o" "${vs[@]}" --task logistic --dims 100 --batch 64
evaluate cell2-mnist --checkpoint "$out/cell2/checkpoint.l2o" "${vs[@]}" --task mnist --hidden 20 --full-batch \
  --minibatch 1000 --batch 4 --tune-batch 1
# seed 000 Figure 13: 5-d random quadratics
f13=(--task quadratic --dim 5 --batch 32 --horizon 100 --val-batch 128 --validate-every 10 --seed 2)
train fig13-cell2 --optimizer hlstm --cell 2 "${f13[@]}" --unroll 1 --no-memory-grad --epochs 200
train fig13-l2l --optimizer lstm "${f13[@]}" --unroll 20 --epochs 400 --preprocess 0 --meta-lr 0.01
evaluate fig13 --checkpoint "$out/fig13-cell2/checkpoint.l2o" --vs sgd,nesterov,rmsprop,adam,lbfgs-constant \
  --l2l "$out/fig13-l2l/checkpoint.l2o" --budgets 20,50,100 --steps 100 --dims 5 --batch 128
echo "done: $out"
