"""Every JAX-internal name the Laplacian engine touches, in one place.

The engine interprets jaxprs, so it depends on the jaxpr data structures and on primitive objects.
Those are reached through `jax.extend` (the steadier surface); the tested JAX range is pinned in
`pyproject.toml`. If a JAX upgrade breaks the engine, this is the file to fix.
"""

from collections.abc import Sequence
from typing import Any

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
