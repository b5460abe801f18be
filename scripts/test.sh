#!/usr/bin/env bash
# README command 2 (and .ci/run): set up, then the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
.venv/bin/python -m pytest -q -p no:cacheprovider --timeout 900 "$@"
