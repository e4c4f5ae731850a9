"""Unit constants. Everything inside vmcjet is in atomic units: bohr and hartree."""

BOHR_PER_ANGSTROM = 1.0 / 0.529177210903  # CODATA 2018 Bohr radius, angstrom
ANGSTROM_PER_BOHR = 0.529177210903
MILLIHARTREE_PER_HARTREE = 1000.0
DEBYE_PER_AU = 2.541746473  # dipole: 1 e bohr in debye (CODATA 2018)

LENGTH_UNITS = {"bohr": 1.0, "angstrom": BOHR_PER_ANGSTROM}  # factor to bohr
