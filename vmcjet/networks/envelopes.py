"""Exponential envelopes that make every orbital decay away from the nuclei.

For orbital o and electron i,

    isotropic:    env_o(r_i) = sum_I pi_Io exp(-|sigma_Io| |r_i - R_I|)
    anisotropic:  env_o(r_i) = sum_I pi_Io exp(-|Sigma_Io (r_i - R_I)|),  Sigma_Io a 3x3 matrix

The isotropic form depends on distances only, so it keeps the wavefunction invariant under
rotations and translations of electrons and nuclei together. Parameters: isotropic
2 n_atoms n_out, anisotropic 10 n_atoms n_out.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vmcjet.errors import InputError

ENVELOPES = ("isotropic", "anisotropic")


def check_envelope(kind: str) -> None:
    if kind not in ENVELOPES:
        raise InputError(f"unknown network.envelope '{kind}'; use one of {', '.join(ENVELOPES)}")


def init_envelope(kind: str, n_atoms: int, n_out: int, *, dtype) -> dict:
    """Envelope parameters: pi (n_atoms, n_out) = 1 and sigma = 1 (isotropic, (n_atoms, n_out))
    or the identity (anisotropic, (n_atoms, n_out, 3, 3))."""
    check_envelope(kind)
    pi = jnp.ones((n_atoms, n_out), dtype)
    if kind == "isotropic":
        return {"pi": pi, "sigma": jnp.ones((n_atoms, n_out), dtype)}
    eye = np.broadcast_to(np.eye(3), (n_atoms, n_out, 3, 3))
    return {"pi": pi, "sigma": jnp.asarray(eye, dtype)}


def envelope_size(kind: str, n_atoms: int, n_out: int) -> int:
    """Number of parameters of `init_envelope`."""
    return (2 if kind == "isotropic" else 10) * n_atoms * n_out


def apply_envelope(params: dict, ae: jax.Array, r_ae: jax.Array) -> jax.Array:
    """Envelope values.

    Args:
        params: from `init_envelope`.
        ae: (n, n_atoms, 3) electron-nucleus vectors, bohr.
        r_ae: (n, n_atoms, 1) electron-nucleus distances, bohr.

    Returns:
        (n, n_out) envelope of each output orbital at each electron.
    """
    sigma = params["sigma"]
    if sigma.ndim == 2:
        exponent = r_ae * jnp.abs(sigma)[None]
    else:
        scaled = jnp.einsum("imx,moyx->imoy", ae, sigma)
        exponent = jnp.sqrt(jnp.sum(scaled * scaled, axis=-1))
    return jnp.sum(params["pi"][None] * jnp.exp(-exponent), axis=1)
