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

Step and norm constraint (the Euclidean version of the KFAC/FermiNet constraint, which uses
lr^2 phi^T F phi): with lr_t = lr / (1 + decay t), the update is -c lr_t phi where
c = min(1, sqrt(max_norm / (lr_t^2 |phi|^2))), so that |update|^2 = c^2 lr_t^2 |phi|^2 <= max_norm.
The state keeps the unconstrained phi as phi_prev for the next step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jax.scipy.linalg import cho_factor, cho_solve

from vmcjet.errors import InputError
from vmcjet.optim.gradient import Optimiser, PyTree, decaying_learning_rate

Array = jax.Array


class SpringState(NamedTuple):
    """State of SPRING.

    Attributes:
        direction: the previous (unconstrained) direction phi_prev, flattened, shape (P,).
        step: number of updates done, int32 scalar.
    """

    direction: Array
    step: Array


def flatten_per_walker(per_walker_grads: PyTree) -> tuple[Array, Callable[[Array], PyTree]]:
    """Per-walker gradients as a matrix O (B, P) and the function unflattening a (P,) vector.

    Columns follow `jax.flatten_util.ravel_pytree` of one walker's gradient.
    """
    leaves = jax.tree_util.tree_leaves(per_walker_grads)
    batch = leaves[0].shape[0]
    matrix = jnp.concatenate([leaf.reshape(batch, -1) for leaf in leaves], axis=1)
    one_walker = jax.tree_util.tree_map(
        lambda leaf: jnp.zeros(leaf.shape[1:], leaf.dtype), per_walker_grads
    )
    _, unravel = ravel_pytree(one_walker)
    return matrix, unravel


def spring_direction(
    grads: Array, residuals: Array, previous: Array, *, damping: float, momentum: float
) -> Array:
    """The SPRING direction phi (see the module docstring).

    Args:
        grads: per-walker gradients of log|psi|, O, shape (B, P).
        residuals: local energies minus their mean (clipped), shape (B,), hartree.
        previous: previous direction phi_prev, shape (P,).
        damping: Tikhonov damping lambda > 0.
        momentum: mu in [0, 1).

    Returns:
        phi, shape (P,).
    """
    batch = grads.shape[0]
    scale = jnp.sqrt(jnp.asarray(batch, grads.dtype))
    centred = (grads - jnp.mean(grads, axis=0, keepdims=True)) / scale
    eps = (residuals - jnp.mean(residuals)).astype(grads.dtype) / scale
    decayed = momentum * previous
    ones = jnp.full((batch, batch), 1.0 / batch, grads.dtype)
    kernel = centred @ centred.T + ones + damping * jnp.eye(batch, dtype=grads.dtype)
    zeta = cho_solve(cho_factor(kernel), eps - centred @ decayed)
    return centred.T @ zeta + decayed


def constrained_step(direction: Array, learning_rate: Array, max_norm: float) -> Array:
    """-c lr phi with c = min(1, sqrt(max_norm / (lr^2 |phi|^2))), so |step|^2 <= max_norm."""
    squared = learning_rate**2 * jnp.sum(direction**2)
    scale = jnp.minimum(1.0, jnp.sqrt(max_norm / jnp.maximum(squared, jnp.finfo(squared).tiny)))
    return -scale * learning_rate * direction


def spring(
    learning_rate: float,
    *,
    decay: float = 0.0,
    damping: float = 1e-3,
    momentum: float = 0.99,
    max_norm: float = 1e-3,
) -> Optimiser:
    """SPRING as a pure (init, update) pair.

    Args:
        learning_rate: initial learning rate lr; lr_t = lr / (1 + decay t).
        decay: learning-rate decay per step.
        damping: Tikhonov damping lambda of the sample-space kernel (> 0).
        momentum: mu, the weight of the previous direction, in [0, 1).
        max_norm: bound on the squared Euclidean norm of each parameter update (> 0).

    Returns:
        `Optimiser(init, update)`: `init(params) -> SpringState`;
        `update(per_walker_grads, residuals (B,), state, params=None) -> (updates, state)` with
        per_walker_grads the parameter pytree with a leading walker axis (gradients of log|psi|)
        and residuals the centred clipped local energies (hartree). Add updates to the params.

    Raises:
        InputError: for damping <= 0, momentum outside [0, 1) or max_norm <= 0.
    """
    if damping <= 0 or not 0 <= momentum < 1 or max_norm <= 0:
        raise InputError(
            f"SPRING needs damping > 0, 0 <= momentum < 1 and max_norm > 0; got damping={damping}, "
            f"momentum={momentum}, max_norm={max_norm}"
        )
    schedule = decaying_learning_rate(learning_rate, decay)

    def init(params: PyTree) -> SpringState:
        flat, _ = ravel_pytree(params)
        return SpringState(jnp.zeros_like(flat), jnp.zeros((), jnp.int32))

    def update(per_walker_grads, residuals, state, params=None):
        del params
        grads, unravel = flatten_per_walker(per_walker_grads)
        direction = spring_direction(
            grads, residuals, state.direction, damping=damping, momentum=momentum
        )
        lr = schedule(state.step.astype(grads.dtype))
        step = constrained_step(direction, lr, max_norm)
        return unravel(step), SpringState(direction, state.step + 1)

    return Optimiser(init, update)
