"""Makers: dataclasses of options that only wire jobs (atomate2 style)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from jobflow import Flow, Job, Maker

from ..core.sscha import SSCHASettings
from ..io.inputs import StructureLike, check_temperatures
from .jobs import harmonic_job, material_job, metrics_job, relax_job, sscha_job


def as_settings(settings: SSCHASettings | dict[str, Any]) -> SSCHASettings:
    """``SSCHASettings`` from itself or from a dict of its fields (what a stored Maker holds)."""
    return settings if isinstance(settings, SSCHASettings) else SSCHASettings(**settings)


@dataclass
class PotentialRelaxMaker(Maker):
    """Relax positions and cell with the potential, keeping the space group.

    Parameters
    ----------
    calculator
        Model folder/name, ``emt`` or ``module:factory``; None = the default model.
    fmax
        Force (and scaled stress) tolerance in eV/A.
    """

    name: str = "tdph relax"
    calculator: str | None = None
    fmax: float = 1e-3

    def __post_init__(self) -> None:
        if not self.fmax > 0:
            raise ValueError(f"fmax must be positive, got {self.fmax}")

    def make(self, structure: StructureLike, material_id: str | None = None) -> Job:
        """A ``relax_job`` whose output is a ``RelaxResult`` (relaxed pymatgen Structure dict)."""
        job = relax_job(structure, self.calculator, self.fmax, material_id)
        job.name = self.name
        return job


@dataclass
class HarmonicMaker(Maker):
    """Harmonic force constants and spectrum (phonopy finite displacements).

    Parameters
    ----------
    calculator
        As for ``PotentialRelaxMaker``.
    supercell_matrix
        3 or 9 integers; None = the MDR entry's matrix or the default width rule.
    """

    name: str = "tdph harmonic"
    calculator: str | None = None
    supercell_matrix: list[int] | None = None

    def make(self, structure: StructureLike | Any, material_id: str | None = None) -> Job:
        """A ``harmonic_job`` whose output is a ``HarmonicResult``; ``structure`` may be a job's output reference."""
        job = harmonic_job(structure, self.calculator, self.supercell_matrix, material_id)
        job.name = self.name
        return job


@dataclass
class OneShotSSCHAMaker(Maker):
    """Phi(T) at each temperature from a harmonic result.

    Parameters
    ----------
    temperatures
        Temperatures in K, sharing the harmonic step.
    settings
        ``SSCHASettings`` (estimator, sampling, statistics, self-consistency); a dict of its
        fields is accepted and converted.
    """

    name: str = "tdph one-shot sscha"
    calculator: str | None = None
    temperatures: list[float] = field(default_factory=lambda: [300.0])
    settings: SSCHASettings = field(default_factory=SSCHASettings)

    def __post_init__(self) -> None:  # fail before any job runs
        self.temperatures = check_temperatures(self.temperatures)
        self.settings = as_settings(self.settings)

    def make(self, harmonic: Any) -> Job:
        """A ``sscha_job`` on a ``HarmonicResult`` (or its output reference); outputs a ``TDPHResult``."""
        job = sscha_job(harmonic, self.calculator, self.temperatures, asdict(self.settings))
        job.name = self.name
        return job


@dataclass
class MetricsMaker(Maker):
    """The compact, queryable summary (metrics per temperature and site, no arrays)."""

    name: str = "tdph metrics"

    def make(self, result: Any) -> Job:
        """A ``metrics_job`` on a ``TDPHResult`` (or its output reference); outputs a ``MaterialSummary``."""
        job = metrics_job(result)
        job.name = self.name
        return job


@dataclass
class TDPHFlowMaker(Maker):
    """Per-material flow: [relax ->] harmonic -> one-shot SSCHA -> metrics, one job per step.

    Every step must use the same potential: Phi(T) is measured against the harmonic reference,
    so a mixed flow would report the difference between two models as renormalization.
    """

    name: str = "tdph"
    relax_maker: PotentialRelaxMaker | None = None
    harmonic_maker: HarmonicMaker = field(default_factory=HarmonicMaker)
    sscha_maker: OneShotSSCHAMaker = field(default_factory=OneShotSSCHAMaker)
    metrics_maker: MetricsMaker = field(default_factory=MetricsMaker)

    def __post_init__(self) -> None:
        steps = [m for m in (self.relax_maker, self.harmonic_maker, self.sscha_maker) if m is not None]
        calculators = {m.calculator for m in steps}
        if len(calculators) > 1:
            used = ", ".join(f"{type(m).__name__}: {m.calculator or 'default model'}" for m in steps)
            raise ValueError(f"one potential per flow, got {used}")

    def make(self, structure: StructureLike, material_id: str | None = None) -> Flow:
        """The flow of one material; its output is the metrics job's ``MaterialSummary``."""
        jobs: list[Job] = []
        if self.relax_maker is not None:
            relax = self.relax_maker.make(structure, material_id)
            jobs.append(relax)
            structure = relax.output.structure
        harmonic = self.harmonic_maker.make(structure, material_id)
        sscha = self.sscha_maker.make(harmonic.output)
        metrics = self.metrics_maker.make(sscha.output)
        jobs += [harmonic, sscha, metrics]
        return Flow(jobs, output=metrics.output, name=f"{self.name} {material_id or ''}".strip())


@dataclass
class TDPHMaterialMaker(Maker):
    """The whole material in one job (the campaign default: one model load and one write per material)."""

    name: str = "tdph material"
    calculator: str | None = None
    temperatures: list[float] = field(default_factory=lambda: [300.0])
    settings: SSCHASettings = field(default_factory=SSCHASettings)
    supercell_matrix: list[int] | None = None
    relax: bool = False

    def __post_init__(self) -> None:
        self.temperatures = check_temperatures(self.temperatures)
        self.settings = as_settings(self.settings)

    def make(self, structure: StructureLike, material_id: str | None = None) -> Job:
        """A ``material_job`` (relax if asked, harmonic, one-shot SSCHA); outputs a ``TDPHResult``."""
        job = material_job(structure, self.calculator, self.temperatures, asdict(self.settings), self.supercell_matrix,
                           self.relax, material_id)
        job.name = f"{self.name} {material_id or ''}".strip()
        return job
