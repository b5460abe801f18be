"""Model vs DFT harmonic phonons on MDR entries (zero-shot accuracy of a potential)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase.calculators.calculator import Calculator
from phonopy import Phonopy
from pymatgen.core import Composition

from ..core import phonons
from ..io.mdr import MDREntry
from ..io.structures import phonopy_to_ase
from .forces import ForceModel


@dataclass
class HarmonicComparison:
    """A model's harmonic frequencies against DFT's at the MDR supercell's commensurate q-points."""

    material_id: str
    formula: str
    frequencies_model: np.ndarray  # commensurate, Gamma acoustic removed (THz)
    frequencies_dft: np.ndarray
    max_residual_force: float

    @property
    def mae_thz(self) -> float:
        """Mean absolute frequency difference (THz), all modes."""
        return float(np.abs(self.frequencies_model - self.frequencies_dft).mean())

    @property
    def relative_deviation(self) -> float:
        """|omega_model - omega_DFT| / |omega_DFT| over all modes (2-norms; the paper's outlier measure)."""
        difference = self.frequencies_model - self.frequencies_dft
        return float(np.linalg.norm(difference) / np.linalg.norm(self.frequencies_dft))

    @property
    def stability_agrees(self) -> bool:
        """Both spectra stable, or both with a mode below -0.1 THz."""
        return bool((self.frequencies_model.min() < -0.1) == (self.frequencies_dft.min() < -0.1))


def compare_harmonic_to_dft(entry: MDREntry, calc: Calculator) -> HarmonicComparison:
    """Model harmonic force constants on the DFT structure and supercell vs the DFT ones.

    Residual forces of the (PBEsol-relaxed) reference supercell are subtracted.
    """
    ph = phonons.build_phonopy(entry.unitcell, entry.supercell_matrix, entry.primitive_matrix)
    model = ForceModel(calc, phonopy_to_ase(ph.supercell), entry.material_id)
    f_ref = model.forces(ph.supercell.positions[None])[0]
    fc_model, _ = phonons.harmonic_force_constants(ph, model.forces, reference_forces=f_ref)
    return comparison_on(entry, ph, phonons.commensurate_frequencies(ph, fc_model),
                         float(np.linalg.norm(f_ref, axis=1).max()))


def comparison_on(entry: MDREntry, phonon: Phonopy, frequencies_model: np.ndarray,
                  max_residual_force: float = 0.0) -> HarmonicComparison:
    """Model frequencies on ``phonon`` (the entry's cell and supercell) against the entry's DFT ones."""
    return HarmonicComparison(
        material_id=entry.material_id,
        formula=Composition("".join(phonon.primitive.symbols)).reduced_formula,
        frequencies_model=np.asarray(frequencies_model, float),
        frequencies_dft=phonons.commensurate_frequencies(phonon, entry.dft_force_constants()),
        max_residual_force=max_residual_force,
    )
