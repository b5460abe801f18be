"""How wide are the MDR supercells? Perpendicular widths of every shared raw_lt20atoms entry's supercell.

    python benchmarks/supercell_widths.py [--workers 2]

For each entry (POSCAR-unitcell and DIM from its tarball; no forces are read): the smallest
perpendicular width of the supercell (volume / largest face area), its atom count, and what the
engine's adequacy rule (``io.inputs.adequate_supercell``) makes of it: the extension multiples and
the atom count after extension. Writes results/supercell_widths.csv (one row per entry) and
results/supercell_widths.md (counts below each width threshold).
"""

from __future__ import annotations

import argparse
import csv
import io
import tarfile
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from _common import MDR, RESULTS, setup_env

THRESHOLDS = (4.0, 5.0, 6.0, 7.0, 8.0, 10.0)


def widths(lattice: np.ndarray) -> np.ndarray:
    vol = abs(np.linalg.det(lattice))
    return np.array([vol / np.linalg.norm(np.cross(lattice[(i + 1) % 3], lattice[(i + 2) % 3])) for i in range(3)])


def entry_widths(tarball: str) -> dict:
    from phonopy.interface.vasp import read_vasp_from_strings

    from tdph_workflows.io.inputs import MIN_SUPERCELL_WIDTH, adequate_supercell

    with tarfile.open(MDR / "raw_lt20atoms" / tarball) as tar:
        files = {m.name.rsplit("/", 1)[-1]: m for m in tar.getmembers() if m.isfile()}
        poscar = tar.extractfile(files["POSCAR-unitcell"]).read().decode()
        conf = tar.extractfile(files["phonopy.conf"]).read().decode()
    unitcell = read_vasp_from_strings(poscar)
    dim = next(line.split("=", 1)[1].split() for line in io.StringIO(conf) if line.strip().startswith("DIM"))
    smat = np.array([int(x) for x in dim]).reshape(3, 3) if len(dim) == 9 else np.diag([int(x) for x in dim])
    supercell = smat @ np.asarray(unitcell.cell)
    w = widths(supercell)
    n = int(round(abs(np.linalg.det(smat)))) * len(unitcell)
    extended, multiples = adequate_supercell(smat, unitcell, MIN_SUPERCELL_WIDTH)
    return {"tarball": tarball, "atoms_supercell": n, "min_width": round(float(w.min()), 3),
            "max_width": round(float(w.max()), 3), "multiples": " ".join(map(str, multiples)),
            "atoms_extended": int(round(abs(np.linalg.det(extended)))) * len(unitcell)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    setup_env()
    from tdph_workflows.io.inputs import MIN_SUPERCELL_WIDTH

    tarballs = sorted(p.name for p in (MDR / "raw_lt20atoms").glob("*.tar.lzma"))
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(entry_widths, tarballs, chunksize=32))
    with open(RESULTS / "supercell_widths.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    w = np.array([r["min_width"] for r in rows])
    extended = [r for r in rows if r["multiples"] != "1 1 1"]
    grown = np.array([r["atoms_extended"] / r["atoms_supercell"] for r in extended]) if extended else np.array([1.0])
    lines = [f"# Perpendicular widths of the {len(rows)} shared MDR supercells (raw_lt20atoms)", "",
             "Smallest perpendicular width of each entry's own supercell (DIM of phonopy.conf).", "",
             "| min width below | entries | share |", "|---|---|---|"]
    lines += [f"| {t:g} A | {(w < t).sum()} | {100 * (w < t).mean():.1f} % |" for t in THRESHOLDS]
    lines += ["", f"Width: median {np.median(w):.2f} A, 5th percentile {np.percentile(w, 5):.2f} A, "
              f"minimum {w.min():.2f} A.", "",
              f"Adequacy rule (`MIN_SUPERCELL_WIDTH` = {MIN_SUPERCELL_WIDTH:g} A): {len(extended)} entries are "
              f"extended; atoms grow by x{np.median(grown):.1f} (median), x{grown.max():.0f} (max); largest "
              f"extended supercell {max((r['atoms_extended'] for r in extended), default=0)} atoms.", "",
              "Rows: `supercell_widths.csv`."]
    (RESULTS / "supercell_widths.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
