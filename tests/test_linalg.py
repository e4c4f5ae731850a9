"""vmcjet.linalg: log-determinants and inverses without LAPACK, against NumPy and JAX's LAPACK path
(float64), and the guarantee that the wavefunction side of a step lowers to no LAPACK call (the
calls that deadlock with jaxlib 0.10: docs/reliability.md, "JAX version")."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vmcjet.config import FermiNetConfig, NetworkConfig
from vmcjet.hamiltonian import make_local_energy
from vmcjet.linalg import slogdet, slogdet_and_inverse
from vmcjet.molecule import load_molecule
from vmcjet.networks import make_wavefunction


def random_matrices(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float64)


@pytest.mark.parametrize("shape", [(1, 1), (4, 2, 2), (3, 5, 3, 3), (20, 7, 7), (6, 15, 15)])
def test_slogdet_and_inverse_match_numpy(shape):
    a = random_matrices(shape)
    sign, logdet = slogdet(a)
    sign_i, logdet_i, inverse = slogdet_and_inverse(a)
    want_sign, want_logdet = np.linalg.slogdet(np.asarray(a))
    np.testing.assert_array_equal(sign, want_sign)
    np.testing.assert_array_equal(sign_i, want_sign)
    np.testing.assert_allclose(logdet, want_logdet, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(logdet_i, want_logdet, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(inverse, np.linalg.inv(np.asarray(a)), rtol=1e-9, atol=1e-10)


def test_pivoting_is_needed_and_counted():
    # Without row swaps the first pivot is 0; one swap makes the determinant negative.
    a = jnp.asarray([[0.0, 2.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    sign, logdet = slogdet(a)
    assert float(sign) == -1.0
    np.testing.assert_allclose(logdet, np.log(6.0), rtol=1e-12)


@pytest.mark.parametrize("singular", ["equal_rows", "zero_row", "zeros"])
def test_singular_matrices_give_sign_zero_and_minus_infinity(singular):
    a = np.array(random_matrices((4, 4)))
    if singular == "equal_rows":
        a[2] = a[0]
    elif singular == "zero_row":
        a[1] = 0.0
    else:
        a[:] = 0.0
    sign, logdet = slogdet(jnp.asarray(a))
    assert float(sign) == 0.0
    assert float(logdet) == -np.inf


def test_derivatives_match_jax_lapack_path_to_third_order():
    a = random_matrices((5, 5), seed=3) + 3 * jnp.eye(5)
    ours = lambda m: slogdet(m)[1]  # noqa: E731
    lapack = lambda m: jnp.linalg.slogdet(m)[1]  # noqa: E731
    np.testing.assert_allclose(jax.grad(ours)(a), jax.grad(lapack)(a), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(jax.hessian(ours)(a), jax.hessian(lapack)(a), rtol=1e-9, atol=1e-11)
    direction = random_matrices((5, 5), seed=4)
    third = lambda f: jax.jvp(  # noqa: E731
        lambda m: jax.jvp(jax.grad(f), (m,), (direction,))[1], (a,), (direction,)
    )[1]
    np.testing.assert_allclose(third(ours), third(lapack), rtol=1e-8, atol=1e-10)
    _, _, inverse = slogdet_and_inverse(a)
    d_inverse = jax.jvp(lambda m: slogdet_and_inverse(m)[2], (a,), (direction,))[1]
    np.testing.assert_allclose(d_inverse, -inverse @ direction @ inverse, rtol=1e-10, atol=1e-12)


def test_slogdet_is_a_jit_named_slogdet():
    # The Laplacian engine and folx give a `jit` of this name their log-determinant rule.
    jaxpr = jax.make_jaxpr(slogdet)(jnp.eye(3))
    assert [eqn.params["name"] for eqn in jaxpr.eqns] == ["slogdet"]


@pytest.mark.parametrize("full_determinant", [False, True])
def test_wavefunction_energy_and_gradient_lower_without_lapack(full_determinant):
    molecule = load_molecule("LiH")
    config = NetworkConfig(
        kind="ferminet",
        determinants=2,
        full_determinant=full_determinant,
        ferminet=FermiNetConfig(hidden_one=8, hidden_two=4, layers=1),
    )
    wf = make_wavefunction(config, molecule)
    params = wf.init(key=jax.random.PRNGKey(0), dtype=jnp.float32)
    walkers = jnp.zeros((8, molecule.n_electrons, 3), jnp.float32)
    local_energy = make_local_energy(wf.apply, molecule.coords, molecule.charges)
    per_walker_gradient = jax.vmap(jax.grad(lambda p, x: wf.apply(p, x)[1]), (None, 0))
    for fn in (jax.vmap(wf.apply, (None, 0)), local_energy, per_walker_gradient):
        text = jax.jit(fn).lower(params, walkers).as_text()
        assert "lapack" not in text.lower()
        assert "custom_call" not in text
