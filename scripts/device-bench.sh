#!/usr/bin/env bash
# The whole benchmark suite on this machine's best adapter (a real GPU when there is one), in one go, in under
# 8 minutes on a GPU machine including the build: autotune (cached in OUT/cache), then every `l2o bench` table.
# Prints the Markdown section for BENCHMARKS.md (headed by the device name and date) and writes it to
# OUT/device-bench.md, with each table's raw output beside it.
#
# Usage: bash scripts/device-bench.sh [OUT_DIR] [--quick]
#   L2O_BACKEND / L2O_ADAPTER pick the adapter; DATA (or L2O_DATA) the MNIST directory for the MLP rows.
#   Each step has its own time limit (STEP_S, default 120 s): a step that runs over is reported, not fatal.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/device-bench}
quick=${2:-}
mkdir -p "$out"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/l2o-xdg}"
mkdir -p -m 700 "$XDG_RUNTIME_DIR" 2>/dev/null || true
case "$out" in /*) export L2O_CACHE_DIR="$out/cache" ;; *) export L2O_CACHE_DIR="$PWD/$out/cache" ;; esac
step_s=${STEP_S:-120}
data=${DATA:-${L2O_DATA:-}}
t0=$SECONDS

echo "== build" >&2
cargo build --release -p l2o-cli >&2 || { echo "build failed" >&2; exit 1; }
l2o=./target/release/l2o
"$l2o" info >"$out/info.txt" 2>&1 || { cat "$out/info.txt" >&2; exit 1; }
device=$(sed -n 's/^chosen: //p' "$out/info.txt")
echo "device: $device (build done at $((SECONDS - t0)) s)" >&2

run() { # name, then the l2o arguments
  local name=$1
  shift
  local s0=$SECONDS
  if timeout "$step_s" "$l2o" "$@" >"$out/$name.txt" 2>&1; then
    echo "  $name: $((SECONDS - s0)) s" >&2
  else
    echo "  $name: FAILED or over ${step_s} s (see $out/$name.txt)" >&2
    echo "_${name}: did not finish within ${step_s} s or failed; see ${name}.txt_" >"$out/$name.md"
  fi
}

if [ "$quick" = "--quick" ]; then
  run autotune autotune --quick ${data:+--data "$data"}
  run stream bench --sizes 100000,1000000 --batches 1,16 --markdown "$out/stream.md"
  run meta bench --meta --sizes 10,100 --batches 128,100 --markdown "$out/meta.md"
else
  run autotune autotune ${data:+--data "$data"}
  run stream bench --sizes 100000,1000000,10000000 --batches 1,16,256 --markdown "$out/stream.md"
  run meta bench --meta --sizes 10,100,1000 --batches 128,100,16 --markdown "$out/meta.md"
fi
run mlp bench --mlp --batches 1,16,128 ${data:+--data "$data"} --markdown "$out/mlp.md"
run hlstm bench --hlstm --sizes 50,1000,100000 --batches 1,32 --markdown "$out/hlstm.md"
run policy bench --policy --sizes 100,1000 --batches 1,16 --markdown "$out/policy.md"

{
  echo "## $device — $(date -u +%Y-%m-%d) (scripts/device-bench.sh, $((SECONDS - t0)) s including the build)"
  echo
  echo "Kernel variants (autotuned on this adapter, then used by every table):"
  echo
  echo '```'
  cat "$out/autotune.txt" 2>/dev/null | grep -v WARN
  echo '```'
  for t in stream meta mlp hlstm policy; do
    echo
    echo "### $t"
    echo
    cat "$out/$t.md" 2>/dev/null || echo "_missing_"
  done
} >"$out/device-bench.md"
cat "$out/device-bench.md"
echo "wrote $out/device-bench.md in $((SECONDS - t0)) s" >&2
