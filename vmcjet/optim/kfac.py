"""KFAC: Kronecker-factored natural gradient of the VMC energy (Martens and Grosse, ICML 2015).

Fisher. With O_b = d log|psi(r_b)| / d theta for walkers r_b ~ |psi|^2 (b = 1..B), the curvature
is the centred Fisher SPRING uses, F = mean_b O_b O_b^T - mean(O) mean(O)^T (the covariance of
the O_b; `centred=False` drops the mean term). KFAC approximates it block-diagonally: a Kronecker
block per dense layer, a diagonal for every other parameter leaf.

Dense layers. A layer y_r = W^T a_r (W = [w; b] of shape (n_in + 1, n_out), a_r = [x_r, 1]) is
shared over rows r = 1..R of one walker (electrons, electron pairs), so per walker
dlog|psi|/dW = sum_r a_r g_r^T with g_r = d log|psi| / d y_r; the network records a_r and g_r
(`vmcjet.networks.layers.Tape`, `LayerRecords`). In the row-major layout vec(W)[i n_out + j] =
W[i, j] a rank-one gradient a g^T has vec = a (x) g, so for ONE walker with ONE row the Fisher
block is exactly (a a^T) (x) (g g^T).

Weight sharing (Eschenhagen et al., NeurIPS 2023), `sharing`:

    expand (default):  A = mean_{b,r} a_br a_br^T,
                       G = (1/B) sum_{b,r} (g_br - mean_b g_br)(g_br - mean_b g_br)^T;
    reduce:            a_b = mean_r a_br, g_b = sum_r g_br,
                       A = mean_b a_b a_b^T,   G = mean_b (g_b - mean g)(g_b - mean g)^T;

and F_W ~ A (x) G. Both are exact for one walker with one row. Expand treats every row (electron,
pair) as a sample and drops the cross-row terms of the per-walker Fisher sum_{r,r'}; reduce is
exact whenever the input is the same for every row (biases, the spin means of FermiNet's
one-electron layer) and costs B instead of B R outer products, but its A only sees the walker
means of the inputs: FermiNet's rows are very different electrons (core, valence), and directions
in which the inputs differ between electrons but whose walker mean hardly varies get almost no
curvature from reduce, hence large, noisy steps. Measured on LiH with the same settings, expand
trained better than reduce (docs/results.md, "KFAC", runs X and R), so it is the default.

Centring: subtracting mean(O) mean(O)^T is not Kronecker-factored; KFAC centres the output side
only (per row over the walkers for expand, the row sums for reduce), which approximates
O_b - mean(O) by sum_r a_br (g_br - mean_b g_br)^T. This is exact when the inputs are the same for
all walkers (biases, and every layer at one walker); otherwise it removes
A (x) mean(g) mean(g)^T where the Kronecker (independence) approximation of the mean term is
mean(a) mean(a)^T (x) mean(g) mean(g)^T, and A >= mean(a) mean(a)^T, so it removes at least that
much (G stays positive semi-definite either way).

Other leaves (envelope pi/sigma, Jastrow, LayerNorm): diagonal Fisher, the per-walker variance
mean_b (O_b - mean O)^2 of each entry, from the per-walker gradients of those leaves only.

Moving averages: at step t each factor becomes w F_{t-1} + (1 - w) F_hat with
w = min(decay, t / (t + 1)), so the first step takes the batch estimate and the start is an
ordinary running mean until it reaches `decay`.

Damping and inverses: every `inverse_period` steps (and at t = 0) the factors' eigendecompositions
A = U_A diag(s_A) U_A^T, G = U_G diag(s_G) U_G^T are recomputed; in between they are reused (the
factors keep averaging). The preconditioned layer gradient is the exact Tikhonov-damped inverse

    (A (x) G + lambda I)^-1 vec(grad) = U_A [(U_A^T grad U_G) / (s_A s_G^T + lambda)] U_G^T,

elementwise division, no split of lambda between the factors (no pi-trick needed: the
eigendecompositions make the damped Kronecker sum invertible directly). Diagonal leaves get
grad / (f + lambda).

Step and norm constraint (FermiNet's KFAC, Pfau et al. 2020, bounds the Fisher norm of the step,
lr^2 phi^T F phi with phi = F^-1 grad): here the bound applies to the initial rate,

    update = -c lr_t phi,   c = min(1, sqrt(max_norm / (lr_0^2 grad^T phi))),

with lr_t = lr_0 / (1 + decay t), grad^T phi the damped quadratic form summed over all blocks,
so the step's Fisher norm squared is at most max_norm (lr_t / lr_0)^2 and keeps shrinking with the
schedule once the bound is active. The gradient is the energy gradient 2 mean_b r_b O_b
(`GradientBatch.gradient`, which the train step forms from the same records: one backward pass
per walker in all, `vmcjet.optim.gradient.records_gradient`); the update needs no B x P array,
so its cost and memory are linear in B.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from vmcjet.config import KFAC_SHARING
from vmcjet.errors import InputError
from vmcjet.networks.layers import dense_layer_names, named_leaves
from vmcjet.optim.gradient import (
    GRADIENT,
    LAYERS,
    NO_DROP,
    GradientBatch,
    Optimiser,
    PyTree,
    decaying_learning_rate,
    split_layer_matrix,
)

Array = jax.Array
SHARING = KFAC_SHARING  # weight-sharing approximations (module docstring)


class Eigen(NamedTuple):
    """Eigendecomposition of a symmetric factor: values (d,) (clipped at 0), vectors (d, d)."""

    values: Array
    vectors: Array


class KfacState(NamedTuple):
    """State of KFAC (all dicts keyed by dense-layer name or leaf path, see `LayerRecords`).

    Attributes:
        a_factors: {layer: (n_in (+1), n_in (+1))} moving average of A.
        g_factors: {layer: (n_out, n_out)} moving average of G.
        a_eigen: {layer: Eigen} eigendecomposition of A at the last inverse update.
        g_eigen: {layer: Eigen} the same for G.
        diagonal: {leaf path: leaf shape} moving average of the diagonal Fisher.
        step: number of updates done, int32 scalar.
    """

    a_factors: dict[str, Array]
    g_factors: dict[str, Array]
    a_eigen: dict[str, Eigen]
    g_eigen: dict[str, Eigen]
    diagonal: dict[str, Array]
    step: Array


def kronecker_factors(
    inputs: Array, output_grads: Array, *, sharing: str, centred: bool
) -> tuple[Array, Array]:
    """The factors A (n_in, n_in) and G (n_out, n_out) of one batch (module docstring).

    Args:
        inputs: (B, R, n_in) input rows a_br of a dense layer.
        output_grads: (B, R, n_out) output gradients g_br.
        sharing: "expand" (every row a sample) or "reduce" (rows reduced per walker first).
        centred: centre the g's over walkers (per row for expand, their row sums for reduce).
    """
    batch, rows = inputs.shape[:2]
    if sharing == "reduce":
        inputs = jnp.mean(inputs, axis=1, keepdims=True)
        output_grads = jnp.sum(output_grads, axis=1, keepdims=True)
        rows = 1
    if centred:
        output_grads = output_grads - jnp.mean(output_grads, axis=0, keepdims=True)
    a = jnp.einsum("bri,brj->ij", inputs, inputs) / (batch * rows)
    g = jnp.einsum("bri,brj->ij", output_grads, output_grads) / batch
    return a, g


def diagonal_fisher(grads: Array, *, centred: bool) -> Array:
    """mean_b O_b^2 over the walker axis of (B, ...) per-walker gradients, O_b centred first
    when `centred`."""
    if centred:
        grads = grads - jnp.mean(grads, axis=0, keepdims=True)
    return jnp.mean(grads * grads, axis=0)


def eigen(matrix: Array) -> Eigen:
    """Eigendecomposition of a symmetric positive semi-definite (d, d) matrix."""
    values, vectors = jnp.linalg.eigh((matrix + matrix.T) / 2)
    return Eigen(jnp.maximum(values, 0.0), vectors)


def precondition(grad: Array, a: Eigen, g: Eigen, damping: float) -> Array:
    """(A (x) G + damping I)^-1 vec(grad) for grad (n_in, n_out) in the row-major layout."""
    rotated = a.vectors.T @ grad @ g.vectors
    rotated = rotated / (a.values[:, None] * g.values[None, :] + damping)
    return a.vectors @ rotated @ g.vectors.T


def _layer_matrix(named: dict[str, Array], layer: str) -> Array:
    """The gradient [w; b] (n_in (+1), n_out) of a dense layer from the named leaves."""
    w = named[f"{layer}.w"]
    bias = named.get(f"{layer}.b")
    return w if bias is None else jnp.concatenate([w, bias[None]], axis=0)


def kfac(
    learning_rate: float,
    *,
    decay: float = 0.0,
    drop: tuple[int, float] = NO_DROP,
    damping: float = 1e-3,
    ema_decay: float = 0.95,
    inverse_period: int = 10,
    max_norm: float = 1e-3,
    centred: bool = True,
    sharing: str = "expand",
) -> Optimiser:
    """KFAC as a pure `Optimiser` (see the module docstring); it needs the energy gradient and
    the layer records.

    Args:
        learning_rate: initial learning rate lr_0; lr_t = lr_0 / (1 + decay t).
        decay: learning-rate decay per step.
        drop: (step, factor) of a late drop of the rate (`decaying_learning_rate`).
        damping: Tikhonov damping lambda added to every Fisher block (> 0).
        ema_decay: weight of the previous factors in their moving averages, in [0, 1).
        inverse_period: eigendecompositions of the factors every this many steps (>= 1).
        max_norm: bound on lr_0^2 grad^T F^-1 grad (> 0).
        centred: centred Fisher (as SPRING) or the uncentred mean_b O_b O_b^T.
        sharing: weight-sharing approximation of the shared layers, "expand" or "reduce".

    Returns:
        `Optimiser(init, update, needs)`: `init(params) -> KfacState`; `update(batch, state,
        params=None) -> (updates, state)` reads `batch.gradient` and `batch.layers`.

    Raises:
        InputError: for damping <= 0, ema_decay outside [0, 1), inverse_period < 1,
            max_norm <= 0 or an unknown sharing.
    """
    if sharing not in SHARING:
        raise InputError(
            f"unknown KFAC weight sharing '{sharing}'; use one of {', '.join(SHARING)}"
        )
    if damping <= 0 or not 0 <= ema_decay < 1 or inverse_period < 1 or max_norm <= 0:
        raise InputError(
            "KFAC needs damping > 0, 0 <= decay < 1, inverse_period >= 1 and max_norm > 0; got "
            f"damping={damping}, decay={ema_decay}, inverse_period={inverse_period}, "
            f"max_norm={max_norm}"
        )
    schedule = decaying_learning_rate(learning_rate, decay, drop)

    def init(params: PyTree) -> KfacState:
        named = named_leaves(params)
        layers = dense_layer_names(params)
        owned = tuple(f"{layer}." for layer in layers)

        def zeros(n: int, dtype) -> tuple[Array, Eigen]:
            return jnp.zeros((n, n), dtype), Eigen(jnp.zeros((n,), dtype), jnp.eye(n, dtype=dtype))

        a = {
            layer: zeros(_layer_matrix(named, layer).shape[0], named[f"{layer}.w"].dtype)
            for layer in layers
        }
        g = {
            layer: zeros(named[f"{layer}.w"].shape[1], named[f"{layer}.w"].dtype)
            for layer in layers
        }
        diagonal = {p: jnp.zeros_like(leaf) for p, leaf in named.items() if not p.startswith(owned)}
        return KfacState(
            a_factors={k: v[0] for k, v in a.items()},
            g_factors={k: v[0] for k, v in g.items()},
            a_eigen={k: v[1] for k, v in a.items()},
            g_eigen={k: v[1] for k, v in g.items()},
            diagonal=diagonal,
            step=jnp.zeros((), jnp.int32),
        )

    def update(batch: GradientBatch, state: KfacState, params=None):
        del params
        records = batch.layers
        if set(records.inputs) != set(state.a_factors) or set(records.other_grads) != set(
            state.diagonal
        ):
            raise ValueError("the layer records do not match the parameters KFAC was set up for")
        grads = named_leaves(batch.gradient)
        dtype = next(iter(grads.values())).dtype
        step = state.step.astype(dtype)
        weight = jnp.minimum(ema_decay, step / (step + 1.0))

        def average(old: Array, new: Array) -> Array:
            return weight * old + (1.0 - weight) * new.astype(old.dtype)

        a_factors, g_factors = {}, {}
        for layer in state.a_factors:
            a_new, g_new = kronecker_factors(
                records.inputs[layer], records.output_grads[layer], sharing=sharing, centred=centred
            )
            a_factors[layer] = average(state.a_factors[layer], a_new)
            g_factors[layer] = average(state.g_factors[layer], g_new)
        diagonal = {
            p: average(state.diagonal[p], diagonal_fisher(o, centred=centred))
            for p, o in records.other_grads.items()
        }
        a_eigen, g_eigen = jax.lax.cond(
            state.step % inverse_period == 0,
            lambda: (jax.tree.map(eigen, a_factors), jax.tree.map(eigen, g_factors)),
            lambda: (state.a_eigen, state.g_eigen),
        )

        directions = {}
        for layer in state.a_factors:
            matrix = _layer_matrix(grads, layer)
            phi = precondition(matrix, a_eigen[layer], g_eigen[layer], damping)
            directions.update(split_layer_matrix(layer, phi, grads))
        for p, f in diagonal.items():
            directions[p] = grads[p] / (f + damping)
        quadratic = sum(jnp.vdot(grads[p], phi) for p, phi in directions.items())
        squared = learning_rate**2 * quadratic
        scale = jnp.minimum(1.0, jnp.sqrt(max_norm / jnp.maximum(squared, jnp.finfo(dtype).tiny)))
        factor = -scale * schedule(step)
        treedef = jax.tree_util.tree_structure(batch.gradient)
        updates = [(factor * directions[p]).astype(grads[p].dtype) for p in grads]
        new_state = KfacState(a_factors, g_factors, a_eigen, g_eigen, diagonal, state.step + 1)
        return jax.tree_util.tree_unflatten(treedef, updates), new_state

    return Optimiser(init, update, frozenset({GRADIENT, LAYERS}))
