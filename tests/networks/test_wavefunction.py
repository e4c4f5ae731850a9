"""Symmetries, nodes, batching, dtypes and determinism of the full wavefunctions."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_networks import build, tiny_config, walker

from vmcjet.config import NetworkConfig
from vmcjet.errors import InputError
from vmcjet.molecule import Molecule, load_molecule
from vmcjet.networks import make_wavefunction

KINDS = ("ferminet", "psiformer")
MODES = list(itertools.product(KINDS, (False, True)))


@pytest.mark.parametrize(
    ("kind", "full", "name"),
    [(*mode, "LiH") for mode in MODES] + [("ferminet", False, "Li"), ("psiformer", True, "Li")],
)
def test_swapping_same_spin_electrons_flips_the_sign(kind, full, name):
    wf, params, mol = build(kind, name, full_determinant=full, envelope="anisotropic")
    x = walker(mol)
    sign, log = wf.apply(params, x)
    swaps = [(0, 1)] + ([(mol.n_alpha, mol.n_alpha + 1)] if mol.n_beta >= 2 else [])
    for i, j in swaps:
        swapped = x.at[jnp.array([i, j])].set(x[jnp.array([j, i])])
        sign_s, log_s = wf.apply(params, swapped)
        assert sign_s == -sign
        np.testing.assert_allclose(log_s, log, rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_swapping_opposite_spin_electrons_changes_psi(kind):
    """Guard against a test that cannot fail: the spins really are distinguished."""
    wf, params, mol = build(kind, "LiH")
    x = walker(mol)
    swapped = x.at[jnp.array([0, 2])].set(x[jnp.array([2, 0])])
    assert abs(wf.apply(params, swapped)[1] - wf.apply(params, x)[1]) > 1e-6


def _rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))[None, :]
    return q if np.linalg.det(q) > 0 else -q


def _moved(mol: Molecule, rotation: np.ndarray, shift: np.ndarray) -> Molecule:
    return Molecule(mol.name, mol.symbols, mol.coords @ rotation.T + shift, mol.charges)


@pytest.mark.parametrize(("kind", "full"), MODES)
def test_distance_inputs_are_rotation_and_translation_invariant(kind, full):
    wf, params, mol = build(kind, "LiH", full_determinant=full, inputs="distances", jastrow=True)
    rotation, shift = _rotation(3), np.array([0.3, -1.2, 2.0])
    moved = make_wavefunction(
        tiny_config(kind, full_determinant=full, inputs="distances", jastrow=True),
        _moved(mol, rotation, shift),
    )
    x = walker(mol)
    x_moved = x @ jnp.asarray(rotation.T) + jnp.asarray(shift)[None, :]
    np.testing.assert_allclose(moved.apply(params, x_moved), wf.apply(params, x), rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_vector_inputs_are_translation_invariant_but_see_orientation(kind):
    wf, params, mol = build(kind, "LiH")
    x = walker(mol)
    shift = np.array([0.3, -1.2, 2.0])
    shifted = make_wavefunction(tiny_config(kind), _moved(mol, np.eye(3), shift))
    rotated = make_wavefunction(tiny_config(kind), _moved(mol, _rotation(3), np.zeros(3)))
    log = wf.apply(params, x)[1]
    np.testing.assert_allclose(
        shifted.apply(params, x + jnp.asarray(shift)[None, :])[1], log, rtol=1e-12
    )
    x_rotated = x @ jnp.asarray(_rotation(3).T)
    assert abs(rotated.apply(params, x_rotated)[1] - log) > 1e-6


@pytest.mark.parametrize(("kind", "full"), MODES)
def test_coincident_same_spin_electrons_give_minus_infinity(kind, full):
    """psi = 0 exactly: log|psi| = -inf (never NaN, never a large finite value left by rounding),
    a sign of +-1, and finite gradients next to the node. (Exact zeros through the determinant
    code are tested in test_determinants.py.)"""
    wf, params, mol = build(kind, "LiH", full_determinant=full)
    x = walker(mol)
    sign, log = wf.apply(params, x.at[1].set(x[0]))
    assert log == -jnp.inf
    assert jnp.isfinite(wf.apply(params, x.at[2].set(x[0]))[1])  # opposite spins: psi != 0
    assert sign in (-1.0, 1.0)
    near = x.at[1].set(x[0] + 1e-5)
    grads = jax.grad(lambda p, e: wf.apply(p, e)[1], argnums=(0, 1))(params, near)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))


@pytest.mark.parametrize(("kind", "full"), MODES)
def test_orbital_determinants_sum_to_psi(kind, full):
    wf, params, mol = build(kind, "LiH", full_determinant=full, jastrow=False)
    x = walker(mol)
    matrices = wf.orbitals(params, x)
    assert matrices.shape == (2, 4, 4)
    psi = jnp.sum(jnp.linalg.det(matrices))
    sign, log = wf.apply(params, x)
    np.testing.assert_allclose(sign * jnp.exp(log), psi, rtol=1e-10)
    if not full:
        assert not jnp.any(matrices[:, :2, 2:]) and not jnp.any(matrices[:, 2:, :2])


@pytest.mark.parametrize("kind", KINDS)
def test_hydrogen_atom_without_beta_electrons(kind):
    wf, params, mol = build(kind, "H")
    sign, log = wf.apply(params, walker(mol))
    assert sign in (-1.0, 1.0) and jnp.isfinite(log)
    assert wf.orbitals(params, walker(mol)).shape == (2, 1, 1)


@pytest.mark.parametrize("kind", KINDS)
def test_vmap_matches_single_walkers(kind):
    wf, params, mol = build(kind, "LiH")
    batch = jnp.stack([walker(mol, seed) for seed in range(3)])
    signs, logs = jax.vmap(wf.apply, in_axes=(None, 0))(params, batch)
    for i in range(3):
        np.testing.assert_allclose((signs[i], logs[i]), wf.apply(params, batch[i]), rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_dtypes_follow_init_and_electrons(kind):
    wf, _, mol = build(kind, "LiH")
    params32 = wf.init(key=jax.random.PRNGKey(0))
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(params32)} == {jnp.dtype("float32")}
    x = walker(mol)
    assert wf.apply(params32, x)[1].dtype == jnp.float64
    assert wf.apply(params32, x.astype(jnp.float32))[1].dtype == jnp.float32


@pytest.mark.parametrize("kind", KINDS)
def test_init_is_deterministic_given_the_key(kind):
    wf, params, _ = build(kind, "LiH")
    again = wf.init(key=jax.random.PRNGKey(0), dtype=jnp.float64)
    other = wf.init(key=jax.random.PRNGKey(1), dtype=jnp.float64)
    leaves, leaves_again = (jax.tree_util.tree_leaves(t) for t in (params, again))
    assert all(np.array_equal(a, b) for a, b in zip(leaves, leaves_again, strict=True))
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(other)
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(leaves, jax.tree_util.tree_leaves(other), strict=True)
        if a.ndim == 2
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "transformer"}, "network.kind"),
        ({"envelope": "gaussian"}, "network.envelope"),
        ({"inputs": "angles"}, "network.inputs"),
        ({"preset": "huge"}, "network.preset"),
        ({"preset": "paper", "determinants": 8}, "network.determinants"),
        ({"determinants": 0}, "network sizes"),
    ],
)
def test_bad_options_raise_input_error(changes, message):
    mol = Molecule("H", ("H",), np.zeros((1, 3)), np.ones(1))
    with pytest.raises(InputError, match=message):
        make_wavefunction(NetworkConfig(**changes), mol)


@pytest.mark.parametrize("kind", ["ferminet", "psiformer"])
def test_moving_the_nuclei_with_the_electrons_leaves_psi_unchanged(kind):
    """apply(..., nuclei=R) at the molecule's R is apply(...); translating electrons and nuclei
    together leaves log|psi| unchanged, so sum_I d log|psi|/dR_I = -sum_i d log|psi|/dr_i (the
    nuclear derivative the force estimators use); moving a nucleus alone changes psi."""
    wf, params, molecule = build(kind, "LiH", jastrow=True)
    electrons = walker(molecule)
    nuclei = jnp.asarray(molecule.coords)
    assert wf.apply(params, electrons, nuclei=nuclei) == wf.apply(params, electrons)
    log_psi = lambda x, r: wf.apply(params, x, nuclei=r)[1]
    g, d = jax.grad(log_psi, argnums=(0, 1))(electrons, nuclei)
    np.testing.assert_allclose(d.sum(axis=0), -g.sum(axis=0), rtol=1e-9, atol=1e-11)
    assert np.max(np.abs(np.asarray(d))) > 1e-3


@pytest.mark.parametrize("kind", ["ferminet", "psiformer"])
@pytest.mark.parametrize("ecp", ["", "ccecp"])
def test_cusp_at_a_nucleus_only_without_an_ecp(kind, ecp):
    # An ECP's potential is finite at its nucleus, so psi must be smooth there: the derivative of
    # log|psi| along x is the same just left and just right of the nucleus. Without an ECP the
    # distance features and envelopes give psi its electron-nucleus cusp: the two sides differ.
    wf, params, molecule = build(kind, load_molecule("O", ecp=ecp), key=2)
    electrons = walker(molecule, seed=3)
    step = jnp.asarray([1e-6, 0.0, 0.0])

    def slope(position):
        moved = electrons.at[0].set(position)
        return jax.grad(lambda x: wf.apply(params, moved.at[0].set(x))[1])(position)[0]

    centre = jnp.asarray(molecule.coords[0])
    jump = abs(float(slope(centre + step) - slope(centre - step)))
    if ecp:
        assert jump < 1e-4
    else:
        assert jump > 1e-2


@pytest.mark.parametrize("kind", ["ferminet", "psiformer"])
def test_inversion_symmetric_network(kind):
    wf, params, molecule = build(kind, "N2", key=4, symmetry="inversion")
    plain, _, _ = build(kind, "N2", key=4)
    electrons = walker(molecule, seed=5)
    centre = np.asarray(molecule.coords).mean(axis=0)
    inverted = 2 * jnp.asarray(centre)[None, :] - electrons
    sign, log = wf.apply(params, electrons)
    sign_i, log_i = wf.apply(params, inverted)
    assert float(sign) == float(sign_i)
    np.testing.assert_allclose(log_i, log, rtol=1e-12)
    # the plain network is not symmetric, and the symmetric one is its sum over the two images
    s_r, l_r = plain.apply(params, electrons)
    s_i, l_i = plain.apply(params, inverted)
    assert abs(float(l_r - l_i)) > 1e-3
    np.testing.assert_allclose(
        float(sign * jnp.exp(log)), float(s_r * jnp.exp(l_r) + s_i * jnp.exp(l_i)), rtol=1e-10
    )
    swapped = electrons.at[jnp.array([0, 1])].set(electrons[jnp.array([1, 0])])
    sign_s, log_s = wf.apply(params, swapped)  # still antisymmetric
    assert float(sign_s) == -float(sign)
    np.testing.assert_allclose(log_s, log, rtol=1e-12)


def test_inversion_symmetry_needs_a_symmetric_molecule():
    with pytest.raises(InputError, match="inversion symmetry"):
        make_wavefunction(tiny_config("ferminet", symmetry="inversion"), load_molecule("LiH"))
    with pytest.raises(InputError, match="network.symmetry"):
        make_wavefunction(tiny_config("ferminet", symmetry="mirror"), load_molecule("N2"))
