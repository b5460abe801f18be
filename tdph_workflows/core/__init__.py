"""Physics core: numpy, phonopy, spglib and symfc only (no workflow, database or CLI imports)."""
