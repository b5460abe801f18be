#!/usr/bin/env bash
# README command 1: set up, then temperature-dependent phonons of cubic SrTiO3 at 300 K.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
.venv/bin/tdph run SrTiO3 --relax --temperature 300 --out tdph_out/SrTiO3 "$@"
