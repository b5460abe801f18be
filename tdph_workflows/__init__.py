"""tdph: temperature-dependent phonons at high throughput (one-shot SSCHA with ML potentials)."""

__version__ = "0.1.1"

__all__ = ["__version__", "run_temperature_phonons"]


def __getattr__(name):  # keep `import tdph_workflows` light; the engine pulls in phonopy/pymatgen
    if name == "run_temperature_phonons":
        from .engine import run_temperature_phonons

        return run_temperature_phonons
    raise AttributeError(name)
