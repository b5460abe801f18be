"""Packed arrays: exact round trip, only large rectangular numeric lists, used by jobflow's sanitizer."""

from __future__ import annotations

import json

import numpy as np
from monty.json import MontyDecoder, jsanitize

from tdph_workflows.engine import run_temperature_phonons
from tdph_workflows.packing import MIN_PACKED_SIZE, is_packed, pack_tree, unpack_tree
from tdph_workflows.schemas import TDPHResult


def test_pack_tree_round_trip_is_exact_and_leaves_small_ragged_and_text_alone():
    rng = np.random.default_rng(1)
    big = rng.standard_normal((12, 12, 3, 3)).tolist()
    tree = {"fc": big, "small": [1.0, 2.0], "ragged": [[1.0] * 600, [2.0] * 3], "labels": ["G"] * 800,
            "flags": [True] * 700, "nested": [{"x": rng.standard_normal(700).tolist()}]}
    packed = pack_tree(tree)
    assert is_packed(packed["fc"]) and is_packed(packed["nested"][0]["x"]) and is_packed(packed["ragged"][0])
    assert packed["small"] == [1.0, 2.0] and packed["labels"] == tree["labels"] and packed["flags"] == tree["flags"]
    assert not is_packed(packed["ragged"][1])
    assert unpack_tree(json.loads(json.dumps(packed))) == tree  # bit-exact through JSON text
    assert len(json.dumps(packed["fc"])) < 0.6 * len(json.dumps(big))
    assert MIN_PACKED_SIZE <= 1296


def test_result_document_is_packed_for_stores_and_plain_for_json():
    result = run_temperature_phonons(_al(), "emt", [300], supercell_matrix=[2, 2, 2],
                                     settings=_fast_settings(), material_id="Al-pack")
    import tdph_workflows.makers.jobs  # noqa: F401 (the jobflow layer registers the packed encoding)

    stored = jsanitize(result, strict=True, allow_bson=True)  # what jobflow's JobStore.update does
    assert stored["@class"] == "TDPHResult" and is_packed(stored["temperatures"][0]["force_constants"])
    assert isinstance(result.model_dump(mode="json")["temperatures"][0]["force_constants"], list)
    back = MontyDecoder().process_decoded(stored)
    assert isinstance(back, TDPHResult) and back == result
    assert TDPHResult.from_dict(json.loads(json.dumps(stored))) == result


def _al():
    from ase.build import bulk
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_structure(bulk("Al", "fcc", a=4.05))


def _fast_settings():
    from tdph_workflows.core.sscha import SSCHASettings

    return SSCHASettings(min_pairs=8, max_pairs=8, seed=3)
