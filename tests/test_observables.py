"""Observables on exact or small wavefunctions: <S^2> from spin exchanges, the dipole moment,
the density and the forces on the nuclei."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vmcjet import cli
from vmcjet.errors import InputError
from vmcjet.hamiltonian import make_local_energy
from vmcjet.molecule import load_molecule
from vmcjet.observables import (
    DensityGrid,
    density_counts_fn,
    density_grid,
    dipole_fn,
    force_terms_fn,
    nuclear_repulsion_forces,
    parse_observables,
    spin_squared_fn,
    zv_zb_forces,
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


def lcao_log_psi(exponent):
    """log|psi| of one electron, psi = sum_I exp(-exponent |r - R_I|), as
    (params, electrons (1, 3), nuclei (N, 3)) -> scalar."""

    def log_psi(params, electrons, nuclei):
        del params
        distances = jnp.linalg.norm(electrons[0][None] - nuclei, axis=-1)
        return jax.scipy.special.logsumexp(-exponent * distances)

    return log_psi


def test_the_hydrogen_like_ions_zero_variance_force_vanishes_for_every_sample():
    """psi = exp(-Z |r - R|) is exact for one electron and a nucleus of charge Z: every
    sample's zero-variance force is 0 (E_L is constant, so the Pulay term is too), while the bare
    Hellmann-Feynman estimator scatters."""
    nucleus, charge = np.array([[0.3, -0.2, 0.1]]), np.array([2.0])
    terms = jax.vmap(force_terms_fn(lcao_log_psi(2.0), nucleus, charge), in_axes=(None, 0))(
        None, walkers(64, 1, seed=2)
    )
    np.testing.assert_allclose(terms.zero_variance, 0.0, atol=1e-12)
    assert np.std(np.asarray(terms.bare)) > 0.1
    energies = jnp.full((64,), -2.0)
    np.testing.assert_allclose(zv_zb_forces(terms, energies, jnp.ones(64)), 0.0, atol=1e-12)


def test_nuclear_repulsion_forces_push_the_nuclei_apart():
    forces = nuclear_repulsion_forces([[0, 0, 0], [0, 0, 2.0]], [1.0, 3.0])
    np.testing.assert_allclose(forces, [[0, 0, -0.75], [0, 0, 0.75]])


def sampled_h2_ion(log_psi, nuclei, *, walkers_count=2048, steps=400, every=4, burn_in=100):
    """Metropolis samples of |psi|^2 for one electron: (walkers, samples, 1, 3) bohr."""

    def move(state, key):
        x, log_p = state
        step_key, accept_key = jax.random.split(key)
        proposal = x + 0.6 * jax.random.normal(step_key, x.shape)
        log_q = jax.vmap(lambda e: log_psi(None, e, nuclei))(proposal)
        accept = jnp.log(jax.random.uniform(accept_key, log_p.shape)) < 2 * (log_q - log_p)
        x = jnp.where(accept[:, None, None], proposal, x)
        return (x, jnp.where(accept, log_q, log_p)), x

    start = jax.random.normal(jax.random.key(7), (walkers_count, 1, 3))
    log_p = jax.vmap(lambda e: log_psi(None, e, nuclei))(start)
    keys = jax.random.split(jax.random.key(8), steps)
    _, path = jax.lax.scan(move, (start, log_p), keys)
    return jnp.swapaxes(path[burn_in::every], 0, 1)


def test_zv_zb_force_is_minus_the_energy_derivative_for_an_inexact_psi():
    """H2+ (R = 2 bohr) with an LCAO psi whose exponent (1.5) is far from the best one: the mean
    ZV-ZB force on nucleus 2 equals minus the derivative of the energy at fixed psi parameters,
    taken by correlated sampling of the same samples at R2 +- h, within 4 standard errors; the
    zero-variance estimator without its Pulay term misses it by more (so the test can fail); the
    two nuclei's forces add up to zero."""
    log_psi = lcao_log_psi(1.5)
    nuclei = np.array([[0.0, 0.0, -1.0], [0.0, 0.0, 1.0]])
    charges = np.array([1.0, 1.0])
    samples = sampled_h2_ion(log_psi, jnp.asarray(nuclei))  # (W, S, 1, 3)
    flat = samples.reshape(-1, 1, 3)

    def energies_at(at):
        local = make_local_energy(
            lambda p, e: (1.0, log_psi(p, e, at)), at, charges, method="hessian"
        )
        return local(None, flat)

    terms = jax.vmap(force_terms_fn(log_psi, nuclei, charges), in_axes=(None, 0))(None, flat)
    energies = energies_at(jnp.asarray(nuclei))
    per_sample = zv_zb_forces(terms, energies, jnp.ones(flat.shape[0]))
    walker_means = np.asarray(per_sample).reshape(samples.shape[0], -1, 2, 3).mean(axis=1)
    force = walker_means.mean(axis=0)
    error = walker_means.std(axis=0) / np.sqrt(samples.shape[0])

    h = 1e-3
    base = jax.vmap(lambda e: log_psi(None, e, jnp.asarray(nuclei)))(flat)

    def reweighted_energy(dz):
        at = jnp.asarray(nuclei).at[1, 2].add(dz)
        weights = jnp.exp(2 * (jax.vmap(lambda e: log_psi(None, e, at))(flat) - base))
        return float(jnp.sum(weights * energies_at(at)) / jnp.sum(weights))

    derivative = -(reweighted_energy(h) - reweighted_energy(-h)) / (2 * h)
    zv_only = np.asarray(terms.zero_variance)[:, 1, 2].mean()
    print(f"ZV-ZB {force[1, 2]:.5f}({error[1, 2]:.5f}) ZV {zv_only:.5f} -dE/dR {derivative:.5f}")
    assert abs(force[1, 2] - derivative) < 4 * error[1, 2]
    assert abs(zv_only - derivative) > 4 * error[1, 2]
    assert np.all(np.abs(force.sum(axis=0)) < 4 * np.sqrt((error**2).sum(axis=0)))
