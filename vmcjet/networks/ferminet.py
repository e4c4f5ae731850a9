"""FermiNet backbone (Pfau et al., Phys. Rev. Research 2, 033429, 2020).

Inputs: one-electron features h_i^0 = [r_i - R_I, |r_i - R_I|]_I (f n_atoms) and two-electron
features g_ij^0 = [r_i - r_j, |r_i - r_j|] (f), f = 4; with inputs = "distances" only the
distances (f = 1), which makes the network invariant under rotations. Interaction layer l mixes
each electron's stream with spin-resolved means over the non-empty spin channels s (G = 1 or 2):

    f_i = [h_i, mean_{j in s} h_j (each s), mean_{j in s} g_ij (each s)]
    h_i <- tanh(V f_i + b)   (+ h_i when the widths match)
    g_ij <- tanh(W g_ij + c) (+ g_ij when the widths match; not after the last layer)

Parameters: one-electron layer l has ((1 + G) d1 + G d2) H1 + H1 with (d1, d2) its input widths;
pair layer l < L - 1 has d2 H2 + H2. The output is h^L, shape (n, H1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vmcjet.config import FermiNetConfig
from vmcjet.networks.features import electron_electron, stack_inputs
from vmcjet.networks.layers import Tape, dense, dense_size, init_dense, scope


def _layer_widths(cfg: FermiNetConfig, shape: tuple[int, int, int]) -> list[tuple[int, int, bool]]:
    """Per layer: (one-electron input width, pair input width, has a pair update).

    `shape` is (n_atoms, number of spin channels G, features per nucleus f).
    """
    n_atoms, n_groups, f = shape
    d1, d2 = f * n_atoms, f
    widths = []
    for layer in range(cfg.layers):
        widths.append(((1 + n_groups) * d1 + n_groups * d2, d2, layer < cfg.layers - 1))
        d1, d2 = cfg.hidden_one, cfg.hidden_two
    return widths


def init_ferminet(key: jax.Array, cfg: FermiNetConfig, shape: tuple[int, int, int], *, dtype):
    """Parameters: a list of {"one": dense, "two": dense (all but the last layer)}.

    `shape` is (n_atoms, number of spin channels G, features per nucleus f).
    """
    layers = []
    for key_l, (n_one, n_two, has_two) in zip(
        jax.random.split(key, cfg.layers), _layer_widths(cfg, shape), strict=True
    ):
        key_one, key_two = jax.random.split(key_l)
        layer = {"one": init_dense(key_one, n_one, cfg.hidden_one, dtype=dtype)}
        if has_two:
            layer["two"] = init_dense(key_two, n_two, cfg.hidden_two, dtype=dtype)
        layers.append(layer)
    return layers


def ferminet_size(cfg: FermiNetConfig, shape: tuple[int, int, int]) -> int:
    """Number of parameters of `init_ferminet`."""
    return sum(
        dense_size(n_one, cfg.hidden_one) + (dense_size(n_two, cfg.hidden_two) if has_two else 0)
        for n_one, n_two, has_two in _layer_widths(cfg, shape)
    )


def _one_electron_update(
    params: dict, h: jax.Array, g: jax.Array, groups, tape: Tape | None = None
) -> jax.Array:
    """V f_i + b with f_i = [h_i, spin means of h, spin means of g_i.] ((1+G) d1 + G d2 rows of V).

    Two matrix products instead of one per block of f_i: the per-electron parts [h_i, spin means
    of g_i.] go through one product, and the spin means of h, the same for every electron, through
    another that is computed once (not per electron) and broadcast. Same linear map as
    concatenating f_i, with fewer passes over the (n, H1) output. A `tape` records the logical
    input, the full f (n, (1+G) d1 + G d2) whose weight is all of V.
    """
    w, d1, n_groups = params["w"], h.shape[1], len(groups)
    h_means = [jnp.mean(h[a:b], axis=0) for a, b in groups]
    g_means = [jnp.mean(g[:, a:b], axis=1) for a, b in groups]
    per_electron = jnp.concatenate([h, *g_means], axis=1)
    w_per_electron = jnp.concatenate([w[:d1], w[(1 + n_groups) * d1 :]])
    shared = jnp.concatenate(h_means) @ w[d1 : (1 + n_groups) * d1] + params["b"]
    out = per_electron @ w_per_electron + shared[None, :]
    if tape is None:
        return out
    broadcast = jnp.broadcast_to(jnp.concatenate(h_means), (h.shape[0], n_groups * d1))
    return tape.tag(jnp.concatenate([h, broadcast, *g_means], axis=1), out, bias=True)


def _residual(new: jax.Array, old: jax.Array) -> jax.Array:
    return new + old if new.shape == old.shape else new


def apply_ferminet(
    params: list[dict],
    electrons: jax.Array,
    ae: jax.Array,
    r_ae: jax.Array,
    groups: tuple[tuple[int, int], ...],
    inputs: str,
    tape: Tape | None = None,
) -> jax.Array:
    """Final one-electron features.

    Args:
        params: from `init_ferminet`.
        electrons: (n, 3) positions, bohr, alpha first.
        ae: (n, n_atoms, 3) electron-nucleus vectors, bohr.
        r_ae: (n, n_atoms, 1) electron-nucleus distances, bohr.
        groups: (start, stop) of each non-empty spin channel.
        inputs: "vectors" or "distances" (see the module docstring).
        tape: records the layers "<l>.one" and "<l>.two" (see `vmcjet.networks.layers`).

    Returns:
        (n, hidden_one) features h^L.
    """
    n = electrons.shape[0]
    h = stack_inputs(ae, r_ae, inputs).reshape(n, -1)
    g = stack_inputs(*electron_electron(electrons), inputs)
    for index, layer in enumerate(params):
        one = _one_electron_update(layer["one"], h, g, groups, scope(tape, index, "one"))
        h_new = _residual(jnp.tanh(one), h)
        if "two" in layer:
            g = _residual(jnp.tanh(dense(layer["two"], g, scope(tape, index, "two"))), g)
        h = h_new
    return h
