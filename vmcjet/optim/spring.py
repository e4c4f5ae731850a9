"""SPRING: natural gradient in sample space with momentum (Goldshmidt, Abrahamsen, Ding and Lin,
"Convergence of variational Monte Carlo simulation and scale-invariant pre-training",
J. Comput. Phys. 513, 113351 (2024); arXiv:2401.10190).

With B walkers and P parameters, let O (B, P) hold the per-walker gradients of log|psi|, and

    O_bar = (O - mean_b O) / sqrt(B)          (centred rows, B x P),
    eps   = (E_L - mean E_L) / sqrt(B)         (centred, clipped local energies, (B,)).

Stochastic reconfiguration asks for a direction phi with O_bar phi ~ eps. SPRING regularises the
step towards the previous direction phi_prev, decayed by the momentum mu:

    phi = argmin_phi |O_bar phi - eps|^2 + lambda |phi - mu phi_prev|^2
        = mu phi_prev + O_bar^T (O_bar O_bar^T + lambda I)^-1 (eps - mu O_bar phi_prev),

the second line by the push-through identity, so only a B x B system is solved (Cholesky). With
mu = 0 this is the damped minimum-norm solution of O_bar phi = eps.

Constant row: the rows of O_bar sum to zero, so the all-ones vector 1 is in the null space of
O_bar O_bar^T. Like the paper's implementation, the kernel solved is
O_bar O_bar^T + (1/B) 1 1^T + lambda I: the right-hand side is centred, hence orthogonal to 1, and
on that subspace the added term vanishes, so the solution is unchanged, while the matrix stays
well conditioned even for tiny lambda (1 is an eigenvector with eigenvalue 1 + lambda).

Per-leaf kernel: O is never concatenated into one B x P array. With O_l (B, P_l) the rows of
parameter leaf l, taken in column blocks of at most BLOCK_ELEMENTS entries by one loop over
all leaves (consecutive narrow leaves joined into one block), O_bar O_bar^T = sum_l O_bar_l
O_bar_l^T and O_bar^T zeta is the list of O_bar_l^T zeta = (O_l^T zeta - mean_l sum(zeta)) /
sqrt(B), so beyond the per-walker gradients themselves the update holds one centred block, three
B x B matrices (the kernel, one block's product, the Cholesky factor) and (P,) vectors.

Precision: the kernel and its Cholesky solve are in float64 by default (`kernel_dtype`), also in
float32 runs: each centred block is converted to float64 and its product O_bar_l O_bar_l^T
accumulated in float64, inside a `jax.enable_x64` scope, so the network and O stay float32. The
float32 product is the weak link, not the solve: its rounding error grows with the length P_l of
the sum, and a float64 sum and solve of float32 products gains only 1.5x in accuracy where a float64
product gains 100x or more (tests/test_spring.py; measured on LiH, docs/benchmarks.md "Whole step").
The float64 kernel costs about twice the float32 one; `kernel_dtype = "float32"` is the fast option.
The kernel's condition number is about its largest eigenvalue over the damping; in float32,
Cholesky's backward error (about B eps_32 |K|, 6e-5 |K| at B = 1024) can exceed the damping itself
(docs/benchmarks.md, "whole step"). The products O_bar^T zeta are done in O's dtype.

Step and norm constraint (the Euclidean version of the KFAC/FermiNet constraint, which uses
lr^2 phi^T F phi): with lr_t = lr / (1 + decay t), the update is -c lr_t phi where
c = min(1, sqrt(max_norm / (lr_t^2 |phi|^2))), so that |update|^2 <= max_norm. The state keeps the
unconstrained phi as phi_prev for the next step. A bound that follows the schedule (applied to
lr_0 phi, so |update|^2 <= max_norm (lr_t / lr_0)^2) was tried and measured slower on LiH: with
|phi| ~ 1.4 it clipped every step to about 0.23 of its length, where this bound is inactive after
a few hundred steps at the default decay (docs/benchmarks.md, "Norm bound").
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.scipy.linalg import cho_factor, cho_solve

from vmcjet.errors import InputError
from vmcjet.optim.gradient import (
    NO_DROP,
    PER_WALKER_GRADS,
    GradientBatch,
    Optimiser,
    PyTree,
    decaying_learning_rate,
)

Array = jax.Array
KERNEL_DTYPES = ("float64", "float32")
# Largest block of O (entries) centred at a time: 1 Mi entries, 8 MiB in float64.
BLOCK_ELEMENTS = 1 << 20


def update_temporary_bytes(batch: int) -> int:
    """An upper bound of the XLA temporaries of SPRING's update for `batch` walkers (bytes): three
    float64 B x B matrices (the kernel, one block's product, the Cholesky factor) and two float64
    blocks (tests/test_spring.py compiles it and checks this)."""
    return 8 * (3 * batch**2 + 2 * BLOCK_ELEMENTS)


class SpringState(NamedTuple):
    """State of SPRING.

    Attributes:
        direction: the previous (unconstrained) direction phi_prev, flattened in
            `ravel_pytree` order of the parameters, shape (P,).
        step: number of updates done, int32 scalar.
    """

    direction: Array
    step: Array


def leaf_rows(per_walker_grads: PyTree) -> list[Array]:
    """The per-walker gradients as one (B, P_l) matrix per parameter leaf, in `ravel_pytree`
    order (their concatenation along axis 1 is O, never formed)."""
    leaves = jax.tree_util.tree_leaves(per_walker_grads)
    return [leaf.reshape(leaf.shape[0], -1) for leaf in leaves]


def _add_block(kernel, target, block, mean, phi_prev, scale, dtype):
    """kernel + O_bar_b O_bar_b^T and target - O_bar_b phi_prev for one column block (B, w)."""
    centred = ((block - mean[None]) / scale).astype(dtype)
    return kernel + centred @ centred.T, target - centred @ phi_prev.astype(dtype)


def _groups(widths: list[int], max_width: int) -> list[list[int]]:
    """Leaf indices in groups that are added to the kernel together: a leaf of at least
    `max_width` columns alone, runs of consecutive narrower leaves joined while their total width
    stays within `max_width` (so a joined group is at most one block)."""
    groups: list[list[int]] = []
    for index, width in enumerate(widths):
        last = groups[-1] if groups else None
        if (
            width < max_width
            and last is not None
            and widths[last[-1]] < max_width
            and sum(widths[i] for i in last) + width <= max_width
        ):
            last.append(index)
        else:
            groups.append([index])
    return groups


def _accumulate(kernel, target, rows, means, decayed, *, scale, dtype, max_block_elements):
    """kernel + O_bar O_bar^T and target - O_bar phi_prev, one column block at a time.

    The blocks: each leaf group of `_groups` (narrow leaves joined) cut into blocks of at most
    `max_block_elements` // B columns. ONE loop runs over all blocks and `lax.switch`es to the
    code that cuts block i out of its leaves, so XLA holds one kernel and one block product at
    a time. Separate code per leaf let XLA compute the independent products of all narrow
    leaves first and hold their B x B results together (docs/benchmarks.md, "SPRING memory");
    joining narrow leaves also saves a kernel-sized write per leaf.
    """
    max_width = max(1, max_block_elements // rows[0].shape[0])

    def add(carry, pieces):
        return _add_block(*carry, *pieces, scale, dtype)

    def joined_blocks(group):
        def block(carry, start):
            del start
            pieces = [(rows[i], means[i], decayed[i]) for i in group]
            return add(carry, [jnp.concatenate(p, axis=-1) for p in zip(*pieces, strict=True)])

        return [(block, 0)]

    def leaf_blocks(index):
        columns = (rows[index], means[index], decayed[index])
        full = rows[index].shape[1] // max_width

        def full_block(carry, start):
            return add(
                carry, [jax.lax.dynamic_slice_in_dim(c, start, max_width, axis=-1) for c in columns]
            )

        def rest_block(carry, start):
            del start
            return add(carry, [c[..., full * max_width :] for c in columns])

        rest = [(rest_block, 0)] if full * max_width < rows[index].shape[1] else []
        return [(full_block, k * max_width) for k in range(full)] + rest

    blocks = [
        block
        for group in _groups([leaf.shape[1] for leaf in rows], max_width)
        for block in (joined_blocks(group) if len(group) > 1 else leaf_blocks(group[0]))
    ]
    branches = list(dict.fromkeys(code for code, _ in blocks))
    branch_of_block = jnp.asarray([branches.index(code) for code, _ in blocks], jnp.int32)
    starts = jnp.asarray([start for _, start in blocks], jnp.int32)

    def body(i, carry):
        return jax.lax.switch(branch_of_block[i], branches, carry, starts[i])

    return jax.lax.fori_loop(0, len(blocks), body, (kernel, target))


def _split(vector: Array, rows: list[Array]) -> list[Array]:
    """A (P,) vector cut into the (P_l,) pieces that match `rows`."""
    offsets = np.cumsum([r.shape[1] for r in rows])[:-1]
    return jnp.split(vector, offsets)


def spring_direction(
    rows: list[Array],
    residuals: Array,
    previous: Array,
    *,
    damping: float,
    momentum: float,
    kernel_dtype: str = "float64",
    max_block_elements: int = BLOCK_ELEMENTS,
) -> Array:
    """The SPRING direction phi (see the module docstring), block by block.

    Args:
        rows: per-walker gradients of log|psi|, one (B, P_l) matrix per leaf (`leaf_rows`).
        residuals: local energies minus their mean (clipped), shape (B,), hartree.
        previous: previous direction phi_prev, shape (P,) with P = sum_l P_l.
        damping: Tikhonov damping lambda > 0.
        momentum: mu in [0, 1).
        kernel_dtype: dtype of the B x B kernel (its products) and its solve, "float64" or
            "float32".
        max_block_elements: entries of O centred (and converted) at a time; leaves are
            processed in column blocks of at most this size (at least one column).

    Returns:
        phi, shape (P,), in the rows' dtype.
    """
    dtype = rows[0].dtype
    batch = rows[0].shape[0]
    scale = float(np.sqrt(batch))
    decayed = [momentum * p for p in _split(previous.astype(dtype), rows)]
    means = [jnp.mean(leaf, axis=0) for leaf in rows]
    wide = jnp.float64 in (jnp.dtype(dtype), jnp.dtype(kernel_dtype))
    solve_dtype = jnp.dtype(jnp.float64 if wide else jnp.float32)
    x64 = jax.enable_x64(True) if wide else contextlib.nullcontext()
    with x64:
        kernel = jnp.full((batch, batch), 1.0 / batch, solve_dtype)
        kernel = kernel + damping * jnp.eye(batch, dtype=solve_dtype)
        target = (residuals - jnp.mean(residuals)).astype(solve_dtype) / scale
        kernel, target = _accumulate(
            kernel,
            target,
            rows,
            means,
            decayed,
            scale=scale,
            dtype=solve_dtype,
            max_block_elements=max_block_elements,
        )
        zeta = cho_solve(cho_factor(kernel), target).astype(dtype)
    # O_bar_l^T zeta = (O_l^T zeta - mean_l sum(zeta)) / sqrt(B): no second centred copy.
    total = jnp.sum(zeta)
    zeta_and_mean = jnp.stack([zeta, jnp.full_like(zeta, 1 / batch)])
    pieces = []
    for leaf, p in zip(rows, decayed, strict=True):
        product, mean = _transposed_products(zeta_and_mean, leaf)
        pieces.append((product - mean * total) / scale + p)
    return jnp.concatenate(pieces)


def _transposed_products(vectors: Array, leaf: Array) -> Array:
    """vectors @ leaf for (k, B) vectors with k >= 2 and a (B, P_l) leaf: (k, P_l).

    Two or more rows on purpose: XLA's CPU backend fuses a single (B,) @ (B, P_l) product with
    the operations that produce its operands (a layout copy, the sum of the pieces of a gradient)
    into a scalar loop that runs down the columns of `leaf`, 9-13x slower than a matrix product
    (128 x 14336 float32: 2.3-3.2 ms against 0.25 ms; docs/benchmarks.md, "Whole step"). A
    (k, B) @ (B, P_l) product stays a library matrix product.
    """
    return vectors @ leaf


def constrained_step(direction: Array, learning_rate: Array, max_norm: float) -> Array:
    """-c lr phi with c = min(1, sqrt(max_norm / (lr^2 |phi|^2))), so |step|^2 <= max_norm."""
    squared = learning_rate**2 * jnp.sum(direction**2)
    scale = jnp.minimum(1.0, jnp.sqrt(max_norm / jnp.maximum(squared, jnp.finfo(squared).tiny)))
    return -scale * learning_rate * direction


def spring(
    learning_rate: float,
    *,
    decay: float = 0.0,
    drop: tuple[int, float] = NO_DROP,
    damping: float = 1e-3,
    momentum: float = 0.99,
    max_norm: float = 1e-3,
    kernel_dtype: str = "float64",
) -> Optimiser:
    """SPRING as a pure `Optimiser` (it needs the per-walker gradients).

    Args:
        learning_rate: initial learning rate lr; lr_t = lr / (1 + decay t).
        decay: learning-rate decay per step.
        drop: (step, factor) of a late drop of the rate (`decaying_learning_rate`).
        damping: Tikhonov damping lambda of the sample-space kernel (> 0).
        momentum: mu, the weight of the previous direction, in [0, 1).
        max_norm: bound on the squared Euclidean norm of each parameter update (> 0).
        kernel_dtype: dtype of the B x B kernel and its Cholesky solve ("float64", "float32").

    Returns:
        `Optimiser(init, update, needs)`: `init(params) -> SpringState`;
        `update(batch, state, params=None) -> (updates, state)` reads `batch.per_walker_grads`
        (the parameter pytree with a leading walker axis: gradients of log|psi|) and
        `batch.residuals` (B,), hartree. Add updates to the params.

    Raises:
        InputError: for damping <= 0, momentum outside [0, 1), max_norm <= 0 or an unknown
            kernel dtype.
    """
    if damping <= 0 or not 0 <= momentum < 1 or max_norm <= 0:
        raise InputError(
            f"SPRING needs damping > 0, 0 <= momentum < 1 and max_norm > 0; got damping={damping}, "
            f"momentum={momentum}, max_norm={max_norm}"
        )
    if kernel_dtype not in KERNEL_DTYPES:
        raise InputError(
            f"unknown SPRING kernel dtype '{kernel_dtype}'; use one of {', '.join(KERNEL_DTYPES)}"
        )
    schedule = decaying_learning_rate(learning_rate, decay, drop)

    def init(params: PyTree) -> SpringState:
        flat, _ = ravel_pytree(params)
        return SpringState(jnp.zeros_like(flat), jnp.zeros((), jnp.int32))

    def update(batch: GradientBatch, state: SpringState, params=None):
        del params
        rows = leaf_rows(batch.per_walker_grads)
        direction = spring_direction(
            rows,
            batch.residuals,
            state.direction,
            damping=damping,
            momentum=momentum,
            kernel_dtype=kernel_dtype,
        )
        lr = schedule(state.step.astype(direction.dtype))
        step = constrained_step(direction, lr, max_norm)
        one_walker = jax.tree_util.tree_map(lambda g: g[0], batch.per_walker_grads)
        _, unravel = ravel_pytree(one_walker)
        return unravel(step), SpringState(direction, state.step + 1)

    return Optimiser(init, update, frozenset({PER_WALKER_GRADS}))
