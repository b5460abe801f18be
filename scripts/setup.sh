#!/usr/bin/env bash
# Create .venv in the repo root and install torch (CPU build) before the project.
# Idempotent: reinstalls only when pyproject.toml or the constraints changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.tdph-installed
want=$(cat pyproject.toml requirements/constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # an exact torch pin first: a looser spec pulls multi-GB CUDA wheels
  .venv/bin/python -m pip install -q "torch==2.13.0"
  # the tested set: every package at the version the suite passed on (requirements/constraints.txt)
  .venv/bin/python -m pip install -q -c requirements/constraints.txt -e ".[test,docs,campaign,analysis,validation]"
  echo "$want" > "$stamp"
fi
