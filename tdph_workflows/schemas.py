"""Pydantic result documents (JSON round trip via ``model_dump_json`` / ``model_validate_json``)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from .packing import pack_tree, unpack_tree


class SiteRenormalization(BaseModel):
    """R_onsite of one unit-cell site (mean over its supercell images)."""

    index: int = Field(description="Index of the site in the unit cell")
    element: str = Field(description="Chemical symbol")
    wyckoff: str = Field(description="Wyckoff letter of the site in the unit cell's space group")
    r_onsite: float = Field(description="|tr Phi_T,ii - tr Phi_HA,ii| / |tr Phi_HA,ii| (paper Eq. 4)")
    r_onsite_stderr: float = Field(description="Jackknife standard error of r_onsite")


class ConvergenceRecord(BaseModel):
    """One point of the adaptive sampling history: the L2 shift and its error at a sample count."""

    n_samples: int = Field(description="Samples used so far (antithetic pairs count twice)")
    l2_shift: float = Field(description="L2 frequency shift at this sample count (fraction)")
    l2_stderr: float = Field(description="Jackknife standard error of the L2 shift (fraction)")


class PhononSpectrum(BaseModel):
    """Frequencies of one set of force constants (THz; negative = imaginary)."""

    commensurate_frequencies: list[float] = Field(
        description="Frequencies at the supercell's commensurate q-points, Gamma acoustic modes removed"
    )
    min_frequency: float = Field(description="Lowest commensurate frequency (THz)")
    n_imaginary: int = Field(description="Commensurate modes below -0.1 THz")
    special_points: dict[str, list[float]] = Field(description="Frequencies at the standard high-symmetry points")
    band_structure: dict[str, Any] = Field(description="Dispersion along seekpath's standard path")
    dos: dict[str, list[float]] = Field(description="Total density of states")


class TrustGrade(BaseModel):
    """How far a number can be trusted (``tdph_workflows.trust``): A trusted, B usable, C qualitative, F not a result."""

    grade: str = Field(description="A, B, C or F: the worst grade among the reasons (A when there is none)")
    reasons: list[str] = Field(default_factory=list,
                               description="'<grade> <code>: <explanation>' for every failed check, worst first")

    @property
    def codes(self) -> list[str]:
        """The reason codes (e.g. ``sc_not_converged``), worst first."""
        return [r.split(":", 1)[0].split()[-1] for r in self.reasons]


class TemperatureResult(BaseModel):
    """Renormalized phonons of one material at one temperature, with the metrics and sampling statistics."""

    temperature: float = Field(description="Temperature (K)")
    spectrum: PhononSpectrum
    force_constants: list | None = Field(
        None, description="Phi(T) in eV/A^2, phonopy's compact layout (n_primitive, N, 3, 3): the supercell rows of "
        "the primitive cell's atoms (documents stored before 0.1.1 hold the full (N, N, 3, 3)); "
        "TDPHResult.full_force_constants expands either")
    l2_shift: float = Field(description="||omega_T - omega_0|| / ||omega_0|| (fraction)")
    l2_stderr: float
    r_full: float = Field(description="Paper Eq. 3 with tiny elements (< 1e-3 max|Phi_0|) excluded")
    r_full_stderr: float
    r_full_robust: float = Field(description="sum|Phi_T - Phi_0| / sum((|Phi_0| + |Phi_T|) / 2)")
    r_full_robust_stderr: float
    r_onsite_max: float = Field(description="Largest site R_onsite")
    sites: list[SiteRenormalization]
    n_samples: int = Field(description="Samples used (antithetic pairs count twice)")
    converged: bool = Field(description="Whether the L2 standard-error target was met before the sample cap")
    history: list[ConvergenceRecord]
    self_consistent_changes_thz: list[float] = Field(description="Max |d omega| per self-consistent iteration")
    self_consistent_converged: bool | None = Field(None, description="None unless self-consistent")
    n_imaginary_sampled: int = Field(description="Imaginary modes of the sampling force constants")
    n_floored: int = Field(description="Modes sampled at the soft-mode floor")
    max_rms_displacement: float = Field(description="Largest per-atom rms displacement of the samples (A)")
    lindemann_ratio: float | None = Field(
        None, description="Largest 3D rms thermal displacement sampled over the atom's nearest-neighbour distance "
        "(harmonic, commensurate q-points; ~0.1 for alkali halides at 300 K, melting near 0.15-0.2)")
    sampling_notes: list[str]
    potential_calls: dict[str, int]
    timings: dict[str, float] = Field(description="Wall seconds per stage")
    trust: TrustGrade | None = Field(None, description="Trust grade of this temperature (None: not graded)")


class RelaxationInfo(BaseModel):
    """The unit-cell relaxation: force threshold (eV/A), BFGS steps, energies (eV) and volumes (A^3) before/after."""

    fmax: float = Field(description="Force threshold (eV/A)")
    steps: int = Field(description="BFGS steps taken")
    converged: bool = Field(description="Whether the forces fell below fmax")
    energy_initial: float = Field(description="Energy before (eV)")
    energy_final: float = Field(description="Energy after (eV)")
    volume_initial: float = Field(description="Cell volume before (A^3)")
    volume_final: float = Field(description="Cell volume after (A^3)")


class DFTReference(BaseModel):
    """The model's harmonic frequencies vs the DFT ones of the input MDR entry (same cell and supercell)."""

    mae_thz: float = Field(description="Mean |omega_model - omega_DFT| over commensurate modes (THz)")
    relative_deviation: float = Field(description="||omega_model - omega_DFT|| / ||omega_DFT|| (fraction)")
    min_frequency_dft: float = Field(description="Lowest DFT commensurate frequency (THz)")


PROVENANCE_PACKAGES = ("matgl", "torch", "phonopy", "symfc", "spglib", "pymatgen", "numpy", "ase")


def package_versions(names: tuple[str, ...] = PROVENANCE_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages a result depends on (those not installed are left out)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


class Provenance(BaseModel):
    """Code version, calculator and model hash, package versions, host, Python version and start time of a run."""

    code_version: str = Field(description="tdph-workflows version")
    calculator: str = Field(description="Model folder/name or calculator class")
    model_hash: str | None = Field(None, description="sha256 (16 hex) of the model folder's files")
    host: str = Field(description="Host name of the machine that ran it")
    python: str = Field(description="Python version")
    started: str = Field(description="UTC start time, ISO 8601")
    versions: dict[str, str] = Field(default_factory=dict, description="Versions of matgl, torch, phonopy, symfc, "
                                     "spglib, pymatgen, numpy and ase (empty in results stored before they were kept)")


def structure_as_dict(value: Any) -> Any:
    """Accept a pymatgen Structure where a structure dict is stored (jobflow decodes stored dicts back)."""
    return json.loads(value.to_json()) if hasattr(value, "to_json") and hasattr(value, "lattice") else value


class _MaterialHeader(BaseModel):
    material_id: str
    formula: str
    unitcell: dict = Field(description="pymatgen Structure dict of the (relaxed) unit cell")
    supercell_matrix: list[list[int]]
    primitive_matrix: list[list[float]]
    n_atoms_supercell: int
    supercell_rule: str = Field(description="Where the supercell matrix came from")
    supercell_extended_by: list[int] | None = Field(
        None, description="Multiples applied along the chosen supercell's vectors to reach the minimum width "
        "(io.inputs.MIN_SUPERCELL_WIDTH) and to sample thermal displacements faithfully; None when it was adequate")
    thermal_sampling_ratio: float | None = Field(
        None, description="Largest ratio over atoms of the harmonic mean-square displacement the supercell samples "
        "to the converged (dense q-mesh) value, at the highest temperature; None when not checked")
    relaxation: RelaxationInfo | None
    max_residual_force: float = Field(description="Largest force on the undistorted supercell (eV/A), subtracted")
    harmonic: PhononSpectrum
    harmonic_force_constants: list | None = Field(
        None, description="Phi_HA in eV/A^2, phonopy's compact layout (n_primitive, N, 3, 3) (full (N, N, 3, 3) in "
        "documents stored before 0.1.1)")
    n_harmonic_displacements: int
    dft_reference: DFTReference | None = Field(None, description="Only for unrelaxed MDR entries")
    nac_params: dict | None = Field(
        None, description="Non-analytical term of a polar MDR entry, as phonopy's nac_params: 'born' (Born effective "
        "charges of the primitive cell's atoms, (n, 3, 3), e), 'dielectric' (epsilon_inf, (3, 3)) and 'factor'; "
        "applied to band structures, written phonopy files and plots (LO-TO splitting), not to the sampling, "
        "whose supercell force constants already hold the short-range part")

    _unitcell_dict = field_validator("unitcell", mode="before")(structure_as_dict)

    @model_validator(mode="before")
    @classmethod
    def _unpack_arrays(cls, data: Any) -> Any:
        return unpack_tree(data) if isinstance(data, dict) else data

    def as_dict(self) -> dict:
        """MSONable form for jobflow stores: large numeric arrays packed (see ``packing``)."""
        d = pack_tree(self.model_dump(mode="json"))
        d.update({"@module": type(self).__module__, "@class": type(self).__name__})
        return d

    @classmethod
    def from_dict(cls, d: dict):
        return cls.model_validate({k: v for k, v in d.items() if not k.startswith("@")})

    def structure(self):
        """The (relaxed) unit cell as a pymatgen ``Structure``."""
        from pymatgen.core import Structure

        return Structure.from_dict(self.unitcell)

    def phonopy_cell(self, with_nac: bool = False):
        """Phonopy object (supercell and primitive matrices, no force constants) of this material.

        ``with_nac`` sets ``nac_params`` (a polar MDR entry's Born charges and dielectric tensor).
        """
        from phonopy import Phonopy
        from phonopy.structure.atoms import PhonopyAtoms

        s = self.structure()
        cell = PhonopyAtoms(symbols=[site.specie.symbol for site in s], cell=s.lattice.matrix,
                            scaled_positions=s.frac_coords)
        phonon = Phonopy(cell, supercell_matrix=self.supercell_matrix, primitive_matrix=self.primitive_matrix,
                         log_level=0)
        if with_nac and self.nac_params:
            phonon.nac_params = {k: v for k, v in self.nac_params.items() if v is not None}
        return phonon


class HarmonicResult(_MaterialHeader):
    """Output of the harmonic step: what the one-shot step needs to continue."""

    reference_forces: list = Field(description="Forces on the undistorted supercell (N, 3), eV/A")
    timings: dict[str, float]
    calculator: str


class TDPHResult(_MaterialHeader):
    """Temperature-dependent phonons of one material (one harmonic reference, several T)."""

    spacegroup: str = Field(description="International symbol and number, e.g. 'Pm-3m (221)' (for display)")
    spacegroup_symbol: str = Field("", description="International (Hermann-Mauguin) symbol of the supercell's group")
    spacegroup_number: int = Field(0, description="International space-group number")
    settings: dict
    temperatures: list[TemperatureResult]
    timings: dict[str, float]
    provenance: Provenance
    trust: TrustGrade | None = Field(None, description="The material's grade: the worst of its temperatures")

    @model_validator(mode="after")
    def _spacegroup_parts(self) -> TDPHResult:
        # documents stored before the symbol and number had fields of their own carry only "Pm-3m (221)"
        if not self.spacegroup_number and self.spacegroup.endswith(")"):
            symbol, _, number = self.spacegroup.rpartition(" (")
            self.spacegroup_symbol, self.spacegroup_number = symbol, int(number.rstrip(")"))
        return self

    def _force_constants(self, temperature: float | None):
        fc = self.harmonic_force_constants if temperature is None else self.at(temperature).force_constants
        if fc is None:
            raise ValueError(f"{self.material_id}: this result was stored without force constants (result.json "
                             "leaves them out); load phonopy_harmonic.yaml / phonopy_<T>K.yaml with phonopy.load")
        return fc

    def _spectrum_at(self, temperature: float | None) -> PhononSpectrum:
        return self.harmonic if temperature is None else self.at(temperature).spectrum

    def full_force_constants(self, temperature: float | None = None):
        """Full (N, N, 3, 3) supercell force constants (eV/A^2): harmonic (``temperature`` None) or Phi(T).

        Stored documents hold phonopy's compact layout; every other row follows by lattice translation.

        Raises
        ------
        ValueError
            When the result was stored without force constants.
        KeyError
            When there is no result at ``temperature``.
        """
        from .core.phonons import full_force_constants

        return full_force_constants(self.phonopy_cell(), self._force_constants(temperature))

    def to_phonopy(self, temperature: float | None = None, with_nac: bool = True):
        """A ``Phonopy`` object with the harmonic (``temperature`` None) or renormalized force constants.

        Polar MDR entries carry their Born charges and dielectric tensor (LO-TO splitting).

        Raises
        ------
        ValueError
            When the result was stored without force constants.
        KeyError
            When there is no result at ``temperature``.
        """
        from .core.phonons import full_force_constants

        phonon = self.phonopy_cell(with_nac)
        # (N, N, 3, 3), as phonopy users index it
        phonon.force_constants = full_force_constants(phonon, self._force_constants(temperature))
        return phonon

    def band_structure(self, temperature: float | None = None):
        """The dispersion (harmonic, or renormalized at ``temperature``) as pymatgen's ``PhononBandStructureSymmLine``.

        Built from the stored band structure (no force constants needed); ``PhononBSPlotter`` plots it.
        """
        import numpy as np
        from pymatgen.core import Structure
        from pymatgen.phonon.bandstructure import PhononBandStructureSymmLine

        bands = self._spectrum_at(temperature).band_structure
        segments = [np.asarray(q, float) for q in bands["qpoints"]]
        names = iter(label.replace("GAMMA", "Γ") for label in bands["labels"])
        connections = bands.get("path_connections") or [False] * len(segments)
        labels: dict[str, list[float]] = {}
        start = next(names)
        for qpts, connected in zip(segments, connections, strict=True):
            end = next(names)
            labels.setdefault(start, qpts[0].tolist())
            labels.setdefault(end, qpts[-1].tolist())
            start = end if connected else next(names, end)
        frequencies = np.concatenate([np.asarray(f, float) for f in bands["frequencies"]]).T  # (bands, q)
        cell = self.phonopy_cell().primitive
        prim = Structure(cell.cell, cell.symbols, cell.scaled_positions)
        return PhononBandStructureSymmLine(np.concatenate(segments), frequencies, prim.lattice.reciprocal_lattice,
                                           has_nac=bool(self.nac_params), labels_dict=labels, structure=prim)

    def dos(self, temperature: float | None = None):
        """Total phonon density of states (harmonic, or at ``temperature``) as pymatgen's ``PhononDos`` (THz)."""
        from pymatgen.phonon.dos import PhononDos

        d = self._spectrum_at(temperature).dos
        return PhononDos(d["frequency_points"], d["total_dos"])

    def thermal_properties(self, temperature: float, mesh: float = 30.0) -> dict[str, dict[str, float]]:
        """Free energy (kJ/mol), entropy and heat capacity (J/K/mol) at ``temperature``, as phonopy computes them.

        Returns
        -------
        dict
            ``{"harmonic": {...}, "renormalized": {...}}``: the harmonic phonons and the renormalized
            phonons of ``temperature``, both evaluated at ``temperature`` (per mole of primitive cells;
            imaginary modes are left out by phonopy).
        """
        out = {}
        for name, fc_temperature in (("harmonic", None), ("renormalized", temperature)):
            phonon = self.to_phonopy(fc_temperature, with_nac=False)
            phonon.run_mesh(mesh, is_gamma_center=True)
            phonon.run_thermal_properties(temperatures=[temperature], exclude_gamma_acoustic=True)
            d = phonon.get_thermal_properties_dict()
            out[name] = {"free_energy": float(d["free_energy"][0]), "entropy": float(d["entropy"][0]),
                         "heat_capacity": float(d["heat_capacity"][0])}
        return out

    def at(self, temperature: float) -> TemperatureResult:
        """The result at `temperature` (K, matched to 1e-6); KeyError when there is none."""
        for t in self.temperatures:
            if abs(t.temperature - temperature) < 1e-6:
                return t
        raise KeyError(f"no result at {temperature} K")


_MONTY_REGISTERED = False


def register_monty_encoding() -> None:
    """Make monty (hence jobflow's job store) use ``as_dict`` (packed arrays) for result documents.

    Idempotent; called by the jobflow layer (``makers.jobs``), not on import of the schemas.

    monty serializes pydantic models with ``model_dump()`` before looking at ``as_dict``; a
    registered handler comes first. Older monty without handlers: plain lists, only slower.
    """
    global _MONTY_REGISTERED
    if _MONTY_REGISTERED:
        return
    try:
        from monty.json import TypeHandler, register
    except ImportError:
        return

    class _ResultHandler(TypeHandler):
        module = __name__
        class_name = ("HarmonicResult", "TDPHResult")

        def matches(self, obj: Any) -> bool:
            return isinstance(obj, _MaterialHeader)

        def encode(self, obj: _MaterialHeader) -> dict:
            return obj.as_dict()

        def decode(self, d: dict) -> _MaterialHeader:
            return {"HarmonicResult": HarmonicResult, "TDPHResult": TDPHResult}[d["@class"]].from_dict(d)

        def sanitize(self, obj: _MaterialHeader, recurse: Any, **opts: Any) -> dict:
            return obj.as_dict()

    register(_ResultHandler())
    _MONTY_REGISTERED = True

