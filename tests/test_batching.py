"""Batched matgl forces (the GPU path) equal per-structure forces."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.io.ase import AseAtomsAdaptor

from tdph_workflows.engine import cubic_srtio3
from tdph_workflows.potentials import BatchedForces


def _structures(mdr_dir):
    """SrTiO3 2x2x2 (40 atoms) and 3x3x3 (135), NaCl conventional 2x2x2 (64), all rattled."""
    from tdph_workflows.io.mdr import load_mdr_entry
    from tdph_workflows.io.structures import phonopy_to_ase

    rng = np.random.default_rng(3)
    sto = AseAtomsAdaptor.get_atoms(cubic_srtio3())
    nacl = load_mdr_entry(mdr_dir / "curated" / "mp-22862_NaCl").unitcell
    out = [sto.repeat(2), sto.repeat(3), phonopy_to_ase(nacl).repeat(2), sto.repeat(2)]
    for a in out:
        a.positions = a.positions + rng.normal(0, 0.05, a.positions.shape)
    return out


def _single(m3gnet, atoms):
    a = atoms.copy()
    a.calc = m3gnet
    return np.array(a.get_forces())


def test_batched_forces_equal_single_structure_forces(m3gnet, mdr_dir):
    structures = _structures(mdr_dir)
    reference = [_single(m3gnet, a) for a in structures]
    for max_structures in (1, 2, 4):
        got = BatchedForces(m3gnet.potential, max_structures=max_structures)(structures)
        assert [g.shape for g in got] == [r.shape for r in reference]
        for g, r in zip(got, reference, strict=True):
            np.testing.assert_allclose(g, r, atol=1e-5, rtol=0)


def test_atom_limit_splits_batches_and_displaced_matches(m3gnet, mdr_dir):
    structures = _structures(mdr_dir)
    bf = BatchedForces(m3gnet.potential, max_structures=16, max_atoms=100)
    assert [(s.start, s.stop) for s in bf._chunks([len(a) for a in structures])] == [(0, 1), (1, 2), (2, 3), (3, 4)]
    sto = structures[0]
    pos = np.array([sto.positions, sto.positions + 0.01, sto.positions - 0.02])
    many = bf.displaced(sto, pos)
    for p, f in zip(pos, many, strict=True):
        a = sto.copy()
        a.positions = p
        np.testing.assert_allclose(f, _single(m3gnet, a), atol=1e-5, rtol=0)


def test_bad_limits_rejected(m3gnet):
    with pytest.raises(ValueError):
        BatchedForces(m3gnet.potential, max_structures=0)
