"""Shared set-up for the benchmark scripts: one torch thread, model and data from ../shared."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TDPH_SHARED", ROOT.parent / "shared"))
MDR = SHARED / "data" / "phonondb_pbesol_20180417"
RESULTS = ROOT / "benchmarks" / "results"


def setup_env() -> None:
    os.environ.setdefault("TDPH_TORCH_THREADS", "1")
    model = SHARED / "models" / "M3GNet-PES-MatPES-PBE-2025.2"
    if "TDPH_MODEL" not in os.environ and model.is_dir():
        os.environ["TDPH_MODEL"] = str(model)
        os.environ["HF_HUB_OFFLINE"] = "1"
    import torch

    torch.set_num_threads(int(os.environ["TDPH_TORCH_THREADS"]))
    RESULTS.mkdir(parents=True, exist_ok=True)


def write_table(name: str, header: list[str], rows: list[list]) -> Path:
    """Markdown and CSV side by side in benchmarks/results/."""
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n")
    csv = [",".join(header)] + [",".join(str(c) for c in r) for r in rows]
    (RESULTS / f"{name}.csv").write_text("\n".join(csv) + "\n")
    print("\n".join(md))
    return RESULTS / f"{name}.md"
