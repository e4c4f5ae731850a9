"""The energy gradient of VMC, local-energy clipping, and the (init, update) optimiser pair.

For psi_theta and walkers r_b ~ |psi|^2 (b = 1..B), with O_b = d log|psi(r_b)| / d theta, the
gradient of the energy E = <E_L> is estimated without bias by

    g = 2 mean_b [(E_L(r_b) - mean E_L) O_b].

Outlying local energies (near nodes and nuclei) make this noisy, so for the gradient only the local
energies are clipped to median +/- width * mean|E_L - median| first; the reported energy stays the
unclipped mean. The residuals r_b = E_clipped,b - mean_b E_clipped (hartree) are the input of both
optimisers.

Every optimiser here is an `Optimiser(init, update, needs)` triple in the optax style, but its
update takes a `GradientBatch` instead of a gradient: `update(batch, state, params=None) ->
(updates, state)`, and the updates are added to the parameters (`optax.apply_updates`). `needs`
names the fields of the batch the optimiser reads, so the train step computes only those: the
per-walker gradients O (B x P, what SPRING needs), the energy gradient alone (one backward pass,
what Adam needs), or per-layer records (KFAC).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from vmcjet.networks.layers import named_leaves

Array = jax.Array
PyTree = Any


# The fields of a GradientBatch beyond the residuals that an optimiser can ask for.
PER_WALKER_GRADS = "per_walker_grads"
GRADIENT = "gradient"
LAYERS = "layers"


class LayerRecords(NamedTuple):
    """Per-walker records of the dense layers (what KFAC reads), from one `jax.vjp` of log|psi|
    with a `vmcjet.networks.layers.Tape`; names are key paths in the params ("backbone.0.one").

    Attributes:
        inputs: {layer name: (B, rows, n_in (+1))} each dense layer's input rows a (a trailing 1
            for the bias; rows are electrons, pairs, ...), zero for walkers left out.
        output_grads: {layer name: (B, rows, n_out)} g = d log|psi| / d (layer output) per row,
            so d log|psi| / d [w; b] = sum_rows a g^T.
        other_grads: {leaf path: (B, *leaf shape)} per-walker d log|psi| / d leaf for every
            parameter leaf outside the dense layers (envelopes, Jastrow, LayerNorm).
    """

    inputs: dict[str, Array]
    output_grads: dict[str, Array]
    other_grads: dict[str, Array]


def split_layer_matrix(layer: str, matrix: Array, named: dict[str, Array]) -> dict[str, Array]:
    """{"<layer>.w": ..., "<layer>.b": ...} from a [w; b] matrix (n_in (+1), n_out), as the
    named leaves `named` (path -> leaf) have them."""
    rows = named[f"{layer}.w"].shape[0]
    pieces = {f"{layer}.w": matrix[:rows]}
    if f"{layer}.b" in named:
        pieces[f"{layer}.b"] = matrix[rows]
    return pieces


def records_gradient(records: LayerRecords, residuals: Array, params: PyTree) -> PyTree:
    """The energy gradient 2 mean_b r_b O_b from layer records (no second backward pass).

    A dense layer's d log|psi_b| / d [w; b] is sum_rows a g^T (`LayerRecords`), so its energy
    gradient is (2 / B) sum_{b, rows} r_b a g^T, one matrix product per layer; every other leaf's
    is (2 / B) sum_b r_b O_b of its recorded per-walker gradients.

    Args:
        records: `LayerRecords` of B walkers (walkers left out recorded as zero).
        residuals: r_b, shape (B,), hartree.
        params: the parameters (their paths and structure; values unused).

    Returns:
        The energy gradient, a pytree like `params`.
    """
    named = named_leaves(params)
    weights = 2.0 * residuals / residuals.shape[0]
    pieces = {}
    for layer, inputs in records.inputs.items():
        weighted = inputs * weights[:, None, None].astype(inputs.dtype)
        matrix = jnp.einsum("bri,bro->io", weighted, records.output_grads[layer])
        pieces.update(split_layer_matrix(layer, matrix, named))
    pieces.update(energy_gradient(records.other_grads, residuals))
    treedef = jax.tree_util.tree_structure(params)
    return jax.tree_util.tree_unflatten(
        treedef, [pieces[path].astype(leaf.dtype) for path, leaf in named.items()]
    )


class GradientBatch(NamedTuple):
    """What a train step hands its optimiser; the fields it does not `need` may be None.

    Attributes:
        residuals: centred clipped local energies r_b, shape (B,), hartree (0 for walkers left
            out of the step).
        per_walker_grads: O_b = d log|psi(r_b)| / d theta, the parameter pytree with a leading
            walker axis B on every leaf.
        gradient: the energy gradient 2 mean_b r_b O_b, a parameter pytree.
        layers: `LayerRecords` of the network's dense layers (inputs, output gradients) and
            the per-walker gradients of its other leaves, for KFAC.
    """

    residuals: Array
    per_walker_grads: PyTree = None
    gradient: PyTree = None
    layers: Any = None


def batch_gradient(batch: GradientBatch) -> PyTree:
    """The energy gradient of `batch`: its `gradient`, else 2 mean_b r_b O_b from its O."""
    if batch.gradient is not None:
        return batch.gradient
    return energy_gradient(batch.per_walker_grads, batch.residuals)


class Optimiser(NamedTuple):
    """A pure optimiser of the VMC energy.

    Attributes:
        init: params -> state.
        update: (batch: GradientBatch, state, params=None) -> (updates, state).
        needs: the `GradientBatch` fields update reads (PER_WALKER_GRADS, GRADIENT, LAYERS).
    """

    init: Callable[[PyTree], PyTree]
    update: Callable[..., tuple[PyTree, PyTree]]
    needs: frozenset[str] = frozenset({PER_WALKER_GRADS})


def clip_local_energies(local_energies: Array, width: float) -> Array:
    """Clips local energies (B,) to median +/- width * mean absolute deviation from the median.

    Args:
        local_energies: shape (B,), hartree, finite.
        width: number of mean absolute deviations kept on each side (e.g. 5).

    Returns:
        Clipped local energies, shape (B,), hartree. Use for the gradient only.
    """
    median = jnp.median(local_energies)
    deviation = jnp.mean(jnp.abs(local_energies - median))
    return jnp.clip(local_energies, median - width * deviation, median + width * deviation)


def energy_gradient_residuals(clipped_local_energies: Array) -> Array:
    """Centred local energies r_b = E_b - mean(E), shape (B,) -> (B,), hartree."""
    return clipped_local_energies - jnp.mean(clipped_local_energies)


def energy_gradient(per_walker_grads: PyTree, residuals: Array) -> PyTree:
    """g = 2 mean_b r_b O_b, the energy gradient (a parameter pytree, hartree per parameter unit).

    Args:
        per_walker_grads: d log|psi(r_b)| / d theta, parameter pytree with leading axis B.
        residuals: centred (clipped) local energies, shape (B,), hartree.
    """

    def leaf_gradient(leaf: Array) -> Array:
        return 2.0 * jnp.tensordot(residuals.astype(leaf.dtype), leaf, axes=1) / residuals.shape[0]

    return jax.tree_util.tree_map(leaf_gradient, per_walker_grads)


NO_DROP: tuple[int, float] = (0, 1.0)


def decaying_learning_rate(
    learning_rate: float, decay: float, drop: tuple[int, float] = NO_DROP
) -> Callable[[Array], Array]:
    """The schedule t -> learning_rate / (1 + decay * t), times drop[1] from step drop[0] on.

    Args:
        learning_rate: the rate at step 0.
        decay: decay per step.
        drop: (step, factor): from this step on (t >= step) the rate is multiplied by factor;
            step 0 means never.

    Returns:
        schedule(t), t the number of steps done; integer steps give float32, float steps keep
        their dtype.
    """
    drop_step, drop_factor = drop

    def schedule(step: Array) -> Array:
        step = jnp.asarray(step)
        if not jnp.issubdtype(step.dtype, jnp.floating):
            step = step.astype(jnp.float32)
        rate = learning_rate / (1.0 + decay * step)
        if drop_step > 0:
            rate = jnp.where(step >= drop_step, rate * drop_factor, rate)
        return rate

    return schedule


def standard_promotion(
    transform: optax.GradientTransformation,
) -> optax.GradientTransformation:
    """`transform` with its update traced under JAX's standard dtype promotion.

    optax's Adam bias correction computes python_float ** int32_count, which strict dtype
    promotion (the setting of our tests) rejects; the standard rules give the intended result.
    """

    def update(updates, state, params=None):
        with jax.numpy_dtype_promotion("standard"):
            return transform.update(updates, state, params)

    return optax.GradientTransformation(transform.init, update)


def adam(
    learning_rate: float,
    *,
    decay: float = 0.0,
    drop: tuple[int, float] = NO_DROP,
    **adam_kwargs: Any,
) -> Optimiser:
    """Adam (optax) on the energy gradient (`batch_gradient`; needs only the gradient).

    Args:
        learning_rate: initial learning rate; the rate at step t is lr / (1 + decay * t).
        decay: learning-rate decay per step.
        drop: (step, factor) of a late drop of the rate (`decaying_learning_rate`).
        **adam_kwargs: passed to `optax.adam` (b1, b2, eps).

    Returns:
        The `Optimiser`.
    """
    inner = standard_promotion(
        optax.adam(decaying_learning_rate(learning_rate, decay, drop), **adam_kwargs)
    )

    def update(batch: GradientBatch, state, params=None):
        return inner.update(batch_gradient(batch), state, params)

    return Optimiser(inner.init, update, frozenset({GRADIENT}))
