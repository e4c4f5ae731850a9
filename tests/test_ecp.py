"""Effective core potentials: the spec, the molecule's effective charges, the quadrature against
exact projections and against pyscf's ECP integrals (float64), and bad input."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyscf import dft, gto, scf

from vmcjet import cli, ecp
from vmcjet.config import Config, SystemConfig, validate
from vmcjet.errors import InputError
from vmcjet.hamiltonian import make_local_energy
from vmcjet.hartree_fock import basis_by_element, basis_label, run_hartree_fock
from vmcjet.molecule import load_molecule

RNG = np.random.default_rng(0)


def test_spec_chooses_every_heavy_atom_or_the_named_elements():
    assert ecp.parse_spec("", ("N", "N")) == {}
    assert ecp.parse_spec("ccecp", ("C", "H", "H", "H", "H")) == {"C": "ccecp"}
    assert ecp.parse_spec("ccecp", ("H", "H")) == {}
    assert ecp.parse_spec(" O:ccecp , H:bfd ", ("O", "H", "H")) == {"O": "ccecp", "H": "bfd"}


@pytest.mark.parametrize(
    "spec, match",
    [
        ("nosuchecp", "unknown ECP 'nosuchecp'"),
        ("H:crenbl", "ECP 'crenbl' has no entry for H"),
        ("Si:ccecp", "names Si, which is not in the molecule"),
        ("O:", "malformed system.ecp"),
    ],
)
def test_bad_specs_are_one_line_input_errors(spec, match):
    with pytest.raises(InputError, match=match) as err:
        ecp.parse_spec(spec, ("O", "H", "H"))
    assert "\n" not in str(err.value)


def test_molecule_loses_its_cores_and_keeps_only_matching_references():
    molecule = load_molecule("N2", ecp="ccecp")
    assert molecule.core_electrons == (2, 2)
    np.testing.assert_array_equal(molecule.charges, [5.0, 5.0])
    assert (molecule.n_electrons, molecule.n_alpha, molecule.n_beta) == (10, 5, 5)
    assert molecule.references == ()  # N2's references are all-electron
    atom = load_molecule("N", ecp="ccecp")
    assert (atom.n_alpha, atom.n_beta) == (4, 1)
    assert atom.exact_energy == pytest.approx(-9.76600)  # the ccECP reference, not -54.59
    assert load_molecule("N").exact_energy == pytest.approx(-54.5892)
    mixed = load_molecule("LiH", ecp="Li:ccecp")
    np.testing.assert_array_equal(mixed.charges, [1.0, 1.0])
    # no core-like electrons left at Li for eval's mobility measure
    np.testing.assert_array_equal(mixed.all_electron_charges, [0.0, 1.0])
    np.testing.assert_array_equal(load_molecule("LiH").all_electron_charges, [3.0, 1.0])


def test_default_basis_becomes_the_ccecp_basis_on_ecp_atoms_only():
    molecule = load_molecule("CH4", ecp="ccecp")
    assert basis_by_element(molecule, "ccpvdz") == {"C": "ccecp-ccpvdz", "H": "ccpvdz"}
    assert basis_by_element(molecule, "sto-3g") == {"C": "sto-3g", "H": "sto-3g"}
    assert basis_by_element(load_molecule("CH4"), "ccpvdz") == {"C": "ccpvdz", "H": "ccpvdz"}
    assert basis_label(molecule, "ccpvdz") == "ccpvdz (ccecp-ccpvdz on C)"
    assert basis_label(molecule, "sto-3g") == "sto-3g"


def test_bad_ecp_on_the_command_line_exits_2_with_one_line(capsys):
    code = cli.main(["run", "--molecule", "N2", "--set", "system.ecp=nosuchecp", "--print-config"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "unknown ECP 'nosuchecp'" in err and len(err.splitlines()) == 1


def test_forces_with_an_ecp_are_refused():
    config = Config(system=SystemConfig(molecule="N2", ecp="ccecp"), observables="dipole,forces")
    with pytest.raises(InputError, match="forces with an ECP"):
        validate(config)


def test_random_rotations_are_rotations():
    rotations = np.asarray(ecp.random_rotations(jax.random.key(1), 64, jnp.float64))
    eye = np.broadcast_to(np.eye(3), rotations.shape)
    np.testing.assert_allclose(rotations @ np.swapaxes(rotations, 1, 2), eye, atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-12)


# --- the quadrature ------------------------------------------------------------------------------


def one_electron(angular):
    """(sign, log|psi|) of exp(-r) * angular(x, y, z) for one electron around the origin."""

    def psi(electrons):
        x, y, z = electrons[0]
        value = jnp.exp(-jnp.linalg.norm(electrons[0])) * angular(x, y, z)
        return jnp.sign(value), jnp.log(jnp.abs(value))

    return psi


@pytest.mark.parametrize(
    "angular, momentum",
    [
        (lambda x, y, z: 1.0 + 0 * x, 0),
        (lambda x, y, z: x - 2 * z, 1),
        (lambda x, y, z: x * y + 0.5 * (x * x - z * z), 2),
    ],
)
@pytest.mark.parametrize("symbol", ["N", "Si"])
def test_quadrature_projects_exactly_onto_angular_momentum(angular, momentum, symbol):
    """An orbital f(r) Y_lm about the ECP atom is an eigenfunction of the projector: V_nl psi /
    psi = V_l(r) (zero when the ECP has no channel l) for every rotation of the grid; the
    12-point grid is exact up to degree 5. N's ccECP has an l = 0 channel, Si's l = 0 and 1."""
    (atom_ecp,) = ecp.atom_ecps((symbol,), "ccecp")
    coords = jnp.zeros((1, 3))
    electrons = jnp.asarray(RNG.normal(size=(5, 1, 3)))
    rotations = ecp.random_rotations(jax.random.key(2), 5, jnp.float64)
    for electron, rotation in zip(electrons, rotations, strict=True):
        value = ecp.nonlocal_energy_part(
            one_electron(angular), electron, coords, (atom_ecp,), rotation
        )
        r = jnp.linalg.norm(electron[0])
        channels = atom_ecp.nonlocal_
        expected = ecp.radial(channels[momentum], r) if momentum < len(channels) else 0.0
        np.testing.assert_allclose(float(value), float(expected), rtol=1e-10, atol=1e-12)


def hf_reference(symbol, spin):
    """ROHF of the atom with ccECP (pyscf), and the Mole with only the local / non-local parts."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = gto.basis.load_ecp("ccecp", symbol)

        def mol(channels):
            return gto.M(
                atom=f"{symbol} 0 0 0",
                unit="Bohr",
                spin=spin,
                basis="ccecp-ccpvdz",
                ecp={symbol: [full[0], channels]},
                verbose=0,
            )

        whole = mol(full[1])
        local = mol([c for c in full[1] if c[0] < 0])
        nonlocal_ = mol([c for c in full[1] if c[0] >= 0])
        mf = scf.ROHF(whole)
        mf.verbose = 0
        mf.kernel()
    return whole, local, nonlocal_, mf


@pytest.mark.parametrize("symbol, spin", [("O", 2), ("Si", 2)])
def test_ecp_energy_of_hartree_fock_orbitals_matches_pyscf_integrals(symbol, spin):
    """sum over the occupied ROHF orbitals phi of <phi|V|phi>, from our local potential and our
    quadrature of V_nl phi (each orbital as a one-electron psi) on pyscf's integration grid,
    against tr(D V) from pyscf's ECP integrals, for the local and the non-local parts apart."""
    whole, local, nonlocal_, mf = hf_reference(symbol, spin)
    density = np.asarray(mf.make_rdm1())  # (2, n_ao, n_ao): alpha, beta
    expected_local = np.einsum("sij,ji->", density, local.intor("ECPscalar"))
    expected_nonlocal = np.einsum("sij,ji->", density, nonlocal_.intor("ECPscalar"))

    grids = dft.gen_grid.Grids(whole)
    grids.level = 5
    grids.build()
    points, weights = jnp.asarray(grids.coords), jnp.asarray(grids.weights)
    occupations = np.asarray(mf.mo_occ)
    coeff = np.asarray(mf.mo_coeff)[:, occupations > 0]
    counts = occupations[occupations > 0]  # 2 (both spins) or 1
    (atom_ecp,) = ecp.atom_ecps((symbol,), "ccecp")
    coords = jnp.zeros((1, 3))
    rotations = ecp.random_rotations(jax.random.key(3), points.shape[0], jnp.float64)

    local_part, nonlocal_part = 0.0, 0.0
    for column, count in zip(coeff.T, counts, strict=True):

        def orbital(points, column=column):
            """phi at points (..., 3) bohr, shape (...)."""
            points = np.asarray(points)
            return (whole.eval_gto("GTOval", points.reshape(-1, 3)) @ column).reshape(
                points.shape[:-1]
            )

        def signed_log(electrons, orbital=orbital):
            value = jax.pure_callback(
                orbital,
                jax.ShapeDtypeStruct((), jnp.float64),
                electrons[0],
                vmap_method="expand_dims",
            )
            return jnp.sign(value), jnp.log(jnp.abs(value))

        values = orbital(points)
        v_loc = jax.vmap(lambda p: ecp.local_energy_part(p[None], coords, (atom_ecp,)))(points)
        v_nl = jax.vmap(
            lambda p, rot: ecp.nonlocal_energy_part(signed_log, p[None], coords, (atom_ecp,), rot)
        )(points, rotations)
        density_at = count * values**2
        local_part += float(jnp.sum(weights * density_at * v_loc))
        nonlocal_part += float(jnp.sum(weights * density_at * v_nl))
    assert abs(expected_nonlocal) > 0.1  # the test has something to compare
    np.testing.assert_allclose(local_part, expected_local, atol=2e-5)
    np.testing.assert_allclose(nonlocal_part, expected_nonlocal, atol=2e-5)


def test_determinant_ratios_keep_their_signs():
    """For a Slater determinant D of orbitals phi_j, V_nl is one-body: V_nl D / D at R is
    sum_ij [V_nl phi_j](r_i) (A^-1)_ji with A_ij = phi_j(r_i), where [V_nl phi_j](r) / phi_j(r) is
    the one-electron quadrature (same grid rotation). Orbitals with nodes make the ratios change
    sign, so a lost sign fails the test."""
    (atom_ecp,) = ecp.atom_ecps(("Si",), "ccecp")
    coords = jnp.zeros((1, 3))
    orbitals = [
        lambda x, y, z: 1.0 + 0.3 * x,
        lambda x, y, z: x - 2 * z + 0.1,
        lambda x, y, z: y + 0.5 * x * z,
    ]

    def matrix(electrons):
        r = jnp.linalg.norm(electrons, axis=-1)
        x, y, z = electrons.T
        return jnp.stack([jnp.exp(-r) * f(x, y, z) for f in orbitals], axis=1)

    determinant = lambda electrons: jnp.linalg.slogdet(matrix(electrons))  # noqa: E731
    rotation = ecp.random_rotations(jax.random.key(4), 1, jnp.float64)[0]
    for seed in range(4):
        electrons = jnp.asarray(np.random.default_rng(seed).normal(size=(3, 3)))
        value = ecp.nonlocal_energy_part(determinant, electrons, coords, (atom_ecp,), rotation)
        a = matrix(electrons)
        applied = jnp.stack(
            [
                jnp.stack(
                    [
                        ecp.nonlocal_energy_part(
                            one_electron(f), electrons[i : i + 1], coords, (atom_ecp,), rotation
                        )
                        * a[i, j]
                        for j, f in enumerate(orbitals)
                    ]
                )
                for i in range(3)
            ]
        )
        expected = jnp.sum(applied * jnp.linalg.inv(a).T)
        np.testing.assert_allclose(float(value), float(expected), rtol=1e-9)


def test_local_energy_with_an_ecp_needs_rotations():
    molecule = load_molecule("N", ecp="ccecp")
    local_energy = make_local_energy(
        lambda p, e: (jnp.ones(()), -jnp.sum(jnp.linalg.norm(e, axis=-1))),
        molecule.coords,
        molecule.charges,
        method="hessian",
        ecps=ecp.atom_ecps(molecule.symbols, molecule.ecp),
    )
    walkers = jnp.asarray(RNG.normal(size=(2, 5, 3)))
    with pytest.raises(InputError, match="needs rotations"):
        local_energy(None, walkers)
    rotations = ecp.random_rotations(jax.random.key(5), 2, jnp.float64)
    assert np.all(np.isfinite(np.asarray(local_energy(None, walkers, rotations))))


def test_hartree_fock_with_the_ecp_sees_only_valence_electrons():
    hf = run_hartree_fock(load_molecule("O", ecp="ccecp"), method="rohf")
    assert (hf.n_alpha, hf.n_beta) == (4, 2)
    assert hf.mol.nelectron == 6 and hf.converged
    assert -15.70 < hf.energy < -15.68  # ROHF with ccECP; all-electron O is -74.8
