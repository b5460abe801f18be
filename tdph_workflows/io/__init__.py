"""Readers: structures (anything pymatgen reads, or ASE/pymatgen objects) and MDR entries."""

from .mdr import MDREntry, is_mdr_entry, load_mdr_entry
from .structures import InputError, load_structure, to_phonopy_atoms

__all__ = ["InputError", "MDREntry", "is_mdr_entry", "load_mdr_entry", "load_structure", "to_phonopy_atoms"]
