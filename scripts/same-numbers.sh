#!/usr/bin/env bash
# Digests that must not change when code is restructured (issue 27's "same numbers" target): for each learned
# optimizer, a short same-seed meta-training run (its phi_sha256 / best_phi_sha256 from `l2o inspect`) and an
# `l2o eval` of that checkpoint and of the committed quadratic checkpoints (the SHA-256 of every CSV it writes:
# the per-step tables; eval.md is left out, it holds timings and paths). Same adapter + same code ⇒ same digests;
# they differ between adapters.
#
# Usage: bash scripts/same-numbers.sh [OUT_DIR] > digests.txt   (release build of the CLI: target/release/l2o,
# or L2O_CLI). Compare two runs with diff. About a minute on lavapipe.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-out/same-numbers}"
cli="${L2O_CLI:-target/release/l2o}"
[ -x "$cli" ] || cargo build -q --release --locked -p l2o-cli
rm -rf "$out"
mkdir -p "$out"
train() { # kind, extra flags...
  local kind=$1
  shift
  "$cli" train --optimizer "$kind" --task quadratic --dim 10 --batch 8 --epochs 3 --val-batch 16 --seed 7 "$@" \
    --out "$out/$kind" >/dev/null 2>&1
  echo "train $kind: $("$cli" inspect "$out/$kind/checkpoint.l2o" | grep -E '^(best_)?phi_sha256' | tr '\n' ' ')"
}
evaluate() { # name, checkpoint
  "$cli" eval --checkpoint "$2" --task quadratic --dim 10 --batch 8 --steps 40 --out "$out/eval-$1" >/dev/null 2>&1
  (cd "$out/eval-$1" && find . -name '*.csv' | LC_ALL=C sort | while read -r f; do
    echo "eval $1 ${f#./} $(sha256sum "$f" | cut -c1-16)"
  done)
}
train lstm --horizon 20 --unroll 10
train lbfgs-policy
train hlstm --horizon 10
for k in lstm lbfgs-policy hlstm; do evaluate "$k" "$out/$k/checkpoint.l2o"; done
evaluate l2l-quadratic docs/results/l2l-quadratic/l2l-quadratic.l2o
evaluate hlstm-cell2 docs/results/hlstm/hlstm-cell2.l2o
