"""A small FermiNet-like log|psi| through the collapsed forward Laplacian (float64).

One-electron and pair streams, mean-field mixing over electrons, exponential envelopes and
block-diagonal spin determinants through slogdet: the shape of the wavefunctions vmcjet trains.
"""

import jax
import jax.numpy as jnp
import numpy as np

from vmcjet.laplacian import forward_laplacian

ATOMS = jnp.array([[0.0, 0.0, -0.7], [0.0, 0.0, 0.7]])


def init_params(key, n_up, n_down, width=16, pair_width=4, layers=2):
    """Random parameters of `ferminet_like` (weights scaled to keep tanh out of saturation)."""
    keys = iter(jax.random.split(key, 4 * layers + 4))
    normal = lambda shape: jax.random.normal(next(keys), shape) / np.sqrt(shape[0])
    one_in, pair_in = 4 * ATOMS.shape[0], 4
    params = {"layers": [], "orbitals": {}}
    for _ in range(layers):
        params["layers"].append(
            {"one": normal((3 * one_in + pair_in, width)), "pair": normal((pair_in, pair_width))}
        )
        one_in, pair_in = width, pair_width
    for spin, n in (("up", n_up), ("down", n_down)):
        params["orbitals"][spin] = normal((width, n))
    params["sigma"] = 1.0 + 0.1 * jax.random.uniform(next(keys), (n_up + n_down,))
    return params


def ferminet_like(params, electrons, n_up):
    """log|psi| of electrons (n, 3) in bohr: streams, mean-field mixing, envelopes, slogdet."""
    n = electrons.shape[0]
    ae = electrons[:, None, :] - ATOMS[None, :, :]
    r_ae = jnp.sqrt(jnp.sum(ae**2, axis=-1, keepdims=True))
    ee = electrons[:, None, :] - electrons[None, :, :]
    r_ee = jnp.sqrt(jnp.sum(ee**2, axis=-1, keepdims=True) + jnp.eye(n)[..., None])
    one = jnp.concatenate([ae, r_ae], axis=-1).reshape(n, -1)
    pair = jnp.concatenate([ee, r_ee], axis=-1)
    for layer in params["layers"]:
        up, down = jnp.mean(one[:n_up], axis=0), jnp.mean(one[n_up:], axis=0)
        mixed = jnp.concatenate(
            [one, jnp.broadcast_to(up, one.shape), jnp.broadcast_to(down, one.shape),
             jnp.mean(pair, axis=1)], axis=-1)  # fmt: skip
        new_one = jnp.tanh(mixed @ layer["one"])
        one = new_one + one if new_one.shape == one.shape else new_one
        pair = jnp.tanh(pair @ layer["pair"])
    envelope = jnp.exp(-jnp.sum(r_ae, axis=(1, 2))[:, None] * params["sigma"][None, :])
    log_det = 0.0
    for spin, rows in (("up", slice(0, n_up)), ("down", slice(n_up, n))):
        orbitals = (one[rows] @ params["orbitals"][spin]) * envelope[rows, rows]
        log_det = log_det + jnp.linalg.slogdet(orbitals)[1]
    return log_det


def test_ferminet_like_matches_hessian_under_vmap_and_chunks():
    n_up, n_down = 3, 2
    params = init_params(jax.random.key(1), n_up, n_down)
    walkers = jax.random.normal(jax.random.key(2), (3, n_up + n_down, 3))
    f = lambda x: ferminet_like(params, x, n_up)
    ours = jax.jit(jax.vmap(forward_laplacian(f)))(walkers)
    chunked = jax.jit(jax.vmap(forward_laplacian(f, chunk_size=6)))(walkers)
    hessians = jax.jit(jax.vmap(jax.hessian(f)))(walkers).reshape(3, 15, 15)
    np.testing.assert_allclose(ours[0], jax.vmap(f)(walkers), rtol=1e-12)
    np.testing.assert_allclose(ours[1], jax.vmap(jax.grad(f))(walkers), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(ours[2], jnp.trace(hessians, axis1=1, axis2=2), rtol=1e-9)
    for a, b in zip(ours, chunked, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11)
