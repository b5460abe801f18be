"""Born charges of a polar MDR entry reach the written phonopy files and the band structure (LO-TO splitting)."""

from __future__ import annotations

import numpy as np
import phonopy
import pytest

from tdph_workflows.engine import run_temperature_phonons
from tdph_workflows.io.mdr import load_mdr_entry
from tdph_workflows.io.outputs import write_outputs

pytestmark = [pytest.mark.model, pytest.mark.data, pytest.mark.slow]


def _near_gamma_along_x(phonon) -> np.ndarray:
    phonon.run_qpoints([[1e-4, 0, 0]])
    return np.sort(phonon.get_qpoints_dict()["frequencies"][0])


def test_nacl_lo_mode_in_written_files_and_bands(mdr_dir, m3gnet, tmp_path):
    source = mdr_dir / "curated" / "mp-22862_NaCl"
    dft = load_mdr_entry(source).phonon
    dft.produce_force_constants()
    dft_lo = _near_gamma_along_x(dft)[-1]
    assert dft_lo == pytest.approx(7.67, abs=0.05)  # MDR PBEsol with its BORN file
    result = run_temperature_phonons(source, m3gnet, [300.0])
    assert result.nac_params is not None and np.shape(result.nac_params["born"]) == (2, 3, 3)
    files = write_outputs(result, tmp_path)
    harmonic = phonopy.load(files["harmonic"], log_level=0)
    assert harmonic.nac_params is not None  # Born charges and epsilon_inf are in the file
    lo, to = _near_gamma_along_x(harmonic)[-1], _near_gamma_along_x(harmonic)[-2]
    assert abs(lo - dft_lo) < 0.4 and lo - to > 2.0  # LO-TO split of ~2.6 THz (DFT 7.67 vs 5.05)
    renormalized = phonopy.load(files["300K"], log_level=0)
    assert renormalized.nac_params is not None and _near_gamma_along_x(renormalized)[-1] > lo - 1.0
    # the stored dispersion shows the split: next to Gamma the top band is LO, far above the TO pair
    bands = result.band_structure()
    gamma = [k for k, q in enumerate(bands.qpoints) if q.label == "Γ"][0]
    beside = gamma + 1 if gamma + 1 < len(bands.qpoints) and bands.qpoints[gamma + 1].label is None else gamma - 1
    top = np.sort(bands.bands[:, beside])
    assert top[-1] - top[-2] > 2.0 and bands.has_nac
