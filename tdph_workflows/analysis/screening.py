"""Screening (R_onsite >= threshold), AFLOW prototypes and coordination polyhedra (paper Fig. 4A-C)."""

from __future__ import annotations

import functools
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Lattice, Structure

from .cache import content_key, map_tasks

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


def structure_type(prototype: str, formula: str, spacegroup_number: int) -> str:
    """The AFLOW label, or for a structure AFLOW's library lacks: anonymous formula and space group.

    pymatgen's matcher knows ~1,100 prototypes and leaves most MDR crystals (distorted perovskites
    included) unmatched; 'ABC3 sg62' still groups a campaign's Pnma ABX3 crystals together.
    """
    if prototype != "unmatched" or not isinstance(formula, str):
        return prototype
    from pymatgen.core import Composition

    try:
        return f"{Composition(formula).anonymized_formula} sg{int(spacegroup_number)} (no AFLOW match)"
    except (ValueError, TypeError):
        return prototype


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


ANNOTATION_VERSION = "1"  # bump when the prototype matcher or the polyhedron rule changes: invalidates caches


def material_annotation(unitcell: dict, sites: list[int], known: dict | None = None) -> dict:
    """AFLOW prototype of one material and the polyhedra of `sites` (what `annotate` caches per material).

    Parameters
    ----------
    unitcell
        The structure (``Structure.as_dict()``).
    sites
        Unit-cell indices whose coordination polyhedron is wanted.
    known
        An earlier annotation of the same structure: its prototype and polyhedra are reused, only
        missing sites are computed (a lower threshold asks for more sites).

    Returns
    -------
    dict
        ``prototype`` (label or 'unmatched'), ``polyhedra`` (site index as str -> name or 'unknown')
        and ``errors`` (messages of what raised; kept so a cached failure is still reported).
    """
    known = known or {}
    out = {"prototype": known.get("prototype"), "polyhedra": dict(known.get("polyhedra", {})),
           "errors": list(known.get("errors", []))}
    missing = [i for i in sites if str(i) not in out["polyhedra"]]
    if out["prototype"] is not None and not missing:
        return out
    try:
        structure = Structure.from_dict(unitcell)
    except Exception as exc:  # noqa: BLE001 (an unreadable structure is labelled, never fatal)
        out["errors"].append(f"no structure ({type(exc).__name__}: {exc})")
        return {**out, "prototype": out["prototype"] or "unmatched",
                "polyhedra": {**out["polyhedra"], **{str(i): "unknown" for i in missing}}}
    if out["prototype"] is None:
        try:
            out["prototype"] = aflow_prototype(structure)
        except Exception as exc:  # noqa: BLE001 (an unmatched structure is labelled, never fatal)
            out["prototype"] = "unmatched"
            out["errors"].append(f"no prototype ({type(exc).__name__}: {exc})")
    orbit = _orbits(structure) if missing else None
    for i in missing:
        rep = int(orbit[i]) if 0 <= i < len(orbit) else i  # a bad index fails below, as 'unknown'
        if str(rep) not in out["polyhedra"]:  # the polyhedron is the same on every site of an orbit
            try:
                out["polyhedra"][str(rep)] = coordination_polyhedron(structure, rep)
            except Exception as exc:  # noqa: BLE001
                out["polyhedra"][str(rep)] = "unknown"
                out["errors"].append(f"site {rep}: no polyhedron ({type(exc).__name__}: {exc})")
        out["polyhedra"][str(i)] = out["polyhedra"][str(rep)]
    return out


def _orbits(structure: Structure) -> np.ndarray:
    """Representative site of each site's symmetry orbit (each its own when no symmetry is found)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        return np.asarray(SpacegroupAnalyzer(structure, symprec=1e-3).get_symmetry_dataset().equivalent_atoms)
    except Exception:  # noqa: BLE001
        return np.arange(len(structure))


def _annotate_one(task: tuple[str, dict, list[int], str | None]) -> tuple[str, dict]:
    """Worker: one material's annotation, read from / written to the cache folder when one is given."""
    material_id, unitcell, sites, cache_dir = task
    path = _annotation_path(unitcell, cache_dir)
    known = _read(path)
    result = material_annotation(unitcell, sites, known)
    if path is not None and result != known:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(result))
        tmp.replace(path)
    return material_id, result


def _read(path: Path | None) -> dict | None:
    """A cached annotation, or None (no cache, no file, or a truncated one: it is recomputed)."""
    if path is None or not path.exists():
        return None
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return known if isinstance(known, dict) and "prototype" in known else None


def _annotation_path(unitcell: dict, cache_dir: str | None) -> Path | None:
    return None if cache_dir is None else Path(cache_dir) / f"{content_key(ANNOTATION_VERSION, unitcell)}.annotation.json"


def annotate(materials: pd.DataFrame, sites: pd.DataFrame, threshold: float = 0.15, workers: int = 1,
             cache_dir: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Prototype label per material; polyhedron for each site with R_onsite >= threshold.

    Parameters
    ----------
    materials, sites
        Tables of :func:`~tdph_workflows.analysis.results.tables` (``materials`` with ``unitcell``).
    threshold
        R_onsite from which a site is "strong" and gets a polyhedron.
    workers
        Processes for the materials not in the cache (spawned, as for the features).
    cache_dir
        Folder of one small JSON per structure (keyed by its content and ``ANNOTATION_VERSION``), so
        a rerun matches and tessellates only new structures; None: no cache.

    Returns
    -------
    tuple of DataFrame
        ``materials`` with a ``prototype`` column ('unmatched' where matching failed) and the strong
        sites with a ``polyhedron`` column ('unknown' where it failed); failures are logged, never fatal.
    """
    materials = materials.copy()
    strong = sites[sites["r_onsite"] >= threshold].copy()
    wanted = strong.groupby("material_id")["site"].apply(lambda s: sorted({int(i) for i in s})).to_dict()
    cache = None if cache_dir is None else str(cache_dir)
    if cache is not None:
        Path(cache).mkdir(parents=True, exist_ok=True)
    tasks = [(m.material_id, m.unitcell, wanted.get(m.material_id, []), cache) for m in materials.itertuples()]
    # complete cache entries are read here: a warm rerun starts no worker processes
    done = [_complete(t) for t in tasks]
    computed = iter(map_tasks(_annotate_one, [t for t, d in zip(tasks, done, strict=True) if d is None], workers))
    results = dict(d if d is not None else next(computed) for d in done)
    for material_id, result in results.items():
        for error in result["errors"]:
            log.warning("%s: %s", material_id, error)
    materials["prototype"] = [results[m]["prototype"] for m in materials["material_id"]]
    if {"formula", "spacegroup_number"} <= set(materials.columns):
        materials["prototype"] = [structure_type(p, f, n) for p, f, n in zip(
            materials["prototype"], materials["formula"], materials["spacegroup_number"], strict=True)]
    strong["polyhedron"] = [results[m]["polyhedra"].get(str(int(i)), "unknown") if m in results else "unknown"
                            for m, i in zip(strong["material_id"], strong["site"], strict=True)]
    return materials, strong


def _complete(task: tuple[str, dict, list[int], str | None]) -> tuple[str, dict] | None:
    """The cached annotation of a task when it covers every wanted site, else None."""
    material_id, unitcell, sites, cache_dir = task
    known = _read(_annotation_path(unitcell, cache_dir))
    if known is None:
        return None
    return (material_id, known) if all(str(i) in known.get("polyhedra", {}) for i in sites) else None


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
