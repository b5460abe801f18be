#!/usr/bin/env bash
# Build the wheel, install it in a clean venv (no repository on the path) with the tested constraints,
# then run `tdph --version`, `tdph run` on a POSCAR and `tdph config init` there. Needs the package index.
# Usage: scripts/check-wheel.sh [workdir]   (default: a temporary folder, removed afterwards)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=${1:-$(mktemp -d)}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
.venv/bin/python -m pip wheel -q --no-deps -w "$work/dist" .
"$PY" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip
"$work/venv/bin/python" -m pip install -q "torch==2.13.0"
wheel=$(ls "$work"/dist/tdph_workflows-*.whl)
"$work/venv/bin/python" -m pip install -q -c "$repo/requirements/constraints.txt" "$wheel[campaign]"
cd "$work"
cat > POSCAR <<'POS'
Al fcc
4.05
0.0 0.5 0.5
0.5 0.0 0.5
0.5 0.5 0.0
Al
1
Direct
0.0 0.0 0.0
POS
"$work/venv/bin/tdph" --version
"$work/venv/bin/tdph" run POSCAR --calculator emt --supercell "3 3 3" --out "$work/out"
"$work/venv/bin/python" -c "import phonopy; ph = phonopy.load('$work/out/phonopy_300K.yaml.xz'); print('reloaded', ph.force_constants.shape)"
"$work/venv/bin/tdph" config init --dir "$work/cluster"
"$work/venv/bin/tdph" config check --root "$work/cluster" --no-ping
echo "wheel check passed in $work"
