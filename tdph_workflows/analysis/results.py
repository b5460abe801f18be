"""Campaign results as tables: one row per material, one row per unit-cell site.

Reads the registry's COMPLETED summaries (the database of record for campaigns); works the same on a
real campaign and on synthetic records in tests.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

CRYSTAL_SYSTEMS = [(2, "triclinic"), (15, "monoclinic"), (74, "orthorhombic"), (142, "tetragonal"),
                   (167, "trigonal"), (194, "hexagonal"), (230, "cubic")]


def crystal_system(spacegroup_number: int) -> str:
    """Crystal system (``triclinic`` ... ``cubic``) of an international space-group number; ValueError above 230."""
    for last, name in CRYSTAL_SYSTEMS:
        if spacegroup_number <= last:
            return name
    raise ValueError(f"space group number {spacegroup_number} out of range")


def tables(summaries: Iterable[dict], temperature: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(materials, sites) from MaterialSummary dicts at one temperature (default: the first stored)."""
    materials, sites = [], []
    for s in summaries:
        temps = s.get("temperatures") or []
        if not temps:
            continue
        t = temps[0] if temperature is None else next((x for x in temps if abs(x["temperature"] - temperature) < 1e-6),
                                                      None)
        if t is None:
            continue
        dft = s.get("dft_reference") or {}
        materials.append({
            "material_id": s["material_id"], "formula": s["formula"], "elements": " ".join(s["elements"]),
            "spacegroup": s["spacegroup"], "spacegroup_number": s["spacegroup_number"],
            "crystal_system": crystal_system(s["spacegroup_number"]), "n_sites": len(t["sites"]),
            "temperature": t["temperature"], "l2_shift": t["l2_shift"], "l2_stderr": t["l2_stderr"],
            "r_full": t["r_full"], "r_full_robust": t["r_full_robust"], "r_onsite_max": t["r_onsite_max"],
            "harmonic_min_frequency": s["harmonic_min_frequency"], "min_frequency_T": t["min_frequency"],
            "dft_deviation": dft.get("relative_deviation"), "dft_mae_thz": dft.get("mae_thz"),
            "n_samples": t["n_samples"], "converged": t["converged"], "max_rms_displacement": t["max_rms_displacement"],
            "wall_time": s.get("wall_time"), "unitcell": s.get("unitcell"), "calculator": s.get("calculator", ""),
            "grade": t.get("grade") or s.get("grade") or "",
            "grade_reasons": "; ".join(t.get("grade_reasons") or s.get("grade_reasons") or []),
        })
        for site in t["sites"]:
            sites.append({"material_id": s["material_id"], "formula": s["formula"], "site": site["index"],
                          "element": site["element"], "wyckoff": site["wyckoff"], "r_onsite": site["r_onsite"],
                          "r_onsite_stderr": site["r_onsite_stderr"]})
    return pd.DataFrame(materials), pd.DataFrame(sites)


def from_database(db, campaign: str | None = None, temperature: float | None = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(materials, sites) of the COMPLETED records of a campaign database (see :func:`tables`).

    Parameters
    ----------
    db
        The campaign database (:class:`~tdph_workflows.campaign.settings.DatabaseSettings`).
    campaign
        Campaign name; None for every campaign.
    temperature
        Temperature of the rows (K); None for each material's first.
    """
    from ..campaign import registry
    from ..campaign.queries import completed_summaries

    return tables(completed_summaries(registry.collection(db), campaign), temperature)
