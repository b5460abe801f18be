#!/usr/bin/env bash
# Write requirements/constraints.txt from .venv (the set the test suite passed on).
set -euo pipefail
cd "$(dirname "$0")/.."
{
  echo "# The tested set (Python 3.11, CPU torch): pip install -c requirements/constraints.txt ..."
  echo "# Regenerate after an upgrade that the suite passed on: scripts/freeze-constraints.sh"
  .venv/bin/python -m pip freeze --exclude-editable | grep -v "^-e\|^tdph" | sed -E 's/^(torch==[0-9.]+)\+cpu$/\1/'
} > requirements/constraints.txt
