"""Deduplication key of a campaign item: material id + structure hash + settings + model id."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def structure_fingerprint(source: Any) -> str:
    """Hash of the input: file bytes for files/entries, rounded lattice+sites for structures."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_file():
            return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        if path.is_dir():
            h = hashlib.sha256()
            for f in sorted(p for p in path.rglob("*") if p.is_file()):
                h.update(f.name.encode())
                h.update(f.read_bytes())
            return h.hexdigest()[:16]
        raise FileNotFoundError(path)
    from pymatgen.core import Structure

    s = source if isinstance(source, Structure) else Structure.from_dict(source)
    payload = {"lattice": [[round(x, 6) for x in row] for row in s.lattice.matrix.tolist()],
               "sites": sorted((site.specie.symbol, *[round(x % 1.0, 6) % 1.0 for x in site.frac_coords]) for site in s)}
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


# settings added after campaigns existed, with the value that reproduces the earlier behaviour: left out of
# the key at that value, so a resubmission of an existing campaign finds its results instead of recomputing
KEY_NEUTRAL_SETTINGS = {"sc_reuse_samples": False, "known_failure_pairs": None, "known_failure_keeps_cell": False,
                        "sc_predict": False}


# settings that only lower the accuracy of some materials graded F anyway (statistics, supercell): a result
# computed at the listed value satisfies a request at any other value, so a campaign that turns them on
# computes nothing again
SATISFIED_BY = {"known_failure_pairs": None, "known_failure_keeps_cell": False}


def satisfying_settings(settings: dict) -> list[dict]:
    """Other settings whose results satisfy a request for ``settings`` (``SATISFIED_BY``).

    Each non-empty subset of the requested ``SATISFIED_BY`` settings is put back to its listed value.
    """
    from itertools import combinations

    changed = [k for k, v in SATISFIED_BY.items() if k in settings and settings[k] != v]
    return [{**settings, **{k: SATISFIED_BY[k] for k in subset}}
            for n in range(1, len(changed) + 1) for subset in combinations(changed, n)]


def item_key(material_id: str, fingerprint: str, settings: dict, model: str) -> str:
    """The deduplication key (24 hex): sha256 of id, structure fingerprint, settings and model id as sorted JSON.

    Settings of ``KEY_NEUTRAL_SETTINGS`` at their neutral value do not enter the key.
    """
    settings = {k: v for k, v in settings.items() if KEY_NEUTRAL_SETTINGS.get(k, object()) != v}
    blob = json.dumps({"id": material_id, "structure": fingerprint, "settings": settings, "model": model},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]
