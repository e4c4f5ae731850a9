"""Collapsed Taylor mode of order m: the stack, the rules that depend on m, and their registry.

For an operator sum_k w_k d^m f[v_k, ..., v_k] every intermediate array p carries the stack

    (p_{j,k} = d^j p[v_k, ..., v_k]  for j = 1..m-1 and k = 1..K,   T = sum_k w_k d^m p[v_k, ...]),

held as one array of r + (m - 2) K + 1 rows: first the first-order coefficients d p[b_i] of r basis
vectors b_i with v_k = sum_i C_ki b_i (first derivatives are linear in the direction, so
p_{1,k} = sum_i C_ki d p[b_i] is formed only where a rule needs it; `basis` picks the unit vectors
when K > D, else the directions), then p_{j,k} for j = 2..m-1 (K rows each), then T. At the input
the basis rows are the b_i, p_{j,k} = 0 for j > 1 and T = 0 (for m = 1 the stack is T alone, and
T = sum_k w_k v_k). For m = 2 and w = 1 this is the Laplacian stack of `rules`: first-order rows and
L. `Layout` holds m, and while pushing w and C.

Why the top order can be summed: for q = g(p), Faa di Bruno's formula gives per direction

    d^n q = sum over the partitions pi of {1..n}:  g^(|pi|)(p) prod_{B in pi} p_{|B|},

and only the one-block partition holds p_n, in the term g'(p) p_n, linear in it through the same
g'(p) for every k. So T_q = g'(p) T_p + sum_k w_k (the other terms of d^m q_k), which need only the
orders below m. Products are alike (Leibniz: d^m (a b) = sum_j C(m, j) a_j b_{m-j}, where only
j = 0 and j = m hold a top coefficient), and so is log|det A|: with X(t) = A0^-1 (A(t) - A0),
log|det A(t)| = log|det A0| + tr log(I + X(t)) = ... + sum_r (-1)^(r+1) tr(X(t)^r) / r, and of the
t^m coefficient only r = 1 holds A's top coefficient, as tr(A0^-1 A_m).

Rules here: unary elementwise primitives (derivatives g^(1..m) from JAX's own jvp rules, once per
primal), mul and dot_general (bilinear, Leibniz), div (a * (1/b)), pow, the named calls "slogdet"
and "det", and a fallback from nested jvps along each direction's Taylor curve. Linear, structural
and control-flow rules are shared with the Laplacian (`rules.register_structural`,
`rules_dot.register_lazy_structure`, `rules_control`): they act on every row alike. The order is
read from `layout` while the primal stage runs; the weights (of the current chunk of directions)
while the pushes run.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from vmcjet.laplacian import rules, rules_control, rules_dot
from vmcjet.laplacian._jax_internals import Primitive, bind_primitive, prims
from vmcjet.laplacian.registry import Registry
from vmcjet.laplacian.rules_elementwise import UNARY_PRIMITIVES
from vmcjet.linalg import slogdet_and_inverse

Array = jax.Array


class Layout(NamedTuple):
    """The order m of the stacks and, while pushing, the directions' weights w (K,) and their
    coordinates C (K, r) in the basis whose first-order rows the stacks carry."""

    order: int
    weights: Array | None = None
    coordinates: Array | None = None


_LAYOUT: contextvars.ContextVar[Layout] = contextvars.ContextVar("taylor_layout")


@contextlib.contextmanager
def layout(order: int, weights: Array | None = None, coordinates: Array | None = None):
    """Within the block, rules build stacks of `order` for directions given by `weights` and
    `coordinates` (both None in the primal stage, which needs only the order)."""
    token = _LAYOUT.set(Layout(order, weights, coordinates))
    try:
        yield
    finally:
        _LAYOUT.reset(token)


def _order() -> int:
    return _LAYOUT.get().order


def _pushing() -> tuple[Array, Array]:
    """(weights, coordinates) of the directions being pushed."""
    current = _LAYOUT.get()
    if current.weights is None or current.coordinates is None:
        raise RuntimeError("a Taylor push ran outside `layout(order, weights, coordinates)`")
    return current.weights, current.coordinates


def _weighted_sum(terms: Array) -> Array:
    """sum_k w_k terms[k] for terms of shape (K,) + s."""
    return jnp.tensordot(_pushing()[0].astype(terms.dtype), terms, axes=1)


def _per_direction(basis_rows: Array) -> Array:
    """First-order coefficients per direction, p_{1,k} = sum_r C_kr B_r, from the basis rows B."""
    return jnp.tensordot(_pushing()[1].astype(basis_rows.dtype), basis_rows, axes=1)


def basis(directions: Array) -> tuple[Array, Array]:
    """(B, C): basis vectors B (r,) + s and coordinates C (K, r) with v_k = sum_r C_kr B_r.

    First-order coefficients are linear in the direction, so the stacks carry them for the r
    basis vectors only: the unit vectors of x when K exceeds its size D (r = D, C = V), else the
    directions themselves (r = K, C = I)."""
    num, shape = directions.shape[0], directions.shape[1:]
    size = math.prod(shape)
    if num > size:
        eye = jnp.eye(size, dtype=directions.dtype).reshape((size, *shape))
        return eye, directions.reshape(num, size)
    return directions, jnp.eye(num, dtype=directions.dtype)


def seed(basis_vectors: Array, weights: Array, coordinates: Array, order: int) -> Array:
    """The input stack: rows B (the first-order coefficients of the basis vectors), zeros for
    orders 2..m-1 (K rows each), then T = 0 (for m = 1 the only row, sum_k w_k v_k)."""
    dtype = basis_vectors.dtype
    if order == 1:
        directions = jnp.tensordot(coordinates.astype(dtype), basis_vectors, axes=1)
        return jnp.tensordot(weights.astype(dtype), directions, axes=1)[None]
    shape = basis_vectors.shape[1:]
    zeros = jnp.zeros((coordinates.shape[0] * (order - 2),) + shape, dtype)
    return jnp.concatenate([basis_vectors, zeros, jnp.zeros((1,) + shape, dtype)])


def split(stack: Array, order: int) -> tuple[Array | None, list[Array], Array]:
    """A stack as (B, [p_2, ..., p_{m-1}], T): the basis rows of the first order (None for
    m = 1), the per-direction coefficients of orders 2..m-1 (each (K,) + s), the top row."""
    if order == 1:
        return None, [], stack[0]
    num, rows = _pushing()[1].shape
    higher = [stack[rows + j * num : rows + (j + 1) * num] for j in range(order - 2)]
    return stack[:rows], higher, stack[-1]


def join(basis_rows: Array | None, higher: list[Array], top: Array) -> Array:
    return jnp.concatenate([*([] if basis_rows is None else [basis_rows]), *higher, top[None]])


def coefficients(basis_rows: Array | None, higher: list[Array]) -> list[Array]:
    """[p_1, ..., p_{m-1}] per direction, each (K,) + s."""
    return ([] if basis_rows is None else [_per_direction(basis_rows)]) + higher


@functools.cache
def partitions(n: int) -> tuple[tuple[int, tuple[int, ...]], ...]:
    """The set partitions of {1..n} grouped by block sizes: (how many, block sizes) per integer
    partition of n, e.g. n = 4: (1, (4,)), (4, (3, 1)), (3, (2, 2)), (6, (2, 1, 1)), (1, (1,)*4)."""

    def integer_partitions(n: int, largest: int) -> Iterator[tuple[int, ...]]:
        if n == 0:
            yield ()
        for part in range(min(n, largest), 0, -1):
            for rest in integer_partitions(n - part, part):
                yield (part, *rest)

    out = []
    for sizes in integer_partitions(n, n):
        count = math.factorial(n)
        for size in sizes:
            count //= math.factorial(size)
        for size in set(sizes):
            count //= math.factorial(sizes.count(size))
        out.append((count, sizes))
    return tuple(out)


def _faa_di_bruno(n: int, derivatives: list[Array], lower: list[Array], top: bool) -> Array:
    """d^n g(p) per direction from g^(i) = derivatives[i - 1] and p_j = lower[j - 1]; with `top`,
    without the one-block term g'(p) p_n."""
    terms = [
        count * derivatives[len(sizes) - 1][None] * math.prod(lower[s - 1] for s in sizes)
        for count, sizes in partitions(n)
        if not (top and len(sizes) == 1)
    ]
    return sum(terms[1:], terms[0])


def compose(derivatives: list[Array], stack: Array, order: int) -> Array:
    """Stack of g(p) from the stack of p and g^(1..m)(p) (each of p's shape)."""
    basis_rows, higher, top = split(stack, order)
    lower = coefficients(basis_rows, higher)
    out = [_faa_di_bruno(n, derivatives, lower, top=False) for n in range(2, order)]
    out_top = derivatives[0] * top
    if order > 1:
        out_top = out_top + _weighted_sum(_faa_di_bruno(order, derivatives, lower, top=True))
    out_basis = None if basis_rows is None else derivatives[0][None] * basis_rows
    return join(out_basis, out, out_top)


def derivatives_of(fn: Callable[[Array], Any], x: Array, order: int) -> list:
    """[g'(x), ..., g^(order)(x)] of an elementwise g (or of a curve t -> g(t), any outputs, at a
    scalar t = x), by nested jvps with unit tangents."""
    out, current = [], fn
    for _ in range(order):
        current = functools.partial(lambda g, y: jax.jvp(g, (y,), (jnp.ones_like(y),))[1], current)
        out.append(current(x))
    return out


def bilinear(apply: Callable, a: Array, b: Array, sa, sb, order: int):
    """Stack of apply(a, b) for `apply` bilinear (mul, dot_general) from the stacks of a and b:
    Leibniz, d^n apply(a, b) = sum_j C(n, j) apply(a_j, b_{n-j})."""
    parts = []  # apply is linear in each operand: every row goes through it alike
    if sa is not None:
        parts.append(jax.vmap(lambda row: apply(row, b))(sa))
    if sb is not None:
        parts.append(jax.vmap(lambda row: apply(a, row))(sb))
    linear = sum(parts[1:], parts[0])
    if sa is None or sb is None or order == 1:
        return linear
    la = coefficients(*split(sa, order)[:2])
    lb = coefficients(*split(sb, order)[:2])
    paired = jax.vmap(apply)

    def cross(n: int) -> Array:
        terms = [math.comb(n, j) * paired(la[j - 1], lb[n - j - 1]) for j in range(1, n)]
        return sum(terms[1:], terms[0])

    basis_rows, higher, top = split(linear, order)
    higher = [higher[n - 2] + cross(n) for n in range(2, order)]
    return join(basis_rows, higher, top + _weighted_sum(cross(order)))


# --- rules ---------------------------------------------------------------------------------------


def unary_rule(primitive: Primitive) -> Callable:
    """A unary elementwise primitive: its derivatives up to the order, from JAX's jvp rules."""

    def rule(primals, dependent, **params):
        del dependent
        fn = lambda y: bind_primitive(primitive, [y], params)[0]
        (x,) = primals
        order = _order()
        derivatives = derivatives_of(fn, x, order)
        return [fn(x)], lambda stacks: [compose(derivatives, stacks[0], order)]

    return rule


def _expand(stack, shape):
    return None if stack is None else rules.expand(rules.materialize(stack), shape)


def _mul_rule(primals, dependent, **params):
    del dependent
    a, b = primals
    out = prims.mul_p.bind(a, b, **params)
    order = _order()
    wide_a, wide_b = (jnp.broadcast_to(v, out.shape) for v in (a, b))

    def push(stacks):
        sa, sb = (_expand(s, out.shape) for s in stacks)
        return [bilinear(lax.mul, wide_a, wide_b, sa, sb, order)]

    return [out], push


def _reciprocal_derivatives(b: Array, order: int) -> list[Array]:
    """d^j/db^j (1/b) = (-1)^j j! / b^(j+1)."""
    return [(-1) ** j * math.factorial(j) / b ** (j + 1) for j in range(1, order + 1)]


def _div_rule(primals, dependent, **params):
    del dependent
    a, b = primals
    out = lax.div(a, b)
    order = _order()
    wide_a, inverse = jnp.broadcast_to(a, out.shape), jnp.broadcast_to(1 / b, out.shape)
    derivatives = _reciprocal_derivatives(jnp.broadcast_to(b, out.shape), order)

    def push(stacks):
        sa, sb = (_expand(s, out.shape) for s in stacks)
        s_inverse = None if sb is None else compose(derivatives, sb, order)
        return [bilinear(lax.mul, wide_a, inverse, sa, s_inverse, order)]

    return [out], push


def _pow_rule(primals, dependent, **params):
    """x ** y: elementwise in x for a constant y, else exp(y log x)."""
    del params
    x, y = primals
    out = lax.pow(x, y)
    order = _order()
    wide = lambda v: jnp.broadcast_to(v, out.shape)
    if not dependent[1]:
        derivatives = derivatives_of(lambda v: lax.pow(v, y), wide(x), order)
        return [out], lambda stacks: [compose(derivatives, _expand(stacks[0], out.shape), order)]
    log_x = jnp.log(wide(x))
    log_derivatives = derivatives_of(jnp.log, wide(x), order)

    def push(stacks):
        sx, sy = (_expand(s, out.shape) for s in stacks)
        s_log = None if sx is None else compose(log_derivatives, sx, order)
        exponent = bilinear(lax.mul, wide(y), log_x, sy, s_log, order)
        return [compose([out] * order, exponent, order)]

    return [out], push


def _dot_general_rule(primals, dependent, **params):
    del dependent
    a, b = primals
    apply = lambda u, v: prims.dot_general_p.bind(u, v, **params)
    out = apply(a, b)
    order = _order()

    def push(stacks):
        sa, sb = stacks
        if sb is None:  # keeps the lazy concatenation and broadcast paths of rules_dot
            return [rules.materialize(rules_dot.dot_constant_stack(sa, b, params))]
        sa = rules.materialize(sa)
        return [bilinear(apply, a, b, sa, rules.materialize(sb), order)]

    return [out], rules.LazyPush(push)


def logdet_stack(inverse: Array, stack: Array, order: int) -> Array:
    """Stack of log|det A| from the stack of A (..., n, n), with A0^-1 = `inverse`.

    With X_j = A0^-1 A_j / j! the t^n coefficient of tr log(I + X(t)) is
    sum_r (-1)^(r+1)/r tr(P_r[n]), P_1[n] = X_n, P_r[n] = sum_j X_j P_{r-1}[n - j]; d^n is n!
    times it.
    """
    basis_rows, higher, top = split(stack, order)
    lower = coefficients(basis_rows, higher)
    xs = [inverse[None] @ lower[j - 1] / math.factorial(j) for j in range(1, order)]
    powers = {(1, n): xs[n - 1] for n in range(1, order)}  # (r, n) -> P_r[n], only r >= 1, n < m
    trace = lambda m: jnp.trace(m, axis1=-2, axis2=-1)

    def coefficient(n: int) -> Array:
        """n! times the r >= 2 part of the t^n coefficient (per direction)."""
        terms = []
        for r in range(2, n + 1):
            products = [xs[j - 1] @ powers[(r - 1, n - j)] for j in range(1, n - r + 2)]
            product = functools.reduce(jnp.add, products)
            if n < order:
                powers[(r, n)] = product
            terms.append((-1) ** (r + 1) / r * trace(product))
        return math.factorial(n) * sum(terms[1:], terms[0])

    out = [math.factorial(n) * trace(xs[n - 1]) + coefficient(n) for n in range(2, order)]
    first_order = lambda rows: jnp.einsum("...ji,r...ij->r...", inverse, rows)  # tr(A0^-1 rows)
    out_top = first_order(top[None])[0]
    if order > 1:
        out_top = out_top + _weighted_sum(coefficient(order))
    return join(None if basis_rows is None else first_order(basis_rows), out, out_top)


def _slogdet_rule(primals, dependent, **params):
    del dependent, params
    sign, logdet, inverse = slogdet_and_inverse(primals[0])
    order = _order()

    def push(stacks):
        return [None, None if stacks[0] is None else logdet_stack(inverse, stacks[0], order)]

    return [sign, logdet], push


def _det_rule(primals, dependent, **params):
    del dependent, params
    sign, logdet, inverse = slogdet_and_inverse(primals[0])
    det = sign * jnp.exp(logdet)
    order = _order()

    def push(stacks):
        if stacks[0] is None:
            return [None]
        return [compose([det] * order, logdet_stack(inverse, stacks[0], order), order)]

    return [det], push


# --- fallback ------------------------------------------------------------------------------------


def fallback_rule(primitive: Primitive) -> Callable:
    """Any primitive, from nested jvps along each direction's Taylor curve
    p + sum_{j<m} p_{j,k} t^j / j! (slower; the Laplacian's fallback warns about it too)."""
    laplacian_fallback = rules.fallback_rule(primitive)

    def rule(primals, dependent, **params):
        outs, _ = laplacian_fallback(primals, dependent, **params)  # warns once
        order = _order()

        def push(stacks):
            idx = [i for i, s in enumerate(stacks) if s is not None]
            parts = [split(rules.materialize(stacks[i]), order) for i in idx]
            varying = tuple(primals[i] for i in idx)
            inexact = [jnp.issubdtype(out.dtype, jnp.inexact) for out in outs]
            linear = lambda *tangents: jax.jvp(
                lambda *v: bind_primitive(primitive, _replace(primals, idx, v), params),
                varying,
                tangents,
            )[1]
            tops = linear(*(top for _, _, top in parts))
            if order == 1:
                return [
                    join(None, [], t) if ok else None for t, ok in zip(tops, inexact, strict=True)
                ]
            bases = jax.vmap(linear)(*(b for b, _, _ in parts))

            def along(lower):  # d^n/dt^n at 0 of the primitive along one direction's curve
                def h(t):
                    args = list(primals)
                    for i, cs in zip(idx, lower, strict=True):
                        args[i] = primals[i] + sum(
                            c * t ** (j + 1) / math.factorial(j + 1) for j, c in enumerate(cs)
                        )
                    return bind_primitive(primitive, args, params)

                return derivatives_of(h, jnp.zeros(()), order)

            lowers = jax.vmap(along)([coefficients(b, higher) for b, higher, _ in parts])
            return [
                join(bases[o], [lowers[n][o] for n in range(1, order - 1)],
                     tops[o] + _weighted_sum(lowers[order - 1][o]))
                if inexact[o] else None
                for o in range(len(outs))
            ]  # fmt: skip

        return outs, push

    return rule


def _replace(values: list, idx: list[int], new) -> list:
    out = list(values)
    for i, v in zip(idx, new, strict=True):
        out[i] = v
    return out


@functools.cache
def taylor_registry() -> Registry:
    """The rules of stacks of any order: the Laplacian's order-independent ones and those above."""
    registry = Registry(fallback_rule)
    rules.register_structural(registry)
    rules_dot.register_lazy_structure(registry)
    rules_control.register_rules(registry)
    for primitive in UNARY_PRIMITIVES:
        registry.register(primitive, unary_rule(primitive), lazy=False)
    registry.register(prims.mul_p, _mul_rule, lazy=False)
    registry.register(prims.div_p, _div_rule, lazy=False)
    registry.register(prims.pow_p, _pow_rule, lazy=False)
    registry.register(prims.dot_general_p, _dot_general_rule, lazy=True)
    registry.register_call("slogdet", _slogdet_rule)
    registry.register_call("det", _det_rule)
    return registry
