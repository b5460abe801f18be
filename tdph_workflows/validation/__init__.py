"""DFT-validation of the temperature-dependent phonons: anharmonic force constants by
compressive sensing (hiphive), and lattice thermal conductivity with phono3py."""
