"""Screening (R_onsite >= threshold), AFLOW prototypes and coordination polyhedra (paper Fig. 4A-C)."""

from __future__ import annotations

import functools
import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Lattice, Structure

log = logging.getLogger(__name__)

# LocalStructOrderParams types tried for each coordination number (the best-scoring one names the polyhedron)
POLYHEDRA = {
    2: {"bent": "linear"}, 3: {"tri_plan": "triangle"}, 4: {"tet": "tetrahedron", "sq_plan": "square"},
    5: {"tri_bipyr": "trigonal bipyramid", "sq_pyr": "square pyramid"},
    6: {"oct": "octahedron", "pent_pyr": "pentagonal pyramid"},
    7: {"pent_bipyr": "pentagonal bipyramid", "sq_face_cap_trig_pris": "capped trigonal prism"},
    8: {"bcc": "cube", "hex_bipyr": "hexagonal bipyramid"},
    12: {"cuboct": "cuboctahedron"},
}


def candidates(materials: pd.DataFrame, threshold: float = 0.15) -> pd.DataFrame:
    """Materials whose largest on-site renormalization ``r_onsite_max`` is >= `threshold`, largest first."""
    return materials[materials["r_onsite_max"] >= threshold].sort_values("r_onsite_max", ascending=False)


@functools.cache
def _prototype_matcher():
    from pymatgen.analysis.prototypes import AflowPrototypeMatcher

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AflowPrototypeMatcher()


def aflow_prototype(structure: Structure) -> str:
    """AFLOW prototype label (pymatgen's matcher), or 'unmatched'."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        matches = _prototype_matcher().get_prototypes(structure)
    if not matches:
        return "unmatched"
    tags = matches[0]["tags"]
    mineral = tags.get("mineral") or ""
    return f"{tags['aflow']} ({mineral})" if mineral else tags["aflow"]


def coordination_polyhedron(structure: Structure, index: int) -> str:
    """Polyhedron of CrystalNN neighbours, named by the best local order parameter for that CN."""
    from pymatgen.analysis.local_env import CrystalNN, LocalStructOrderParams

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        neighbours = CrystalNN().get_nn_info(structure, index)
        cn = len(neighbours)
        shapes = POLYHEDRA.get(cn)
        if not shapes:
            return f"CN {cn}"
        # neighbours may be periodic images of one site: evaluate on an isolated cluster in a large box
        centre = structure[index].coords
        coords = [centre] + [n["site"].coords for n in neighbours]
        box = Structure(Lattice.cubic(60.0), [structure[index].species_string] * (cn + 1),
                        np.array(coords) - centre + 30.0, coords_are_cartesian=True)
        ops = LocalStructOrderParams(list(shapes))
        values = ops.get_order_parameters(box, 0, indices_neighs=list(range(1, cn + 1)))
    best = int(np.nanargmax([v if v is not None else np.nan for v in values])) if any(v is not None for v in values) else 0
    return list(shapes.values())[best]


def annotate(materials: pd.DataFrame, sites: pd.DataFrame, threshold: float = 0.15
             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Prototype label per material; polyhedron for each site with R_onsite >= threshold."""
    materials = materials.copy()
    cells = {}
    labels = []
    for rec in materials.itertuples():
        try:
            cells[rec.material_id] = Structure.from_dict(rec.unitcell)
            labels.append(aflow_prototype(cells[rec.material_id]))
        except Exception as exc:  # noqa: BLE001 (an unmatched structure is labelled, never fatal)
            log.warning("%s: no prototype (%s)", rec.material_id, exc)
            labels.append("unmatched")
    materials["prototype"] = labels
    strong = sites[sites["r_onsite"] >= threshold].copy()
    polyhedra = []
    for rec in strong.itertuples():
        try:
            polyhedra.append(coordination_polyhedron(cells[rec.material_id], int(rec.site)))
        except Exception as exc:  # noqa: BLE001
            log.warning("%s site %s: no polyhedron (%s)", rec.material_id, rec.site, exc)
            polyhedra.append("unknown")
    strong["polyhedron"] = polyhedra
    return materials, strong


def plot_prototype_violins(materials: pd.DataFrame, sites: pd.DataFrame, path: Path, top: int = 8) -> pd.DataFrame:
    """R_onsite of the sites of the most frequent prototypes (violins, log scale); returns the counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = materials["prototype"].value_counts()
    counts = counts[counts.index != "unmatched"][:top]
    proto_of = materials.set_index("material_id")["prototype"]
    data = [np.clip(sites.loc[sites["material_id"].map(proto_of) == p, "r_onsite"].to_numpy(), 1e-4, None)
            for p in counts.index]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(data) + 2), 4.5))
    if data:
        ax.violinplot([np.log10(d) for d in data], showmedians=True)
        ax.set_xticks(range(1, len(data) + 1), [f"{p.split(' (')[0]}\n{p.split(' (')[1][:-1] if ' (' in p else ''}"
                                                 f"\n(n={counts[p]})" for p in counts.index], fontsize=6, rotation=30)
    ax.axhline(np.log10(0.15), color="r", ls="--", lw=0.8, label="screening threshold")
    ax.set_ylabel("log10 R_onsite")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return counts.rename("n_materials").to_frame()
