"""Model vs DFT forces on displacement-force sets, binned by displacement amplitude."""

from __future__ import annotations

import numpy as np
import pytest

from tdph_workflows.finetune.force_sets import ForceSet, errors_by_amplitude, load_force_set, model_forces


def test_errors_are_binned_by_the_configurations_mean_amplitude():
    rng = np.random.default_rng(0)
    n = 4
    directions = rng.standard_normal((3, n, 3))
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    disp = directions * np.array([0.03, 0.15, 0.5])[:, None, None]
    forces = rng.standard_normal((3, n, 3))
    fs = ForceSet("toy", np.ones(n, int), np.eye(3) * 5, np.zeros((n, 3)), disp, forces)
    assert np.allclose(fs.amplitudes, [0.03, 0.15, 0.5])
    predicted = forces + np.array([0.01, 0.1, 1.0])[:, None, None]  # a known error per configuration
    rows = errors_by_amplitude(fs, predicted, bins=(0.0, 0.1, 0.2, 1.0, 2.0))
    assert [(r["amplitude_min"], r["configs"]) for r in rows] == [(0.0, 1), (0.1, 1), (0.2, 1)]  # empty bin left out
    assert [r["force_mae"] for r in rows] == pytest.approx([0.01, 0.1, 1.0])
    assert rows[1]["mean_abs_force_dft"] == pytest.approx(np.abs(forces[1]).mean())


def test_kcl_set_loads_and_the_model_error_grows_with_amplitude(model_dir):
    """The shared KCl-SSCHA DFT set: 120 supercells of 64 atoms at 0.03-1.5 A (evaluation only, never trained on)."""
    from conftest import DATA_DIR, require

    from tdph_workflows.potentials import resolve_calculator

    path = require(DATA_DIR / "phonopy_repo" / "KCl-SSCHA" / "phonopy_mlpsscha_params_KCl-120.yaml.xz", "KCl set")
    fs = load_force_set(path)
    assert fs.displacements.shape == fs.forces.shape == (120, 64, 3)
    assert 0.02 < fs.amplitudes.min() < 0.05 and 1.3 < fs.amplitudes.max() < 1.6
    pick = np.argsort(fs.amplitudes)[[0, 1, 60, 61, -2, -1]]  # two of the smallest, middle and largest
    subset = ForceSet(fs.name, fs.numbers, fs.lattice, fs.positions, fs.displacements[pick], fs.forces[pick])
    rows = errors_by_amplitude(subset, model_forces(subset, resolve_calculator(str(model_dir))),
                               bins=(0.0, 0.1, 1.0, 2.0))
    assert [r["configs"] for r in rows] == [2, 2, 2]
    small, middle, large = (r["force_mae"] for r in rows)
    # a PBE potential on PBEsol KCl: ~8 meV/A near equilibrium, ~0.3 eV/A (11 % of |F|) at 0.6 A, and
    # no longer meaningful at 1.5 A where ions nearly touch (measured 29 of 50 eV/A)
    assert small < 0.02 and middle < 0.2 * rows[1]["mean_abs_force_dft"] and large > 10 * middle
    with pytest.raises(ValueError, match="no random-displacement forces"):
        load_force_set(DATA_DIR / "phonopy_repo" / "KCl-SSCHA" / "phonopy_fc222_JPCM2022.yaml.xz")
