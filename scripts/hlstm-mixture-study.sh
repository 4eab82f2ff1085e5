#!/usr/bin/env bash
# The Hilbert LSTM trained on a mixture of families, against strong-Wolfe L-BFGS (docs/studies/hlstm.md,
# "Trained on a mixture of families"):
#  1. meta-train HLSTM cell 2 on one batch of 96 problems: 32 rotated quadratics (cond 1e3-1e4), 32 extended
#     Rosenbrock, 32 logistic regressions, n = 50, horizon K = 50, unrolls of T = 5, meta-gradient stopped at the
#     memory, 1,400 epochs (10.5x the problem-steps of the quadratic-only study: 1,400 x 96 vs 400 x 32, x 50);
#  2. evaluate it on held-out problems of each family at n = 10 ... 100,000, without retraining, against L-BFGS
#     (m = 5) with strong-Wolfe, backtracking and constant steps, tuned Adam and Nesterov, and the HLSTM trained
#     on quadratics alone (docs/results/hlstm/hlstm-cell2.l2o).
# Usage: scripts/hlstm-mixture-study.sh OUT_DIR   (a finished step's output is reused: delete it to re-run)
set -euo pipefail
out=${1:?usage: scripts/hlstm-mixture-study.sh OUT_DIR}
l2o=${L2O:-./target/release/l2o}
mkdir -p "$out"
# shellcheck source=scripts/study-steps.sh
. "$(dirname "$0")/study-steps.sh"
mix=quadratic-cond-rotated+rosenbrock+logistic
train mix-cell2 --optimizer hlstm --cell 2 --task $mix --dim 50 --batch 96 --horizon 50 --val-batch 96 \
  --validate-every 20 --seed 1 --unroll 5 --no-memory-grad --epochs 1400
ck=$out/mix-cell2/checkpoint.l2o
old=docs/results/hlstm/hlstm-cell2.l2o
small=(--vs adam,nesterov,lbfgs-constant,lbfgs-armijo,lbfgs-wolfe --budgets 20,50 --steps 50 --batch 64)
large=(--vs lbfgs-constant,lbfgs-armijo,lbfgs-wolfe --budgets 20,50 --steps 50)
for c in mix:$ck quad:$old; do
  name=${c%%:*}
  file=${c#*:}
  evaluate $name-rotated --checkpoint "$file" "${small[@]}" --task quadratic-cond-rotated --dims 10,50,100
  evaluate $name-rotated-1000 --checkpoint "$file" "${large[@]}" --task quadratic-cond-rotated --dims 1000 --batch 8
  evaluate $name-rosenbrock --checkpoint "$file" "${small[@]}" --task rosenbrock --dims 10,50,1000
  evaluate $name-rosenbrock-1e5 --checkpoint "$file" "${large[@]}" --task rosenbrock --dims 100000 --batch 4
  evaluate $name-logistic --checkpoint "$file" "${small[@]}" --task logistic --dims 10,100,1000
  evaluate $name-logistic-1e5 --checkpoint "$file" "${large[@]}" --task logistic --dims 100000 --batch 2
done
echo "done: $out"
