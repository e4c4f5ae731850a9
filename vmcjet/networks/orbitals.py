"""Orbitals: a linear map of each electron's final features times exponential envelopes.

Each spin channel s has its own parameters and produces, for each of the K determinants, n_orb
orbitals per electron: phi_kj(r_i) = (w_kj . h_i + b_kj) env_kj(r_i), with n_orb = n_s
(block-diagonal determinants) or n (full determinants). Parameters per non-empty channel:
(d + 1) K n_orb for the linear map plus the envelope's (2 or 10) n_atoms K n_orb.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vmcjet.networks.envelopes import apply_envelope, envelope_size, init_envelope
from vmcjet.networks.layers import Tape, dense, dense_size, init_dense, scope


def orbital_widths(groups: tuple[tuple[int, int], ...], full: bool) -> list[int]:
    """Orbitals per determinant of each spin channel: n (full) or n_s (block-diagonal)."""
    n = groups[-1][1]
    return [n if full else b - a for a, b in groups]


def init_orbitals(
    key: jax.Array,
    *,
    width: int,
    n_atoms: int,
    n_dets: int,
    n_orbs: list[int],
    envelope: str,
    dtype,
) -> list[dict]:
    """Per spin channel: {"linear": dense (width -> K n_orb), "envelope": ...}."""
    keys = jax.random.split(key, len(n_orbs))
    return [
        {
            "linear": init_dense(k, width, n_dets * n_orb, dtype=dtype),
            "envelope": init_envelope(envelope, n_atoms, n_dets * n_orb, dtype=dtype),
        }
        for k, n_orb in zip(keys, n_orbs, strict=True)
    ]


def orbitals_size(*, width: int, n_atoms: int, n_dets: int, n_orbs: list[int], envelope: str):
    """Number of parameters of `init_orbitals`."""
    return sum(
        dense_size(width, n_dets * n) + envelope_size(envelope, n_atoms, n_dets * n) for n in n_orbs
    )


def apply_orbitals(
    params: list[dict],
    h: jax.Array,
    ae: jax.Array,
    r_ae: jax.Array,
    groups: tuple[tuple[int, int], ...],
    n_dets: int,
    tape: Tape | None = None,
) -> list[jax.Array]:
    """Orbital values per spin channel.

    Args:
        params: from `init_orbitals`.
        h: (n, width) final electron features.
        ae: (n, n_atoms, 3) electron-nucleus vectors, bohr.
        r_ae: (n, n_atoms, 1) electron-nucleus distances, bohr.
        groups: (start, stop) of each non-empty spin channel.
        n_dets: number of determinants K.
        tape: records the linear maps "<channel>.linear" (see `vmcjet.networks.layers`).

    Returns:
        Per channel, (K, n_s, n_orb) with [k, i, j] = phi_kj(r_i).
    """
    blocks = []
    for index, (channel, (a, b)) in enumerate(zip(params, groups, strict=True)):
        linear = dense(channel["linear"], h[a:b], scope(tape, index, "linear"))
        values = linear * apply_envelope(channel["envelope"], ae[a:b], r_ae[a:b])
        values = values.reshape(b - a, n_dets, -1)
        blocks.append(jnp.transpose(values, (1, 0, 2)))
    return blocks
