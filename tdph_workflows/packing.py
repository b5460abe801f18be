"""Compact storage form of large numeric arrays inside result documents.

jobflow sanitizes every output number by number and maggma's GridFS store writes JSON text, which
for a 400-atom supercell's force constants (1.4 M floats) costs seconds per material in a campaign.
A packed array is one small dict (dtype, shape, zlib-compressed base64 bytes), exact for float64,
and it is what the job store's data store (GridFS) receives.
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

import numpy as np

PACKED = "tdph.packed_array"
MIN_PACKED_SIZE = 512  # smaller lists stay readable in the database


def pack(array: Any) -> dict:
    """Packed form of an array-like: float64 bytes, zlib level 1, base64 (integers come back as floats)."""
    a = np.ascontiguousarray(array, dtype=float)
    return {"format": PACKED, "dtype": "float64", "shape": list(a.shape),
            "zlib_b64": base64.b64encode(zlib.compress(a.tobytes(), 1)).decode("ascii")}


def unpack(packed: dict) -> np.ndarray:
    """The array (a writable copy, original shape) of a dict made by `pack`."""
    raw = zlib.decompress(base64.b64decode(packed["zlib_b64"]))
    return np.frombuffer(raw, dtype=packed["dtype"]).reshape(packed["shape"]).copy()


def is_packed(value: Any) -> bool:
    """True for a dict made by `pack`."""
    return isinstance(value, dict) and value.get("format") == PACKED


def _as_numeric_array(value: list) -> np.ndarray | None:
    """The list as a float array when it is rectangular and numeric, with at least MIN_PACKED_SIZE numbers."""
    probe = value
    while isinstance(probe, list) and probe:
        probe = probe[0]
    if isinstance(probe, bool) or not isinstance(probe, (int, float)):
        return None
    try:
        array = np.asarray(value, dtype=float)
    except (ValueError, TypeError):  # ragged or mixed
        return None
    return array if array.size >= MIN_PACKED_SIZE else None


def pack_tree(value: Any) -> Any:
    """Copy of a JSON-like tree with every large numeric list packed."""
    if isinstance(value, dict):
        return {k: pack_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        array = _as_numeric_array(value)
        if array is not None:
            return pack(array)
        return [pack_tree(v) for v in value]
    return value


def unpack_tree(value: Any) -> Any:
    """Inverse of pack_tree: packed arrays back to nested lists."""
    if is_packed(value):
        return unpack(value).tolist()
    if isinstance(value, dict):
        return {k: unpack_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        if value and isinstance(value[0], (int, float)):  # a plain numeric list: nothing packed below
            return value
        return [unpack_tree(v) for v in value]
    return value
