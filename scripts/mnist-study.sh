#!/usr/bin/env bash
# Seed 002 §3.2 (Figures 4 right and 5): evaluate an L2L checkpoint trained on the 1×20 sigmoid MNIST MLP on
# 200 steps of the MNIST *test* images against SGD, Nesterov, RMSprop and Adam (each re-tuned per setting on
# training images), for the training architecture and three it never saw: 40 hidden units, two hidden layers,
# ReLU. Usage: scripts/mnist-study.sh CHECKPOINT OUT_DIR [extra `l2o eval` flags]
# An existing OUT_DIR/NAME/eval.md is reused. Writes OUT_DIR/{base,h40,h20x20,relu}/{eval.md,loss.svg,*.csv} and OUT_DIR/study.md (all four tables).
set -euo pipefail
ckpt=${1:?usage: scripts/mnist-study.sh CHECKPOINT OUT_DIR [l2o eval flags]}
out=${2:?usage: scripts/mnist-study.sh CHECKPOINT OUT_DIR [l2o eval flags]}
shift 2
l2o=${L2O:-./target/release/l2o}
common=(--checkpoint "$ckpt" --task mnist --steps 200 --tune-batch 2 --grid=-3..0 --vs sgd,nag,rmsprop,adam "$@")
mkdir -p "$out"
: >"$out/study.md"
run() {
  local name=$1 title=$2
  shift 2
  local t0=$SECONDS
  if [ -f "$out/$name/eval.md" ]; then
    echo "$out/$name/eval.md exists: reusing it (delete it to re-run)" >&2
  else
    "$l2o" eval "${common[@]}" "$@" --out "$out/$name"
  fi
  {
    echo "### $title"
    echo
    cat "$out/$name/eval.md"
    echo
  } >>"$out/study.md"
}
run base "1 hidden layer, 20 sigmoid units (the training architecture)" --hidden 20 --activation sigmoid --batch 8
# 40 units: 8 networks' LSTM states exceed a 128 MiB binding (lavapipe), so 4 test networks
run h40 "40 hidden units" --hidden 40 --activation sigmoid --batch 4
run h20x20 "2 hidden layers of 20 units" --hidden 20,20 --activation sigmoid --batch 8
run relu "ReLU activation" --hidden 20 --activation relu --batch 8
echo "wrote $out/study.md"
