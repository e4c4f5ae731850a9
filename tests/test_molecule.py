"""Molecule loading: every validation case of the input, the catalogue, xyz files, overrides."""

import math

import numpy as np
import pytest

from vmcjet import elements
from vmcjet.errors import InputError
from vmcjet.molecule import catalogue_names, load_molecule, min_internuclear_distance
from vmcjet.units import BOHR_PER_ANGSTROM

REQUIRED = [
    "H",
    "He",
    "Li",
    "Be",
    "B",
    "C",
    "N",
    "O",
    "F",
    "Ne",
    "H2",
    "LiH",
    "Li2",
    "N2",
    "CO",
    "CH4",
    "NH3",
    "H2O",
    "H4",
    "H10",
    "P2",
]


def _toml(tmp_path, body, name="mol.toml"):
    path = tmp_path / name
    path.write_text(body)
    return path


def _atoms(*atoms):
    return "".join(f'[[atoms]]\nsymbol = "{s}"\ncoords = {c}\n' for s, c in atoms)


def _error(spec, **overrides):
    with pytest.raises(InputError) as info:
        load_molecule(spec, **overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- one test per validation case ------------------------------------------------------------


def test_unknown_element_suggests_the_closest(tmp_path):
    path = _toml(tmp_path, 'units = "bohr"\n' + _atoms(("Hee", "[0, 0, 0]")))
    message = _error(path)
    assert "unknown element 'Hee'" in message and "did you mean He" in message


def test_element_symbols_any_case(tmp_path):
    path = _toml(tmp_path, 'units = "bohr"\n' + _atoms(("LI", "[0, 0, 0]"), ("h", "[0, 0, 3]")))
    assert load_molecule(path).symbols == ("Li", "H")


def test_missing_units(tmp_path):
    path = _toml(tmp_path, _atoms(("H", "[0, 0, 0]")))
    assert "missing units" in _error(path)


def test_unknown_units(tmp_path):
    path = _toml(tmp_path, 'units = "nm"\n' + _atoms(("H", "[0, 0, 0]")))
    message = _error(path)
    assert "unknown units 'nm'" in message and '"bohr" or "angstrom"' in message


@pytest.mark.parametrize("coords", ["[0, nan, 0]", "[inf, 0, 0]"])
def test_non_finite_coordinates(tmp_path, coords):
    path = _toml(tmp_path, 'units = "bohr"\n' + _atoms(("H", coords)))
    assert "non-finite coordinates" in _error(path)


def test_missing_coordinates(tmp_path):
    path = _toml(tmp_path, 'units = "bohr"\n[[atoms]]\nsymbol = "H"\n')
    assert "has no coordinates" in _error(path)


@pytest.mark.parametrize("coords", ["[0, 0]", '[0, 0, "a"]', "[0, 0, 0, 1]"])
def test_malformed_coordinates(tmp_path, coords):
    path = _toml(tmp_path, 'units = "bohr"\n' + _atoms(("H", coords)))
    assert "three finite numbers" in _error(path)


def test_no_atoms(tmp_path):
    assert "no atoms" in _error(_toml(tmp_path, 'units = "bohr"\n'))


def test_nuclei_too_close(tmp_path):
    body = 'units = "angstrom"\n' + _atoms(("H", "[0, 0, 0]"), ("H", "[0, 0, 0.05]"))
    message = _error(_toml(tmp_path, body))  # 0.05 angstrom = 0.094 bohr
    assert "nuclei 0 (H) and 1 (H)" in message and "0.0945 bohr apart" in message
    body = 'units = "bohr"\n' + _atoms(("H", "[0, 0, 0]"), ("H", "[0, 0, 0.11]"))
    assert load_molecule(_toml(tmp_path, body)).n_electrons == 2  # just above the limit


def test_no_electrons():
    assert "leaves 0 electrons" in _error("H2", charge=2)


def test_negative_electron_count():
    assert "leaves -1 electrons" in _error("He", charge=3)


def test_spin_with_wrong_parity():
    message = _error("LiH", spin=1)
    assert "wrong parity for 4 electrons" in message and "must be even" in message
    assert "multiplicity" not in _error("Li", spin=-2)


def test_spin_that_looks_like_a_multiplicity():
    message = _error("O", spin=3)  # triplet oxygen: 2S + 1 = 3, 2S = 2
    assert "multiplicity" in message and "spin = 2" in message


def test_spin_larger_than_electron_count():
    assert "exceeds the 2 electrons" in _error("H2", spin=4)
    assert "exceeds the 2 electrons" in _error("H2", spin=-4)


def test_unknown_molecule_name_lists_close_names():
    message = _error("LiHH")
    assert "unknown molecule 'LiHH'" in message and "LiH" in message


def test_malformed_molecule_toml(tmp_path):
    path = _toml(tmp_path, 'units = "bohr"\n[[atoms]\nsymbol = "H"\n')
    assert "malformed TOML" in _error(path)


def test_unknown_top_level_key(tmp_path):
    path = _toml(tmp_path, 'unit = "bohr"\n' + _atoms(("H", "[0, 0, 0]")))
    assert "unknown key 'unit'; did you mean 'units'" in _error(path)


def test_missing_file_and_wrong_extension(tmp_path):
    assert "not found" in _error(tmp_path / "none.toml")
    assert "must end in .toml or .xyz" in _error(str(tmp_path / "mol.json"))


def test_wrong_types_of_charge_and_spin():
    assert "charge must be an integer" in _error("H2", charge=1.5)
    assert "spin must be an integer" in _error("H2", spin=True)


# --- the catalogue ---------------------------------------------------------------------------


def test_catalogue_has_the_required_systems():
    assert set(REQUIRED) <= set(catalogue_names())


@pytest.mark.parametrize("name", catalogue_names())
def test_every_catalogue_entry_loads(name):
    molecule = load_molecule(name.lower())
    assert molecule.name == name
    assert molecule.coords.shape == (len(molecule.symbols), 3)
    assert molecule.n_alpha + molecule.n_beta == molecule.n_electrons
    assert molecule.geometry_source
    exact = molecule.exact_energy
    for ref in molecule.references:
        assert math.isfinite(ref.energy) and ref.kind and ref.source
        if exact is not None and ref.kind in ("ferminet", "psiformer"):
            assert ref.energy >= exact  # VMC is variational: never below the exact energy


def test_catalogue_geometries():
    assert min_internuclear_distance(load_molecule("LiH")) == pytest.approx(3.015)
    assert min_internuclear_distance(load_molecule("H")) is None
    water = load_molecule("H2O")  # O-H 0.9572 angstrom, angle 104.52 degrees
    oh = water.coords[1:] - water.coords[0]
    assert np.linalg.norm(oh, axis=1) == pytest.approx([0.9572 * BOHR_PER_ANGSTROM] * 2)
    cos = oh[0] @ oh[1] / np.linalg.norm(oh[0]) / np.linalg.norm(oh[1])
    assert math.degrees(math.acos(cos)) == pytest.approx(104.52)
    p2 = load_molecule("P2")
    assert p2.n_electrons == 30 and p2.spin == 0


def test_atoms_have_their_ground_state_spin():
    spins = {"H": 1, "He": 0, "Li": 1, "Be": 0, "B": 1, "C": 2, "N": 3, "O": 2, "F": 1, "Ne": 0}
    for symbol, spin in spins.items():
        atom = load_molecule(symbol)
        assert (atom.spin, atom.n_electrons) == (spin, elements.atomic_number(symbol))


# --- xyz files and overrides -----------------------------------------------------------------


def test_xyz_file_in_angstrom(tmp_path):
    path = tmp_path / "water.xyz"
    path.write_text("3\nwater from a file\nO 0 0 0\nH 0.7572 0.5865 0\nh -0.7572 0.5865 0\n")
    molecule = load_molecule(path)
    assert molecule.name == "water" and molecule.symbols == ("O", "H", "H")
    np.testing.assert_allclose(
        molecule.coords[1], np.array([0.7572, 0.5865, 0]) * BOHR_PER_ANGSTROM
    )
    assert (molecule.charge, molecule.spin, molecule.n_electrons) == (0, 0, 10)
    assert molecule.geometry_source == "water from a file"


def test_xyz_odd_electrons_default_to_doublet(tmp_path):
    path = tmp_path / "oh.xyz"
    path.write_text("2\n\nO 0 0 0\nH 0 0 0.97\n")
    assert load_molecule(path).spin == 1


def test_xyz_errors(tmp_path):
    path = tmp_path / "bad.xyz"
    path.write_text("3\n\nO 0 0 0\nH 0 0 1\n")
    assert "says 3 atoms but has 2" in _error(path)
    path.write_text("2\n\nO 0 0 0\nXe 0 0 1\n")
    assert "unknown element 'Xe'" in _error(path)
    path.write_text("1\n\nO 0 zero 0\n")
    assert "'zero' is not a number" in _error(path)


def test_charge_and_spin_overrides():
    cation = load_molecule("LiH", charge=1, spin=1)
    assert (cation.n_electrons, cation.n_alpha, cation.n_beta) == (3, 2, 1)
    triplet = load_molecule("H2", spin=2)
    assert (triplet.n_alpha, triplet.n_beta) == (2, 0)
    assert "wrong parity" in _error("LiH", charge=1)  # the file's spin 0 no longer fits


def test_nuclear_repulsion_analytic():
    assert load_molecule("H2").nuclear_repulsion == pytest.approx(1 / 1.4011)
    assert load_molecule("LiH").nuclear_repulsion == pytest.approx(3 / 3.015)
    assert load_molecule("Ne").nuclear_repulsion == 0.0
