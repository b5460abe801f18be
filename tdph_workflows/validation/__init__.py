"""DFT-validation of the temperature-dependent phonons.

Anharmonic force constants by compressive sensing (hiphive), and lattice thermal conductivity
with phono3py.
"""
