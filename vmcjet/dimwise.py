"""Dimension-wise derivatives of hollow networks, after Chen and Duvenaud, "Neural Networks with
Cheap Differential Operators" (NeurIPS 2019).

A hollow network maps x (d,) to f (d,) as

    h_i = c_i(x_{-i})          (conditioner: h_i does not depend on x_i),
    f_i = tau(x_i, h_i)        (transformer: one small network, shared by all i),

so with h held fixed the Jacobian of f is diagonal. The dimension-wise derivatives
D^k f = (d^k f_i / dx_i^k)_i (with h fixed, the "transformer part" of the total derivative that
operators such as the divergence of a flow or a Fokker-Planck residual's diagonal need) then cost
one backward pass each, whatever d: d/dx_j sum_i g_i(x_i, h_i) = g_j'(x_j, h_j), so
D^1 f = grad_x sum_i f_i, D^2 f = grad_x sum_i (D^1 f)_i, and so on (`dimension_wise`). Against
that, the diagonal of the Jacobian of a general f: R^d -> R^d needs d Jacobian-vector products.

Holding h fixed is done by making h a separate argument of the transformer, not by
`stop_gradient`: D^k is taken with respect to x alone, and the result is then evaluated at
h = c(x). Parameter gradients (or any outer derivative) of D^k f therefore include the
conditioner's path exactly,

    d/dw D^k f = partial D^k f / partial w  +  (partial D^k f / partial h)(partial h / partial w),

where `stop_gradient(h)` would silently drop the second term.

The conditioner here is the low-rank form h_i = MLP(tanh(s - U_i x_i + b_i)) with
s = U^T x = sum_j U_j x_j (U, b: (d, k)), which leaves x_i out exactly at O(d k) cost, the MLP
(k -> k, tanh) shared over i; the transformer is a tanh MLP on [x_i, h_i] -> scalar, shared over
i. Since h_i does not depend on x_i at all, D^k f is also the diagonal of the k-th derivative of
the whole f. Shapes: x (d,), h (d, k), f (d,); batch with `jax.vmap`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from vmcjet.errors import InputError
from vmcjet.networks.layers import dense, init_dense


class HollowNet(NamedTuple):
    """Pure functions of a hollow network (module docstring).

    init(key, dtype=jnp.float32) -> params.
    conditioner(params, x (d,)) -> h (d, k).
    transformer(params, x (d,), h (d, k)) -> f (d,); f_i depends on x_i and h_i only.
    """

    init: Callable[..., dict]
    conditioner: Callable[[dict, jax.Array], jax.Array]
    transformer: Callable[[dict, jax.Array, jax.Array], jax.Array]

    def apply(self, params: dict, x: jax.Array) -> jax.Array:
        """f(x) (d,) = transformer(x, conditioner(x))."""
        return self.transformer(params, x, self.conditioner(params, x))


def _init_mlp(key: jax.Array, widths: tuple[int, ...], dtype) -> list[dict]:
    keys = jax.random.split(key, len(widths) - 1)
    return [
        init_dense(k, n_in, n_out, dtype=dtype)
        for k, n_in, n_out in zip(keys, widths[:-1], widths[1:], strict=True)
    ]


def _mlp(layers: list[dict], x: jax.Array) -> jax.Array:
    """tanh MLP over the last axis, linear last layer."""
    for layer in layers[:-1]:
        x = jnp.tanh(dense(layer, x))
    return dense(layers[-1], x)


def hollow_net(dim: int, *, hidden: int = 16, layers: int = 2) -> HollowNet:
    """A hollow network for inputs of `dim` entries with `hidden` conditioner features per entry
    and `layers` tanh layers in both the conditioner's and the transformer's shared MLPs."""
    if dim < 2 or hidden < 1 or layers < 1:
        raise InputError(
            f"hollow_net needs dim >= 2, hidden >= 1 and layers >= 1, got {dim}, {hidden}, {layers}"
        )

    def init(key: jax.Array, dtype=jnp.float32) -> dict:
        k_u, k_b, k_c, k_t = jax.random.split(key, 4)
        return {
            "u": jax.random.normal(k_u, (dim, hidden), dtype) * dim**-0.5,
            "offset": jax.random.normal(k_b, (dim, hidden), dtype) * 0.1,
            "conditioner": _init_mlp(k_c, (hidden,) * (layers + 1), dtype),
            "transformer": _init_mlp(k_t, (hidden + 1,) + (hidden,) * layers + (1,), dtype),
        }

    def conditioner(params: dict, x: jax.Array) -> jax.Array:
        u = params["u"]
        others = (x @ u)[None, :] - x[:, None] * u + params["offset"]  # (d, k): x_i left out
        return _mlp(params["conditioner"], jnp.tanh(others))

    def transformer(params: dict, x: jax.Array, h: jax.Array) -> jax.Array:
        return _mlp(params["transformer"], jnp.concatenate([x[:, None], h], axis=-1))[:, 0]

    return HollowNet(init, conditioner, transformer)


def dimension_wise(
    net: HollowNet, *, order: int
) -> Callable[[dict, jax.Array], tuple[jax.Array, list[jax.Array]]]:
    """(params, x (d,)) -> (f(x), [D^1 f, ..., D^order f]), each (d,), by `order` backward passes
    through the transformer with h = conditioner(x) as a separate argument (module docstring)."""
    if not isinstance(order, int) or order < 1:
        raise InputError(f"dimension_wise needs an integer order >= 1, got {order!r}")

    def apply(params: dict, x: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
        h = net.conditioner(params, x)

        def highest(y: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
            return net.transformer(params, y, h), []

        for _ in range(order):
            # One more backward pass: the gradient of sum_i (current)_i, the lower orders as aux.
            def summed(y, current=highest):
                value, lower = current(y)
                return jnp.sum(value), [*lower, value]

            highest = jax.grad(summed, has_aux=True)
        top, lower = highest(x)
        return lower[0], [*lower[1:], top]

    return apply
