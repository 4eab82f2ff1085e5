#!/usr/bin/env bash
# The Python package's tests: a fresh venv (target/py-venv) with numpy, pytest, torch and jax, the package l2o made from
# crates/l2o-py/python/l2o plus the extension module that `cargo test --workspace` already compiled
# (target/debug/deps/lib_l2o.so, built with the same crates and features as the Rust tests: no second build of wgpu
# and the l2o crates), then pytest. L2O_PY_PIP=1 instead installs the package as users do,
# `pip install ./crates/l2o-py` (maturin, release build: several minutes more). The CLI the tests compare
# against is target/debug/l2o, or L2O_CLI. Run from anywhere; needs python3 with venv (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV=target/py-venv
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check numpy pytest
# PyTorch and JAX, so that tests/test_torch.py and tests/test_jax.py run (L2O_PY_TORCH=0 skips them): PyPI's
# torch wheel brings its CUDA libraries (~3 GB of wheels, a 5.9 GB venv with jax; 69 s to download and install
# on the development machine with an empty pip cache). pip keeps the wheels in its cache (~/.cache/pip), so a
# second run of this script does not download them again.
if [ "${L2O_PY_TORCH:-1}" = 1 ]; then
  "$VENV/bin/pip" install -q --disable-pip-version-check "torch>=2.4" "jax>=0.4.30"
fi
if [ "${L2O_PY_PIP:-0}" = 1 ]; then
  "$VENV/bin/pip" install -q --disable-pip-version-check ./crates/l2o-py
else
  # built by `cargo test --workspace` (crates/l2o-py's extension_module test needs it, in target/debug/deps);
  # alone, build it here (target/debug)
  module=target/debug/deps/lib_l2o.so
  if [ ! -f "$module" ]; then
    module=target/debug/lib_l2o.so
    [ -f "$module" ] || cargo build -q --locked -p l2o-py
  fi
  pkg=target/py-pkg
  rm -rf "$pkg"
  mkdir -p "$pkg/l2o"
  cp crates/l2o-py/python/l2o/*.py "$pkg/l2o/"
  ln -s "$PWD/$module" "$pkg/l2o/_l2o.abi3.so"
  site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$PWD/$pkg" > "$site/l2o-workspace.pth"
fi
if [ -z "${L2O_CLI:-}" ]; then
  [ -x target/debug/l2o ] || cargo build -q -p l2o-cli
  export L2O_CLI="$PWD/target/debug/l2o"
fi
# run from outside the source tree so that `import l2o` is the venv's package, not the source folder
cd crates/l2o-py/tests
exec "../../../$VENV/bin/python" -m pytest -q -rs .
