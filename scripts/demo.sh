#!/usr/bin/env bash
# Quick start, line 1: set up a virtualenv, install edgegw, run the demo on embedded defaults.
# Extra arguments go to `edgegw demo` (e.g. --seconds 20).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/edgegw ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "== installing edgegw into .venv (first run only)"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[all]' >/dev/null
  touch .venv/.installed
fi
exec .venv/bin/edgegw demo "$@"
