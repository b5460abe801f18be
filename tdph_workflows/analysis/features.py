"""matminer descriptors (paper Methods B): ~140 global features per material, ~70 local per site.

Global: Magpie elemental-property statistics (22 properties x 6 statistics: Mendeleev number, atomic
weight, covalent radius, electronegativity, valence and unfilled orbitals, ...), density, volume per
atom and packing fraction, and the Voronoi bond-length / neighbour-distance variation.
Local: the site's Magpie properties, their Voronoi-area-weighted differences to the neighbours,
average bond length and angle, coordination number, Voronoi index (faces with 3-10 edges), Voronoi cell
volume and related statistics.
"""

from __future__ import annotations

import functools
import logging
import warnings

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from .cache import content_key, map_tasks

log = logging.getLogger(__name__)

MAGPIE_PROPERTIES = [
    "Number", "MendeleevNumber", "AtomicWeight", "MeltingT", "Column", "Row", "CovalentRadius",
    "Electronegativity", "NsValence", "NpValence", "NdValence", "NfValence", "NValence", "NsUnfilled",
    "NpUnfilled", "NdUnfilled", "NfUnfilled", "NUnfilled", "GSvolume_pa", "GSbandgap", "GSmagmom",
    "SpaceGroupNumber",
]
VORONOI_STATS = [*(f"Voro_index_{k}" for k in range(3, 11)), "Voro_vol_sum", "Voro_area_sum", "Voro_vol_mean", "Voro_vol_std_dev", "Voro_area_mean",
                 "Voro_area_std_dev", "Voro_dist_mean", "Voro_dist_std_dev", "Voro_dist_minimum", "Voro_dist_maximum"]


@functools.cache
def _global_featurizers():
    from matminer.featurizers.composition import ElementProperty
    from matminer.featurizers.structure import DensityFeatures, StructuralHeterogeneity

    return ElementProperty.from_preset("magpie", impute_nan=True), DensityFeatures(), StructuralHeterogeneity()


@functools.cache
def _local_featurizers():
    from matminer.featurizers.site import (
        AverageBondAngle,
        AverageBondLength,
        CoordinationNumber,
        LocalPropertyDifference,
        SiteElementalProperty,
        VoronoiFingerprint,
    )
    from matminer.utils.data import MagpieData
    from pymatgen.analysis.local_env import VoronoiNN

    magpie = MagpieData(impute_nan=True)
    voronoi = VoronoiNN(cutoff=13.0)
    return (SiteElementalProperty(magpie, MAGPIE_PROPERTIES), LocalPropertyDifference(magpie, properties=MAGPIE_PROPERTIES),
            AverageBondLength(voronoi), AverageBondAngle(voronoi), CoordinationNumber(voronoi, use_weights="sum"),
            VoronoiFingerprint(cutoff=13.0, use_symm_weights=False, stats_vol=["mean", "std_dev"],
                               stats_area=["mean", "std_dev"], stats_dist=["mean", "std_dev", "minimum", "maximum"]))


def global_feature_labels() -> list[str]:
    """Column names of `global_features`, in order (Magpie composition, density, structural heterogeneity)."""
    return [label for f in _global_featurizers() for label in f.feature_labels()]


def global_features(structure: Structure) -> np.ndarray:
    """Global descriptor vector of one structure, ordered as `global_feature_labels` (warnings silenced)."""
    comp_f, dens_f, het_f = _global_featurizers()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.array([*comp_f.featurize(structure.composition), *dens_f.featurize(structure),
                         *het_f.featurize(structure)], float)


def local_feature_labels() -> list[str]:
    """Column names of `local_features`, in order; of the Voronoi fingerprint only `VORONOI_STATS` are kept."""
    labels = []
    for f in _local_featurizers():
        names = f.feature_labels()
        if type(f).__name__ == "VoronoiFingerprint":
            names = [n for n in names if n in VORONOI_STATS]
        labels += names
    return labels


def local_features(structure: Structure, index: int) -> np.ndarray:
    """Local descriptor vector of site `index`, ordered as `local_feature_labels` (warnings silenced)."""
    values: list[float] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in _local_featurizers():
            out = f.featurize(structure, index)
            if type(f).__name__ == "VoronoiFingerprint":
                out = [v for n, v in zip(f.feature_labels(), out, strict=True) if n in VORONOI_STATS]
            values += list(out)
    return np.array(values, float)


FEATURE_VERSION = "1"  # bump when the featurizer list or its settings change: invalidates caches


def material_features(unitcell: dict, sites: list[int] | None = None) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Global features and local features of the requested sites of one material.

    Local features are computed once per symmetry-equivalent orbit and copied to the other sites of it
    (the descriptors are invariant under the space group), which is what makes thousands of sites cheap:
    the Voronoi tessellations dominate, and the 150-material campaign has ~4x fewer orbits than sites.
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    structure = Structure.from_dict(unitcell)
    wanted = range(len(structure)) if sites is None else sites
    try:
        orbit = SpacegroupAnalyzer(structure, symprec=1e-3).get_symmetry_dataset().equivalent_atoms
    except Exception:  # noqa: BLE001 (no symmetry found: every site is its own orbit)
        orbit = np.arange(len(structure))
    computed: dict[int, np.ndarray] = {}
    local = {}
    for i in wanted:
        rep = int(orbit[i])
        if rep not in computed:
            computed[rep] = local_features(structure, rep)
        local[int(i)] = computed[rep]
    return global_features(structure), local


def _cache_path(unitcell: dict, sites: list[int], cache_dir: str | None):
    from pathlib import Path

    return None if cache_dir is None else Path(cache_dir) / f"{content_key(FEATURE_VERSION, unitcell, sorted(sites))}.npz"


def _featurize_one(task: tuple[str, dict, list[int], str | None]) -> tuple[str, np.ndarray | None, dict, str | None]:
    """Worker: one material, read from / written to the cache folder when one is given."""
    material_id, unitcell, sites, cache_dir = task
    path = _cache_path(unitcell, sites, cache_dir)
    if path is not None and path.exists():
        with np.load(path) as data:
            return material_id, data["global"], dict(zip(data["sites"].tolist(), data["local"], strict=True)), None
    try:
        glob, local = material_features(unitcell, sites)
    except Exception as exc:  # noqa: BLE001 (one odd structure never stops the analysis)
        return material_id, None, {}, f"{type(exc).__name__}: {exc}"
    if path is not None:
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **{"global": glob, "sites": np.array(sorted(local), int),
                         "local": np.array([local[i] for i in sorted(local)]).reshape(len(local), -1)})
        tmp.replace(path)
    return material_id, glob, local, None


def featurize(materials: pd.DataFrame, sites: pd.DataFrame, workers: int = 1,
              cache_dir: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Global features (index material_id) and local features (index (material_id, site)).

    Materials run in `workers` spawned processes (matminer is pure Python; spawn, not fork, because the
    parent may hold torch/OpenMP threads); with `cache_dir`, each material's features are kept as one
    .npz keyed by its structure, sites and FEATURE_VERSION, so a rerun computes only new materials.
    A material that fails is logged and left out of both tables.
    """
    site_lists = sites.groupby("material_id")["site"].apply(lambda s: sorted(int(i) for i in s)).to_dict()
    tasks = [(m.material_id, m.unitcell, site_lists.get(m.material_id, []), cache_dir) for m in materials.itertuples()]
    if cache_dir is not None:
        from pathlib import Path

        Path(cache_dir).mkdir(parents=True, exist_ok=True)
    # cached materials are read here: a warm rerun starts no worker processes (each imports pymatgen)
    cached = [t[3] is not None and _cache_path(t[1], t[2], t[3]).exists() for t in tasks]
    computed = iter(map_tasks(_featurize_one, [t for t, c in zip(tasks, cached, strict=True) if not c], workers))
    results = [_featurize_one(t) if c else next(computed) for t, c in zip(tasks, cached, strict=True)]
    g_rows, g_ids, l_rows, l_keys = [], [], [], []
    for material_id, glob, local, error in results:
        if error is not None:
            log.warning("%s: no features (%s)", material_id, error)
            continue
        g_rows.append(glob)
        g_ids.append(material_id)
        for i in sorted(local):
            l_rows.append(local[i])
            l_keys.append((material_id, i))
    x_global = pd.DataFrame(g_rows, index=pd.Index(g_ids, name="material_id"), columns=global_feature_labels())
    x_local = pd.DataFrame(l_rows, index=pd.MultiIndex.from_tuples(l_keys, names=["material_id", "site"]),
                           columns=local_feature_labels())
    return x_global, x_local
