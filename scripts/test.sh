#!/usr/bin/env bash
# README command 2 (and .ci/run): set up, then the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
# the SLURM tests need a cluster: start the one-node one when we may (root with apt), else they skip
# and the report test a headless browser: Debian's chromium, installed the same way
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  bash scripts/slurm-local.sh start >/dev/null || echo "warning: could not start the local SLURM cluster"
  command -v chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq chromium >/dev/null 2>&1 || echo "warning: could not install chromium"; }
fi
.venv/bin/python -m pytest -q -p no:cacheprovider --timeout 900 "$@"
