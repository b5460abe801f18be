"""Where a campaign material's time goes: py-spy over the campaign's own code path (issue 18).

    TDPH_DB_PORT=27300 TDPH_DB_DIR=../campaign_full/db \
        py-spy record -o prof.txt -f raw -r 50 -- python benchmarks/profile_chunk.py 128
    python benchmarks/profile_chunk.py --summarize prof.txt

The first form takes the next READY chunk of the running campaign whose FireWorks priority (supercell
atoms) is the argument and runs ``compute_material`` on its materials with the chunk's own model and
settings, one torch thread, the first material warming the model as a worker does. The second prints the
share of py-spy samples under the named stages (a sample counts once per name).
"""

from __future__ import annotations

import sys
import time

STAGES = ["run_temperature_phonons", "forward_forces", "harmonic_stage", "harmonic_force_constants", "renormalize", "estimate",
          "band_structure", "total_dos", "symfc", "matgl_calculator", "get_graph", "_dft_reference"]


def summarize(raw: str) -> None:
    total, hits = 0, dict.fromkeys(STAGES, 0)
    with open(raw) as fh:
        for line in fh:
            stack, n = line.rsplit(" ", 1)
            total += int(n)
            for name in STAGES:
                if name in stack:
                    hits[name] += int(n)
    for name, n in sorted(hits.items(), key=lambda kv: -kv[1]):
        print(f"{name:26s} {n / total:6.1%}")


def run(priority: int) -> None:
    import torch

    from tdph_workflows.campaign.settings import launchpad, resolve
    from tdph_workflows.makers.jobs import compute_material

    torch.set_num_threads(1)
    fw = launchpad(resolve(None)).fireworks.find_one({"state": "READY", "spec._priority": priority})
    if fw is None:
        sys.exit(f"no READY chunk of priority {priority}")
    items, calc, temps, settings = fw["spec"]["_tasks"][0]["job"]["function_args"]
    for it in items:
        t0 = time.perf_counter()
        compute_material(it["source"], calc, temps, settings, material_id=it["material_id"])
        print(it["material_id"], round(time.perf_counter() - t0, 1), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "--summarize":
        summarize(sys.argv[2])
    else:
        run(int(sys.argv[1]))
