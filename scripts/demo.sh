#!/usr/bin/env bash
# README command 1: set up, then a small screening campaign on the embedded database
# (8 built-in crystals, 2 local workers): ranked table, tdph_out/demo/ranked.csv and dispersion plots.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
.venv/bin/tdph demo "$@"
