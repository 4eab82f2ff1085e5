#!/usr/bin/env bash
# The Python package's tests: a fresh venv (target/py-venv), `pip install ./crates/l2o-py` (maturin builds the
# extension module from source), then pytest. The CLI the tests compare against is the one `cargo test` built
# (target/debug/l2o), or L2O_CLI. Run from anywhere; needs python3 with venv (scripts/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV=target/py-venv
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q ./crates/l2o-py pytest
if [ -z "${L2O_CLI:-}" ]; then
  [ -x target/debug/l2o ] || cargo build -q -p l2o-cli
  export L2O_CLI="$PWD/target/debug/l2o"
fi
# run from outside the source tree so that `import l2o` is the installed package
cd crates/l2o-py/tests
exec "../../../$VENV/bin/python" -m pytest -q -rs .
