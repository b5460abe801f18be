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
    return [label for f in _global_featurizers() for label in f.feature_labels()]


def global_features(structure: Structure) -> np.ndarray:
    comp_f, dens_f, het_f = _global_featurizers()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.array([*comp_f.featurize(structure.composition), *dens_f.featurize(structure),
                         *het_f.featurize(structure)], float)


def local_feature_labels() -> list[str]:
    labels = []
    for f in _local_featurizers():
        names = f.feature_labels()
        if type(f).__name__ == "VoronoiFingerprint":
            names = [n for n in names if n in VORONOI_STATS]
        labels += names
    return labels


def local_features(structure: Structure, index: int) -> np.ndarray:
    values: list[float] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in _local_featurizers():
            out = f.featurize(structure, index)
            if type(f).__name__ == "VoronoiFingerprint":
                out = [v for n, v in zip(f.feature_labels(), out, strict=True) if n in VORONOI_STATS]
            values += list(out)
    return np.array(values, float)


def featurize_materials(materials: pd.DataFrame) -> pd.DataFrame:
    """Global features, indexed by material_id; a material that fails is logged and left out."""
    rows, ids = [], []
    for rec in materials.itertuples():
        try:
            rows.append(global_features(Structure.from_dict(rec.unitcell)))
            ids.append(rec.material_id)
        except Exception as exc:  # noqa: BLE001 (one odd structure never stops the analysis)
            log.warning("%s: no global features (%s)", rec.material_id, exc)
    return pd.DataFrame(rows, index=pd.Index(ids, name="material_id"), columns=global_feature_labels())


def featurize_sites(materials: pd.DataFrame, sites: pd.DataFrame) -> pd.DataFrame:
    """Local features, indexed by (material_id, site)."""
    cells = {m.material_id: Structure.from_dict(m.unitcell) for m in materials.itertuples()}
    rows, keys = [], []
    for rec in sites.itertuples():
        if rec.material_id not in cells:
            continue
        try:
            rows.append(local_features(cells[rec.material_id], int(rec.site)))
            keys.append((rec.material_id, int(rec.site)))
        except Exception as exc:  # noqa: BLE001
            log.warning("%s site %s: no local features (%s)", rec.material_id, rec.site, exc)
    return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(keys, names=["material_id", "site"]),
                        columns=local_feature_labels())
