"""Every JAX-internal name the Laplacian engine touches, in one place.

The engine interprets jaxprs, so it depends on the jaxpr data structures, on primitive objects and
on the parameters of the equations its rules read. The first two are reached through `jax.extend`
(the steadier surface); the parameters through the typed accessors below (`scan_params`,
`while_params`, `cond_branches`, `call_name`, `dot_dimensions`, `broadcast_params`,
`slice_params`, `reduce_axes`, `reshape_params`), so a JAX upgrade that renames or reshapes one
touches this file only. The tested JAX range (0.9.2 through 0.10.2) is `pyproject.toml`'s; CI runs
the engine's tests on both ends (docs/reliability.md, "JAX version").
"""

from collections.abc import Sequence
from typing import Any, NamedTuple

from jax.extend.core import ClosedJaxpr, Jaxpr, JaxprEqn, Literal, Primitive, Var, jaxpr_as_fun
from jax.extend.core import primitives as prims

__all__ = [
    "ClosedJaxpr",
    "Jaxpr",
    "JaxprEqn",
    "Literal",
    "Primitive",
    "Var",
    "jaxpr_as_fun",
    "prims",
    "bind_equation",
    "bind_primitive",
    "inner_jaxpr",
    "ScanParams",
    "WhileParams",
    "scan_params",
    "while_params",
    "cond_branches",
    "call_name",
    "dot_dimensions",
    "with_dot_dimensions",
    "broadcast_params",
    "slice_params",
    "reduce_axes",
    "reshape_params",
    "stack_primitive",
]


def bind_primitive(primitive: Primitive, invals: Sequence[Any], params: dict) -> list:
    """Applies `primitive` to concrete or traced values, always returning a list of outputs."""
    outs = primitive.bind(*invals, **primitive.get_bind_params(params))
    return list(outs) if primitive.multiple_results else [outs]


def bind_equation(eqn: JaxprEqn, invals: Sequence[Any]) -> list:
    """Evaluates one jaxpr equation on `invals` (what `jax.core.eval_jaxpr` does per equation)."""
    return bind_primitive(eqn.primitive, invals, eqn.params)


def inner_jaxpr(params: dict) -> tuple[Jaxpr, list]:
    """The (jaxpr, consts) called by a call-like primitive (jit, closed_call, remat, custom_*)."""
    for key in ("jaxpr", "call_jaxpr"):
        if key in params:
            inner = params[key]
            if isinstance(inner, ClosedJaxpr):
                return inner.jaxpr, list(inner.consts)
            return inner, []
    raise KeyError(f"no inner jaxpr among parameters {sorted(params)}")


class ScanParams(NamedTuple):
    """What the scan rule reads of a `scan` equation."""

    body: ClosedJaxpr
    num_consts: int
    num_carry: int
    length: int
    reverse: bool
    unroll: Any


_SCAN_KEYS = ("jaxpr", "num_consts", "num_carry", "length", "reverse", "unroll")


def scan_params(params: dict) -> ScanParams:
    return ScanParams(*(params[key] for key in _SCAN_KEYS))


class WhileParams(NamedTuple):
    """What the while rule reads of a `while` equation."""

    cond: ClosedJaxpr
    body: ClosedJaxpr
    cond_nconsts: int
    body_nconsts: int


_WHILE_KEYS = ("cond_jaxpr", "body_jaxpr", "cond_nconsts", "body_nconsts")


def while_params(params: dict) -> WhileParams:
    return WhileParams(*(params[key] for key in _WHILE_KEYS))


def cond_branches(params: dict) -> Sequence[ClosedJaxpr]:
    """The branches of a `cond` equation, in index order."""
    return params["branches"]


def call_name(params: dict) -> str | None:
    """The name of a `jit` (pjit) equation's function, if it has one."""
    name = params.get("name")
    return None if name is None else str(name)


def dot_dimensions(params: dict) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
    """((lhs contracting, rhs contracting), (lhs batch, rhs batch)) of a `dot_general`."""
    (lc, rc), (lb, rb) = params["dimension_numbers"]
    return (tuple(lc), tuple(rc)), (tuple(lb), tuple(rb))


def with_dot_dimensions(params: dict, numbers: Any) -> dict:
    """The parameters of a `dot_general` with other dimension numbers (as `dot_dimensions`)."""
    return {**params, "dimension_numbers": numbers}


def broadcast_params(params: dict) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(shape, broadcast_dimensions) of a `broadcast_in_dim`."""
    return tuple(params["shape"]), tuple(params["broadcast_dimensions"])


def slice_params(params: dict) -> tuple[Sequence[int], Sequence[int], Sequence[int] | None]:
    """(start_indices, limit_indices, strides or None) of a `slice`."""
    return params["start_indices"], params["limit_indices"], params["strides"]


def reduce_axes(params: dict) -> tuple[int, ...]:
    """The reduced axes of a `reduce_sum` (and the other reductions)."""
    return tuple(params["axes"])


def reshape_params(params: dict) -> tuple[tuple[int, ...], Any]:
    """(new_sizes, dimensions) of a `reshape` (dimensions: None or a permutation)."""
    return tuple(params["new_sizes"]), params["dimensions"]


def stack_primitive() -> Primitive | None:
    """The primitive `jnp.stack` binds (jax 0.10 has one, not exported by `jax.extend`), or None
    where `jnp.stack` is a concatenation of reshapes (jax 0.9)."""
    import jax
    import jax.numpy as jnp

    eqns = jax.make_jaxpr(lambda a: jnp.stack([a, a]))(jax.ShapeDtypeStruct((1,), jnp.float32))
    primitive = eqns.jaxpr.eqns[-1].primitive
    return primitive if primitive.name == "stack" else None
