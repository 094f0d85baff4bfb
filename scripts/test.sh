#!/usr/bin/env bash
# Quick start, line 2: install what the tests need, then lint, type-check and run the whole suite.
# System packages (Debian): mosquitto, victoria-metrics, socat, chromium, fonts-noto-cjk. Python packages go into .venv.
# The tests start their own Mosquitto and VictoriaMetrics on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
[ -x /usr/bin/victoria-metrics ] || need+=(victoria-metrics)
command -v socat >/dev/null 2>&1 || need+=(socat)
[ -x /usr/bin/chromium ] || need+=(chromium)          # the browser tests (driven by playwright, no download)
[ -d /usr/share/fonts/opentype/noto ] || need+=(fonts-noto-cjk)   # Chinese text in the screenshots
if ((${#need[@]})); then
  echo "== apt-get install ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/pytest ] || [ pyproject.toml -nt .venv/.installed-dev ]; then
  echo "== installing edgegw[dev] into .venv"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[dev]' >/dev/null
  touch .venv/.installed-dev .venv/.installed
fi

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== import contracts"
.venv/bin/lint-imports --no-cache
echo "== pytest"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
