"""Build campaign items, deduplicate them and add them to the LaunchPad as FireWorks workflows."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..core.sscha import SSCHASettings
from ..io.mdr import material_id_from_path
from ..potentials import model_fingerprint, model_spec
from . import registry
from .keys import item_key, satisfying_settings, structure_fingerprint
from .settings import DatabaseSettings, launchpad

CATEGORIES = ("gpu", "cpu")  # the FireWorks categories the shipped workers pull


@dataclass
class Item:
    """One material to submit: its id, source (MDR entry or structure file, absolute) and cost hint."""

    material_id: str
    source: str
    cost_hint: int = 0  # e.g. supercell atoms: larger runs first, so no long material is left for the end


@dataclass
class SubmitReport:
    """What `submit` did: new and skipped (already known or repeated) items, fireworks added, dedup keys."""

    new: int
    skipped: int
    fireworks: int
    keys: list[str]  # dedup keys of every submitted item, new or already known


def _index_atoms(mdr_dir: Path) -> dict[str, tuple[int, int]]:
    """(natoms_primitive, natoms_supercell) by tarball name from the phonondb index.csv beside or above the folder."""
    for candidate in (mdr_dir / "index.csv", mdr_dir.parent / "index.csv"):
        if candidate.exists():
            with open(candidate) as fh:
                return {r["raw_tarball"]: (int(r["natoms_primitive"]), int(r["natoms_supercell"]))
                        for r in csv.DictReader(fh)}
    return {}


def mdr_items(mdr_dir: str | Path, max_atoms: int = 20, limit: int | None = None) -> list[Item]:
    """Entries of an MDR folder (tarballs or entry folders), filtered by primitive-cell size via index.csv."""
    mdr_dir = Path(mdr_dir)
    if not mdr_dir.is_dir():
        raise FileNotFoundError(f"MDR folder {mdr_dir} not found")
    natoms = _index_atoms(mdr_dir)
    entries = sorted(p for p in mdr_dir.iterdir() if p.name.endswith((".tar.lzma", ".tar.xz")) or p.is_dir())
    items = [Item(material_id_from_path(p), str(p.resolve()), natoms.get(p.name, (0, 0))[1]) for p in entries
             if natoms.get(p.name, (0, 0))[0] < max_atoms]
    return items[:limit] if limit else items


def structure_items(paths: Iterable[str | Path]) -> list[Item]:
    """Items of structure files, named by file stem (no cost hint)."""
    return [Item(Path(p).stem, str(Path(p).resolve())) for p in paths]


def submit(
    items: list[Item],
    db: DatabaseSettings,
    calculator: str | None = None,
    temperatures: list[float] = (300.0,),
    settings: dict | None = None,
    chunk_size: int = 1,
    category: str = "gpu",
    campaign: str = "default",
    progress: Callable[[int, int], None] | None = None,
) -> SubmitReport:
    """Register items by dedup key and add only the new ones, K materials per firework.

    The fireworks carry no connection and no job store: workers use the configuration of their own node
    (``JOBFLOW_CONFIG_FILE``, the launchpad file), so no credential is ever stored in the database.
    A FAILED material whose input file was corrected (same id, source, settings and model; new file
    content) is superseded by the new submission, and its fizzled firework defused, so a later
    ``campaign rerun`` cannot compute it a second time. A material known under settings whose result
    satisfies these (``keys.SATISFIED_BY``: the same run without a statistics cap) is not added again.
    """
    from jobflow.managers.fireworks import flow_to_workflow

    from .jobs import campaign_chunk_job
    from .stores import campaign_job_store, ensure_indexes

    settings = asdict(SSCHASettings(**(settings or {})))
    ensure_indexes(campaign_job_store(db))
    temps = [float(t) for t in temperatures]
    spec = calculator or model_spec()
    model = model_fingerprint(spec) or spec  # the same weights at another path are the same model
    coll = registry.collection(db)
    new: list[dict] = []
    seen: set[str] = set()
    for k, item in enumerate(items):
        try:
            fingerprint = structure_fingerprint(item.source)
        except OSError as exc:
            fingerprint = f"unreadable:{exc}"
        key = item_key(item.material_id, fingerprint, {"T": temps, **settings}, model)
        satisfying = [item_key(item.material_id, fingerprint, {"T": temps, **other}, model)
                      for other in satisfying_settings(settings)]
        found = coll.find_one({"key": {"$in": [key, *satisfying]}}, {"key": 1}) if key not in seen else None
        if key not in seen and found is None:
            new.append({"key": key, "material_id": item.material_id, "source": item.source,
                        "cost_hint": item.cost_hint,
                        "setup_key": item_key(item.material_id, "", {"T": temps, **settings}, model)})
        seen.add(found["key"] if found else key)
        if progress:
            progress(k + 1, len(items))
    lp = launchpad(db)
    n_fw = 0
    new.sort(key=lambda c: -c["cost_hint"])  # longest first: a short tail when the workers run out
    for start in range(0, len(new), chunk_size):
        chunk = new[start:start + chunk_size]
        job = campaign_chunk_job([{k: c[k] for k in ("key", "material_id", "source")} for c in chunk],
                                 calculator, temps, settings)
        job.name = "tdph " + ",".join(c["material_id"] for c in chunk)[:80]
        wf = flow_to_workflow(job)  # no store: each worker uses its node's jobflow configuration
        for fw in wf.fws:
            fw.spec["_category"] = category
            fw.spec["tdph_keys"] = [c["key"] for c in chunk]
            fw.spec["tdph_campaign"] = campaign
            fw.spec["_priority"] = max(c["cost_hint"] for c in chunk)
        lp.add_wf(wf)
        # registered only once its firework exists, so a failed submission leaves nothing stranded
        for c in chunk:
            registry.register(coll, c["key"], c["material_id"], c["source"], campaign, c["setup_key"])
            _supersede_failed(coll, lp, c)
        n_fw += 1
    return SubmitReport(new=len(new), skipped=len(items) - len(new), fireworks=n_fw, keys=sorted(seen))


def _supersede_failed(coll, lp, item: dict) -> None:
    """Retire FAILED records of the same material and setup whose input has since changed."""
    stale = list(coll.find({"setup_key": item["setup_key"], "source": item["source"], "state": registry.FAILED,
                            "key": {"$ne": item["key"]}}, {"key": 1}))
    for rec in stale:
        registry.supersede(coll, rec["key"], item["key"])
        for fw_id in lp.get_fw_ids({"spec.tdph_keys": [rec["key"]], "state": "FIZZLED"}):
            lp.defuse_fw(fw_id)


DEMO_MATERIALS = {  # (spacegroup, lattice constant, species, coordinates): the code builds them itself
    "NaCl": (225, 5.60, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "KCl": (225, 6.29, ["K", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "MgO": (225, 4.21, ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "CsCl": (221, 4.07, ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "SrTiO3": (221, 3.905, ["Sr", "Ti", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]),
    "KMgF3": (221, 3.99, ["K", "Mg", "F"], [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0]]),
    "Si": (227, 5.43, ["Si"], [[0, 0, 0]]),
    "CaF2": (225, 5.46, ["Ca", "F"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
}


def write_demo_structures(out: str | Path) -> list[Item]:
    """Write the built-in demo materials as CIFs under ``out/structures`` and return them as campaign items.

    Parameters
    ----------
    out
        The demo's output folder.

    Returns
    -------
    list of Item
        One item per entry of :data:`DEMO_MATERIALS`, with the CIF's absolute path as source.
    """
    from pymatgen.core import Lattice, Structure

    items = []
    for name, (sg, a, species, coords) in DEMO_MATERIALS.items():
        path = Path(out) / "structures" / f"{name}.cif"
        path.parent.mkdir(parents=True, exist_ok=True)
        Structure.from_spacegroup(sg, Lattice.cubic(a), species, coords).to(filename=str(path))
        items.append(Item(name, str(path.resolve())))
    return items
