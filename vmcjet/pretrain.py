"""Pretraining: fit the network's orbitals to Hartree-Fock orbitals before the VMC optimisation.

The network's orbital matrices M_k(r) (K, n, n), [k, i, j] = phi_kj(r_i), are fitted by least
squares to the Hartree-Fock matrix, block-diagonal by spin (alpha electrons first):

    T(r) = [[A(r), 0], [0, B(r)]],   A (n_alpha, n_alpha), B (n_beta, n_beta) from pyscf,
    loss = mean over walkers, determinants k and entries (i, j) of (M_k(r) - T(r))^2,

minimised with Adam (optax). The walkers are sampled by Metropolis moves from the equal-weight
mixture of the two densities,

    p(r) = (|psi_HF(r)|^2 + |psi_net(r)|^2) / 2,  psi_HF = det A det B,

so the fit covers where Hartree-Fock puts the electrons and where the network currently does.

Length: `pretrain` yields up to `config.iterations` steps; the caller stops early when
`should_stop` says the loss has stopped improving. With W = `config.window`, P = `config.patience`
and m_j the median orbital loss of the j-th block of W iterations (the median, because single
iterations spike by 10x when a walker strays), it stops after block j when

    min(m_{j-P+1}, ..., m_j) > (1 - tolerance) min(m_1, ..., m_{j-P}),

i.e. none of the last P windows beat the best window before them by the fraction `tolerance`
(0: never stop). A loss that keeps falling by more than that fraction every P windows never stops
early; a loss on a plateau stops P windows after the plateau began.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vmcjet import mcmc
from vmcjet.config import PretrainConfig
from vmcjet.hartree_fock import HartreeFock, hf_orbitals
from vmcjet.linalg import slogdet
from vmcjet.networks import Wavefunction
from vmcjet.optim import standard_promotion

Array = jax.Array
Params = Any
HfOrbitals = Callable[[Array], tuple[Array, Array]]


class PretrainState(NamedTuple):
    """State of pretraining.

    Attributes:
        params: network parameters (pytree).
        opt_state: Adam state (pytree).
        sampler: MCMC state on the mixture density (walkers (B, n, 3) bohr).
    """

    params: Params
    opt_state: Any
    sampler: mcmc.McmcState


def block_diagonal_target(alpha: Array, beta: Array) -> Array:
    """The Hartree-Fock orbital matrix with zero off-diagonal spin blocks.

    Args:
        alpha: shape (..., n_alpha, n_alpha).
        beta: shape (..., n_beta, n_beta).

    Returns:
        Shape (..., n, n), n = n_alpha + n_beta.
    """
    n_alpha, n_beta = alpha.shape[-1], beta.shape[-1]
    batch = alpha.shape[:-2]
    top = jnp.concatenate([alpha, jnp.zeros((*batch, n_alpha, n_beta), alpha.dtype)], axis=-1)
    bottom = jnp.concatenate([jnp.zeros((*batch, n_beta, n_alpha), beta.dtype), beta], axis=-1)
    return jnp.concatenate([top, bottom], axis=-2)


def mixture_log_abs_psi(
    log_abs_psi_fn: Callable[[Params, Array], Array], hf_orbitals_fn: HfOrbitals
) -> Callable[[Params, Array], Array]:
    """log sqrt((|psi_HF|^2 + |psi_net|^2) / 2) as a function (params, electrons (n, 3)) -> scalar.

    Args:
        log_abs_psi_fn: the network, (params, electrons) -> log|psi_net|.
        hf_orbitals_fn: electrons (n, 3) bohr -> (alpha (n_alpha, n_alpha), beta (n_beta, n_beta)).
    """

    def log_abs_psi(params: Params, electrons: Array) -> Array:
        alpha, beta = hf_orbitals_fn(electrons)
        log_hf = slogdet(alpha)[1] + slogdet(beta)[1]
        log_net = log_abs_psi_fn(params, electrons)
        return 0.5 * (jnp.logaddexp(2.0 * log_hf, 2.0 * log_net) - np.log(2.0))

    return log_abs_psi


def orbital_loss(
    orbitals_fn: Callable[[Params, Array], Array], params: Params, walkers: Array, targets: Array
) -> Array:
    """Mean squared difference of network orbitals (B, K, n, n) and targets (B, n, n)."""
    orbitals = jax.vmap(orbitals_fn, in_axes=(None, 0))(params, walkers)
    return jnp.mean((orbitals - targets[:, None]) ** 2)


def make_pretrain_step(
    orbitals_fn: Callable[[Params, Array], Array],
    log_abs_psi_fn: Callable[[Params, Array], Array],
    hf_orbitals_fn: HfOrbitals,
    optimizer: optax.GradientTransformation,
    *,
    moves: int,
) -> Callable[..., tuple[PretrainState, Array]]:
    """One pretraining step: `moves` Metropolis moves on the mixture, then one optimizer step.

    Args:
        orbitals_fn: (params, electrons (n, 3) bohr) -> (K, n, n) network orbital matrices.
        log_abs_psi_fn: (params, electrons (n, 3) bohr) -> log|psi_net|.
        hf_orbitals_fn: electrons (..., n, 3) bohr -> (alpha (..., n_alpha, n_alpha),
            beta (..., n_beta, n_beta)), e.g. `functools.partial(hf_orbitals, hf)`.
        optimizer: an optax transformation (Adam).
        moves: Metropolis moves per step.

    Returns:
        `step(state, *, key) -> (state, loss)`, pure and jittable; loss is the orbital loss of
        the parameters before the update on the new walkers.
    """
    sample = mcmc.make_mcmc_step(mixture_log_abs_psi(log_abs_psi_fn, hf_orbitals_fn), moves=moves)
    loss_and_grad = jax.value_and_grad(functools.partial(orbital_loss, orbitals_fn))

    def step(state: PretrainState, *, key: Array) -> tuple[PretrainState, Array]:
        sampler, _ = sample(state.params, state.sampler, key=key)
        targets = block_diagonal_target(*hf_orbitals_fn(sampler.walkers))
        loss, grads = loss_and_grad(state.params, sampler.walkers, targets)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return PretrainState(optax.apply_updates(state.params, updates), opt_state, sampler), loss

    return step


def pretrain(
    wavefunction: Wavefunction,
    hf: HartreeFock,
    params: Params,
    walkers: Array,
    *,
    key: Array,
    config: PretrainConfig,
    width: float = 0.2,
) -> Iterator[tuple[int, Params, Array, Array]]:
    """Runs up to `config.iterations` pretraining steps, yielding after each one.

    The generator never stops early by itself: the caller decides (`should_stop`) and stops
    iterating.

    Args:
        wavefunction: the network (its `apply` and `orbitals`).
        hf: the Hartree-Fock reference (`vmcjet.hartree_fock.run_hartree_fock`).
        params: initial network parameters.
        walkers: initial walkers, shape (B, n, 3), bohr (may be sharded over devices).
        key: PRNG key; iteration i uses fold_in(key, i).
        config: iterations, Adam learning rate, moves per iteration.
        width: initial proposal width of the mixture sampler, bohr.

    Yields:
        (iteration, params, walkers (B, n, 3), loss) after each step.
    """
    optimizer = standard_promotion(optax.adam(config.lr))
    hf_fn = functools.partial(hf_orbitals, hf)
    log_psi = lambda p, x: wavefunction.apply(p, x)[1]
    step = jax.jit(
        make_pretrain_step(wavefunction.orbitals, log_psi, hf_fn, optimizer, moves=config.moves)
    )
    sampler = mcmc.init_state(mixture_log_abs_psi(log_psi, hf_fn), params, walkers, width)
    state = PretrainState(params, optimizer.init(params), sampler)
    for iteration in range(config.iterations):
        state, loss = step(state, key=jax.random.fold_in(key, iteration))
        yield iteration, state.params, state.sampler.walkers, loss


def should_stop(losses: Sequence[Any], *, window: int, tolerance: float, patience: int) -> bool:
    """Whether pretraining has stopped improving (the rule in the module docstring).

    Decides only at the end of a window (len(losses) a multiple of `window`, at least
    `patience` + 1 windows), so the losses (scalars, host or device) are read back once per window.

    Args:
        losses: the orbital loss of every iteration so far, in order.
        window: iterations per window W, > 0.
        tolerance: smallest relative improvement of the best window median that continues
            (0: never stop).
        patience: windows P without such an improvement before stopping, > 0.

    Returns:
        True if none of the last P window medians is below (1 - tolerance) x the best before them.
    """
    count = len(losses)
    if tolerance <= 0.0 or count % window or count < (patience + 1) * window:
        return False
    values = np.asarray(jax.device_get(list(losses)), dtype=np.float64)
    medians = np.median(values.reshape(count // window, window), axis=1)
    return bool(medians[-patience:].min() > (1.0 - tolerance) * medians[:-patience].min())
