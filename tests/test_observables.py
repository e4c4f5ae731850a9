"""Observables on exact wavefunctions: <S^2> from spin exchanges, the dipole moment."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vmcjet import cli
from vmcjet.errors import InputError
from vmcjet.molecule import load_molecule
from vmcjet.observables import (
    DensityGrid,
    density_counts_fn,
    density_grid,
    dipole_fn,
    parse_observables,
    spin_squared_fn,
)


def orbital(centre, exponent):
    return lambda r: jnp.exp(-exponent * jnp.linalg.norm(r - jnp.asarray(centre)))


def signed(psi):
    """(params, electrons) -> (sign, log|psi|) of a plain function psi(electrons)."""

    def apply(params, electrons):
        del params
        value = psi(electrons)
        return jnp.sign(value), jnp.log(jnp.abs(value))

    return apply


def walkers(batch, n, seed=0):
    return jax.random.normal(jax.random.key(seed), (batch, n, 3), jnp.float64)


def per_walker(estimator, electrons):
    return np.asarray(jax.vmap(lambda x: estimator(None, x))(electrons))


def test_one_electron_has_three_quarters():
    s2 = spin_squared_fn(signed(lambda x: orbital([0, 0, 0], 1.0)(x[0])), 1, 0)
    np.testing.assert_allclose(per_walker(s2, walkers(4, 1)), 0.75)


def test_h2_closed_shell_is_a_singlet_and_the_antisymmetric_pair_a_triplet():
    """psi = phi(r1) phi(r2) (symmetric under the exchange): 0 for every walker; the spatially
    antisymmetric phi_a(r1) phi_b(r2) - phi_b(r1) phi_a(r2) with Sz = 0 is the triplet: 2."""
    a, b = orbital([0, 0, -0.7], 1.0), orbital([0, 0, 0.7], 1.0)
    bonding = lambda x: a(x[0]) + b(x[0])
    singlet = spin_squared_fn(signed(lambda x: bonding(x[:1]) * bonding(x[1:])), 1, 1)
    triplet = spin_squared_fn(signed(lambda x: a(x[0]) * b(x[1]) - b(x[0]) * a(x[1])), 1, 1)
    electrons = walkers(6, 2, seed=1)
    np.testing.assert_allclose(per_walker(singlet, electrons), 0.0, atol=1e-12)
    np.testing.assert_allclose(per_walker(triplet, electrons), 2.0, atol=1e-12)


def test_high_spin_determinant_is_pure():
    """Two alpha electrons and no beta: S = Sz = 1, <S^2> = 2 exactly."""
    a, b = orbital([0, 0, 0], 1.0), orbital([0, 0, 1.0], 0.5)
    psi = lambda x: a(x[0]) * b(x[1]) - b(x[0]) * a(x[1])
    s2 = spin_squared_fn(signed(psi), 2, 0)
    np.testing.assert_allclose(per_walker(s2, walkers(3, 2, seed=2)), 2.0)


def test_estimator_matches_a_direct_sum_over_alpha_beta_exchanges():
    """Three alpha and two beta electrons, a psi with no symmetry: the estimator equals the
    constant minus the ratios of all 6 alpha-beta exchanges, summed here by a plain loop (so a
    wrong beta index or a missing pair fails)."""
    centres = np.array([[0, 0, 0], [0, 0, 1.0], [0, 1.0, 0], [1.0, 0, 0], [0.5, 0.5, 0.5]])
    exponents = np.array([1.0, 0.8, 0.6, 0.9, 0.7])

    def psi(x):
        distances = jnp.linalg.norm(x[:, None, :] - jnp.asarray(centres)[None], axis=-1)
        alpha = jnp.linalg.det(jnp.exp(-exponents[None, :3] * distances[:3, :3]))
        beta = jnp.linalg.det(jnp.exp(-exponents[None, 3:] * distances[3:, 3:]))
        return alpha * beta * jnp.exp(0.3 * x[0, 2] - 0.2 * x[4, 0])  # a non-symmetric factor

    s2 = spin_squared_fn(signed(psi), 3, 2)
    x = np.asarray(walkers(1, 5, seed=7)[0])
    ratios = 0.0
    for i in range(3):
        for j in (3, 4):
            swapped = x.copy()
            swapped[[i, j]] = x[[j, i]]
            ratios += float(psi(jnp.asarray(swapped)) / psi(jnp.asarray(x)))
    constant = 5 * (4 - 5) / 4 + 3 + 1  # N (4 - N) / 4 + C(3, 2) + C(2, 2) = Sz (Sz + 1) + 2
    np.testing.assert_allclose(float(s2(None, jnp.asarray(x))), constant - ratios, rtol=1e-10)


def test_dipole_is_minus_the_electrons_about_the_centre_of_nuclear_charge():
    lih = load_molecule("LiH")
    electrons = walkers(1, 4, seed=3)[0]
    centre = lih.charges @ lih.coords / lih.charges.sum()
    expected = -np.sum(np.asarray(electrons) - centre, axis=0)
    np.testing.assert_allclose(dipole_fn(lih.coords, lih.charges)(electrons), expected)
    shift = jnp.array([0.3, -1.0, 2.0])  # neutral: the same after moving everything
    moved = dipole_fn(lih.coords + np.asarray(shift), lih.charges)(electrons + shift[None])
    np.testing.assert_allclose(moved, expected, atol=1e-12)


def test_hydrogen_dipole_vanishes_within_error_bars():
    """Exact samples of |psi_1s|^2 (radius ~ Gamma(3, 1/2), uniform direction): mean 0."""
    rng = np.random.default_rng(4)
    radius = rng.gamma(3.0, 0.5, size=20000)
    direction = rng.normal(size=(20000, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    electrons = jnp.asarray((radius[:, None] * direction)[:, None, :])
    values = np.asarray(jax.vmap(dipole_fn(np.zeros((1, 3)), np.ones(1)))(electrons))
    error = values.std(axis=0) / np.sqrt(len(values))
    assert np.all(np.abs(values.mean(axis=0)) < 4 * error)


def test_parse_observables():
    assert parse_observables("") == ()
    assert parse_observables(" dipole, s2,dipole") == ("dipole", "s2")
    with pytest.raises(InputError, match="unknown observable 'spin'"):
        parse_observables("s2,spin")


def test_unknown_observable_in_the_config_is_one_line_and_exit_2(capsys):
    args = ["run", "--molecule", "H", "--set", "observables=s2,spin", "--print-config"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "unknown observable 'spin'" in err and len(err.strip().splitlines()) == 1


def test_density_counts_put_each_spin_in_its_voxel_with_its_weight():
    """A 4 x 4 x 4 grid on [0, 4]^3: voxel (i, j, k) holds the points with floor(x, y, z) =
    (i, j, k), flat index (i * 4 + j) * 4 + k; electrons outside are dropped; alpha first."""
    grid = DensityGrid((0.0, 0.0, 0.0), (4.0, 4.0, 4.0), 4)
    walkers = jnp.array(
        [
            [[0.5, 1.5, 2.5], [3.9, 0.1, 0.2], [5.0, 1.0, 1.0]],  # alpha, alpha, beta (outside)
            [[0.5, 1.5, 2.5], [1.2, 2.2, 3.2], [0.0, 0.0, 0.0]],
        ]
    )
    counts, inside = density_counts_fn(grid, n_alpha=2)(walkers, jnp.array([1.0, 0.5]))
    expected = np.zeros((2, 64))
    expected[0, (0 * 4 + 1) * 4 + 2] = 1.0 + 0.5
    expected[0, (3 * 4 + 0) * 4 + 0] = 1.0
    expected[0, (1 * 4 + 2) * 4 + 3] = 0.5
    expected[1, 0] = 0.5
    np.testing.assert_allclose(counts, expected)
    np.testing.assert_allclose(inside, [2, 3])


def test_density_grid_margin_holds_all_but_the_stated_fraction():
    rng = np.random.default_rng(5)
    electrons = rng.normal(size=(100000, 3))
    grid = density_grid(np.zeros((1, 3)), electrons, points=10, outside=0.01)
    outside = np.any((electrons < grid.lower) | (electrons > grid.upper), axis=1)
    assert outside.mean() == pytest.approx(0.01, abs=0.002)
    assert density_grid(np.zeros((1, 3)), 0.01 * electrons).upper[0] == 1.0  # at least 1 bohr


def test_hydrogen_density_is_exp_minus_2r_over_pi():
    """Exact samples of |psi_1s|^2: the histogram divided by samples and voxel volume matches
    rho(r) = exp(-2 r) / pi on voxels at 0.8-1.5 bohr (mean ratio within 3%), and integrates to
    the fraction of samples inside the box."""
    rng = np.random.default_rng(6)
    radius = rng.gamma(3.0, 0.5, size=400000)
    direction = rng.normal(size=(400000, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    electrons = radius[:, None] * direction
    grid = density_grid(np.zeros((1, 3)), electrons, points=24)
    counts, inside = density_counts_fn(grid, n_alpha=1)(
        jnp.asarray(electrons[:, None, :]), jnp.ones(len(electrons))
    )
    density = np.asarray(counts[0]) / (len(electrons) * grid.voxel_volume)
    centres = [0.5 * (grid.edges(a)[1:] + grid.edges(a)[:-1]) for a in range(3)]
    x, y, z = np.meshgrid(*centres, indexing="ij")
    r = np.sqrt(x**2 + y**2 + z**2).ravel()
    shell = (r > 0.8) & (r < 1.5)
    assert np.mean(density[shell] / (np.exp(-2 * r[shell]) / np.pi)) == pytest.approx(1, abs=0.03)
    assert density.sum() * grid.voxel_volume == pytest.approx(float(np.mean(inside)))
