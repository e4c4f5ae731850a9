"""The registry of Laplacian methods: one factory per way of computing (value, gradient, Laplacian).

Every factory has the signature ``factory(f, *, chunk_size=None)`` and returns a function
``x -> (value, gradient, laplacian)`` for a scalar function ``f`` of an array ``x`` of any shape
(D entries): ``value`` and ``laplacian`` are scalars, ``gradient`` has ``x.shape``.

- ``"collapsed"``: vmcjet's collapsed forward Laplacian (`vmcjet.laplacian.engine`), in blocks of
  ``COLLAPSED_CHUNK_SIZE`` directions unless ``chunk_size`` says otherwise, with electron-wise
  sparsity (`vmcjet.laplacian.rules_sparse`) for x of shape (n, 3) with n >= SPARSE_MIN_ELECTRONS.
  ``"collapsed_sparse"`` always uses electron-wise sparsity (x of shape (n, 3)).
- ``"hessian"``: the trace of the dense ``jax.hessian`` (reverse-over-forward, D x D entries).
- ``"loop"``: the gradient by reverse mode, linearised once, then a ``lax.fori_loop`` over the D
  coordinates of the Hessian-vector product, accumulating the diagonal (FermiNet's approach).
- ``"vmap_jvp"``: the same Hessian-vector product, vmapped over the D unit vectors.
- ``"taylor"``: standard (uncollapsed) Taylor mode: an order-2 ``jax.experimental.jet`` per unit
  vector, vmapped; the D second-order coefficients are summed at the end. jet has no rules for
  ``lu`` (so no slogdet/det: determinant wavefunctions fail), control flow or ``reduce_prod``.
- ``"folx"``, ``"folx_sparse"``: ``folx.forward_laplacian`` dense (sparsity_threshold=0) and with
  its electron-wise sparsity (threshold 6), registered only when the optional folx package imports.

``chunk_size`` bounds how many directions are processed at once where a method maps over directions
("collapsed" and "collapsed_sparse": None means blocks of ``COLLAPSED_CHUNK_SIZE``; "vmap_jvp",
"taylor": via ``lax.map(..., batch_size=chunk_size)``, None means all at once); "hessian", "loop",
"folx" and "folx_sparse" ignore it.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.experimental.jet import jet

from vmcjet.errors import InputError
from vmcjet.laplacian.engine import forward_laplacian

Array = jax.Array
Triple = tuple[Array, Array, Array]
Factory = Callable[..., Callable[[Array], Triple]]


def _flatten(f: Callable[[Array], Array], x: Array) -> tuple[Callable[[Array], Array], Array]:
    """f as a function of the flattened input (D,), and that flattened input."""
    return (lambda z: f(z.reshape(x.shape))), x.reshape(-1)


def _map_directions(fn: Callable[[Array], Array], size: int, dtype, chunk_size: int | None):
    """fn applied to each of the `size` unit vectors, stacked: vmap, or lax.map in chunks."""
    eye = jnp.eye(size, dtype=dtype)
    if chunk_size is None:
        return jax.vmap(fn)(eye)
    return jax.lax.map(fn, eye, batch_size=chunk_size)


def _linearized_gradient(f: Callable[[Array], Array], x: Array):
    """Value, flattened gradient (D,) and the Hessian-vector product v (D,) -> H v (D,).

    The primal and the gradient are computed once (``jax.linearize``); each product then costs one
    forward pass through the linearised gradient.
    """
    flat_f, z = _flatten(f, x)

    def grad_with_value(z):
        value, grad = jax.value_and_grad(flat_f)(z)
        return grad, value

    grad, hvp, value = jax.linearize(grad_with_value, z, has_aux=True)
    return value, grad, hvp


def _hessian(f, *, chunk_size=None):
    del chunk_size  # the dense Hessian has no direction loop to chunk

    def apply(x):
        value, grad = jax.value_and_grad(f)(x)
        hess = jax.hessian(f)(x).reshape(x.size, x.size)
        return value, grad, jnp.trace(hess)

    return apply


def _loop(f, *, chunk_size=None):
    del chunk_size  # one direction at a time already

    def apply(x):
        value, grad, hvp = _linearized_gradient(f, x)

        def add_diagonal_entry(i, total):
            unit = jnp.zeros(x.size, x.dtype).at[i].set(1)
            return total + hvp(unit)[i]

        lap = jax.lax.fori_loop(0, x.size, add_diagonal_entry, jnp.zeros((), grad.dtype))
        return value, grad.reshape(x.shape), lap

    return apply


def _vmap_jvp(f, *, chunk_size=None):
    def apply(x):
        value, grad, hvp = _linearized_gradient(f, x)
        hess = _map_directions(hvp, x.size, x.dtype, chunk_size)
        return value, grad.reshape(x.shape), jnp.trace(hess)

    return apply


def _taylor(f, *, chunk_size=None):
    def apply(x):
        flat_f, z = _flatten(f, x)

        def order_two(unit):
            value, (first, second) = jet(flat_f, (z,), ((unit, jnp.zeros_like(unit)),))
            return value, first, second

        values, firsts, seconds = _map_directions(order_two, x.size, x.dtype, chunk_size)
        return values[0], firsts.reshape(x.shape), jnp.sum(seconds)

    return apply


def _folx(f, *, chunk_size=None, sparsity_threshold=0):
    del chunk_size  # folx has no direction chunking
    import folx

    lap_f = folx.forward_laplacian(f, sparsity_threshold=sparsity_threshold)

    def apply(x):
        # folx relies on implicit rank and dtype promotion: allow both while tracing it.
        with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
            out = lap_f(x)
        return out.x, out.jacobian.dense_array.reshape(x.shape), out.laplacian

    return apply


def _folx_available() -> bool:
    try:
        import folx  # noqa: F401
    except ImportError:
        return False
    return True


# Directions per fori_loop block of "collapsed" when no chunk_size is given: small blocks keep the
# working set in cache and were the fastest setting on CPU (docs/benchmarks.md).
COLLAPSED_CHUNK_SIZE = 6


# "collapsed" uses electron sparsity for electron positions (n, 3) from this many electrons on:
# measured faster at N2 (14) and P2 (30), slower at LiH (4) (docs/benchmarks.md).
SPARSE_MIN_ELECTRONS = 8


def _collapsed(f, *, chunk_size=None):
    chunk = chunk_size or COLLAPSED_CHUNK_SIZE
    dense = forward_laplacian(f, chunk_size=chunk)
    sparse = forward_laplacian(f, chunk_size=chunk, electron_sparsity=True)

    def apply(x):
        x = jnp.asarray(x)
        electrons = x.ndim == 2 and x.shape[1] == 3 and x.shape[0] >= SPARSE_MIN_ELECTRONS
        return (sparse if electrons else dense)(x)

    return apply


def _collapsed_sparse(f, *, chunk_size=None):
    return forward_laplacian(
        f, chunk_size=chunk_size or COLLAPSED_CHUNK_SIZE, electron_sparsity=True
    )


def _folx_sparse(f, *, chunk_size=None):
    return _folx(f, chunk_size=chunk_size, sparsity_threshold=6)


LAPLACIAN_METHODS: dict[str, Factory] = {
    "collapsed": _collapsed,
    "collapsed_sparse": _collapsed_sparse,
    "hessian": _hessian,
    "loop": _loop,
    "vmap_jvp": _vmap_jvp,
    "taylor": _taylor,
}
if _folx_available():
    LAPLACIAN_METHODS["folx"] = _folx
    LAPLACIAN_METHODS["folx_sparse"] = _folx_sparse


def laplacian_method(name: str) -> Factory:
    """The factory registered under `name`: ``factory(f, *, chunk_size=None)`` -> x -> triple.

    Raises:
        InputError: for an unknown name (listing the valid ones), or "folx" without folx installed.
    """
    if name in LAPLACIAN_METHODS:
        return LAPLACIAN_METHODS[name]
    if name == "folx":
        raise InputError("Laplacian method 'folx' needs the folx package: pip install folx")
    valid = ", ".join(sorted(LAPLACIAN_METHODS))
    raise InputError(f"unknown Laplacian method {name!r}; choose one of: {valid}")
