"""Derivatives of log|psi| with respect to the parameters, over a batch of walkers: what an
optimiser reads (`optim.GradientBatch`).

Three forms, each vmapped over walkers or taken in `lax.map` chunks of `walker_batch_size`:
per-walker gradients O (B x P leaves, for SPRING), the energy gradient 2 mean_b r_b d log|psi| / d
params in one backward pass per chunk (Adam), and per-layer records of inputs and output
gradients (KFAC). `make_gradient_batch` assembles the ones an optimiser `needs`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from vmcjet import optim
from vmcjet.hamiltonian import over_walkers
from vmcjet.networks import Wavefunction
from vmcjet.networks.layers import Tape, dense_layer_names, named_leaves

Params = Any


def log_abs_psi_fn(wavefunction: Wavefunction) -> Callable[[Params, jax.Array], jax.Array]:
    """(params, electrons (n, 3)) -> log|psi| scalar."""
    return lambda params, electrons: wavefunction.apply(params, electrons)[1]


def per_walker_gradients(
    wavefunction: Wavefunction, walker_batch_size: int | None = None
) -> Callable[..., Params]:
    """(params, walkers (B, n, 3), keep (B,) bool = all) -> d log|psi| / d params, with a leading
    B on each leaf; rows of walkers not kept are zero (computed as the gradient of 0 * log|psi|,
    so no masked copy of the B x P result is made: the walker must have a finite log|psi|).

    Args:
        walker_batch_size: walkers per `lax.map` chunk (None: all at once with vmap).
    """
    log_psi = log_abs_psi_fn(wavefunction)

    def one(params: Params, electrons: jax.Array, keep: jax.Array) -> Params:
        return jax.grad(lambda p: jnp.where(keep, 1.0, 0.0) * log_psi(p, electrons))(params)

    def gradients(params: Params, walkers: jax.Array, keep: jax.Array | None = None) -> Params:
        keep = jnp.ones(walkers.shape[:1], bool) if keep is None else keep
        return over_walkers(lambda args: one(params, *args), (walkers, keep), walker_batch_size)

    return gradients


def energy_gradient_fn(
    wavefunction: Wavefunction, walker_batch_size: int | None = None
) -> Callable[[Params, jax.Array, jax.Array], Params]:
    """(params, walkers (B, n, 3), residuals (B,)) -> 2 mean_b r_b d log|psi(r_b)| / d params.

    One backward pass of sum_b r_b log|psi(r_b)| per chunk of walkers (a scan over full chunks,
    then the remainder), so the per-walker gradients (B x P) are never formed.
    """
    batch_log_psi = jax.vmap(log_abs_psi_fn(wavefunction), in_axes=(None, 0))

    def weighted_sum(params: Params, walkers: jax.Array, residuals: jax.Array) -> jax.Array:
        return jnp.sum(jax.lax.stop_gradient(residuals) * batch_log_psi(params, walkers))

    chunk_gradient = jax.grad(weighted_sum)

    def gradient(params: Params, walkers: jax.Array, residuals: jax.Array) -> Params:
        batch = walkers.shape[0]
        chunk = min(walker_batch_size or batch, batch)
        full = batch - batch % chunk
        total = chunk_gradient(params, walkers[full:], residuals[full:])

        def add_chunk(acc: Params, chunk_args: tuple[jax.Array, jax.Array]) -> tuple[Params, None]:
            return jax.tree_util.tree_map(jnp.add, acc, chunk_gradient(params, *chunk_args)), None

        chunks = (
            walkers[:full].reshape(full // chunk, chunk, *walkers.shape[1:]),
            residuals[:full].reshape(full // chunk, chunk),
        )
        total, _ = jax.lax.scan(add_chunk, total, chunks)
        return jax.tree_util.tree_map(lambda g: 2.0 * g / batch, total)

    return gradient


def layer_records(
    wavefunction: Wavefunction, walker_batch_size: int | None = None
) -> Callable[[Params, jax.Array, jax.Array], optim.LayerRecords]:
    """(params, walkers (B, n, 3), keep (B,) bool) -> `optim.LayerRecords` (for KFAC).

    Per walker ONE `jax.vjp` of log|psi| with respect to the taps of a `Tape` (zero arrays added
    to the dense layers' outputs, see `vmcjet.networks.layers`) and to the leaves outside the
    dense layers gives every layer's output gradients g and those leaves' gradients; the tape's
    recorded inputs are the vjp's auxiliary output. Walkers not kept get zero records (their
    cotangent is 0). Vmapped over walkers, or `lax.map` chunks of `walker_batch_size`.

    Raises:
        ValueError: when a dense layer of the params (`dense_layer_names`) is not recorded.
    """

    def output_shapes(params: Params, electrons: jax.Array) -> dict[str, jax.Array]:
        tape = Tape()
        wavefunction.apply(params, electrons, tape)
        return tape.outputs

    def one(params: Params, electrons: jax.Array, keep: jax.Array, shapes: dict) -> tuple:
        flat, treedef = jax.tree_util.tree_flatten(params)
        paths = list(named_leaves(params))
        owned = tuple(f"{name}." for name in shapes)
        other = {p: leaf for p, leaf in zip(paths, flat, strict=True) if not p.startswith(owned)}

        def log_psi(taps: dict, other_leaves: dict) -> tuple[jax.Array, dict]:
            leaves = [other_leaves.get(p, leaf) for p, leaf in zip(paths, flat, strict=True)]
            tape = Tape(taps)
            log_abs = wavefunction.apply(treedef.unflatten(leaves), electrons, tape)[1]
            return log_abs, tape.inputs

        taps = {name: jnp.zeros(s.shape, s.dtype) for name, s in shapes.items()}
        log_abs, pullback, inputs = jax.vjp(log_psi, taps, other, has_aux=True)
        weight = jnp.where(keep, 1.0, 0.0).astype(log_abs.dtype)
        tap_grads, other_grads = pullback(weight)
        inputs = {name: a * weight for name, a in inputs.items()}
        grads = {name: g.reshape(-1, g.shape[-1]) for name, g in tap_grads.items()}
        return inputs, grads, other_grads

    def records(params: Params, walkers: jax.Array, keep: jax.Array) -> optim.LayerRecords:
        shapes = jax.eval_shape(output_shapes, params, walkers[0])
        missing = sorted(set(dense_layer_names(params)) - set(shapes))
        if missing:
            raise ValueError(f"dense layers not recorded by the network's tape: {missing}")
        out = over_walkers(
            lambda args: one(params, *args, shapes), (walkers, keep), walker_batch_size
        )
        return optim.LayerRecords(*out)

    return records


def make_gradient_batch(
    wavefunction: Wavefunction, needs: frozenset[str], walker_batch_size: int | None = None
) -> Callable[[Params, jax.Array, jax.Array, jax.Array], optim.GradientBatch]:
    """`(params, walkers (B, n, 3), residuals (B,), finite (B,) bool) -> GradientBatch` with the
    fields in `needs`. Walkers left out (finite False) are evaluated at a finite walker's place
    and weighted by zero, so their non-finite values never reach the gradients; if no walker is
    finite the gradients are not finite either, and the train step skips the update."""
    per_walker = per_walker_gradients(wavefunction, walker_batch_size)
    gradient = energy_gradient_fn(wavefunction, walker_batch_size)
    records = layer_records(wavefunction, walker_batch_size)

    def batch(params, walkers, residuals, finite) -> optim.GradientBatch:
        stand_in = walkers[jnp.argmax(finite)]
        safe = jnp.where(finite[:, None, None], walkers, stand_in[None])
        fields = {}
        if optim.PER_WALKER_GRADS in needs:
            fields["per_walker_grads"] = per_walker(params, safe, finite)
        if optim.LAYERS in needs:
            fields["layers"] = records(params, safe, finite)
        if optim.GRADIENT in needs:
            fields["gradient"] = (
                optim.records_gradient(fields["layers"], residuals, params)
                if optim.LAYERS in needs
                else gradient(params, safe, residuals)
            )
        return optim.GradientBatch(residuals, **fields)

    return batch
