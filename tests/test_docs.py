"""The documentation builds strictly (broken links, missing pages, API docstrings that do not parse)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mkdocs_builds_strict_with_the_api_page(tmp_path):
    res = subprocess.run([str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "-d", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    api = (tmp_path / "api" / "index.html").read_text()
    for name in ("run_temperature_phonons", "band_structure", "PotentialRelaxMaker", "rerun_fireworks"):
        assert name in api, name  # the reference is generated from the docstrings, not empty
