"""Shared building blocks: dense layers and LayerNorm as (init, apply) over plain dict pytrees.

Layer records (for KFAC). A `Tape` is an explicit recorder handed down one call of a network's
apply (never global state): each dense layer called with a tape records its input rows a (with a
trailing 1 when it has a bias) under its name, the key path of its parameter dict in the params
pytree ("backbone.0.one", as `jax.tree_util.keystr(path, simple=True, separator=".")` spells it),
and adds the tape's tap for that name, a zero array shaped like its output, to its output y.
The cotangent of a tap in a backward pass of log|psi| is then g = d log|psi| / d y, so one
`jax.vjp` with respect to the taps returns every layer's g, and the recorded inputs come back as
its auxiliary output; per layer d log|psi| / d [w; b] = sum_rows a g^T. `scope(tape, *keys)`
extends the name as the call descends the params pytree. Without a tape (the default) every
function here computes exactly what it did before: no taps, no records, no extra primitives.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


class Tape:
    """Records dense-layer inputs and adds taps to their outputs, during ONE call of apply.

    Attributes:
        name: the key path of the parameter dict reached so far ("" at the root).
        taps: {name: zero array shaped like the layer's output} added to the outputs, or None to
            add nothing (a shape pass: the outputs are recorded in `outputs` instead).
        inputs: {name: (rows, n_in (+1))} the recorded inputs, leading axes flattened into rows,
            with a trailing column of ones for layers with a bias. Shared by all scopes.
        outputs: {name: (..., n_out)} the layer outputs, filled only when `taps` is None.
    """

    def __init__(self, taps: dict[str, jax.Array] | None = None, name: str = "", records=None):
        self.name = name
        self.taps = taps
        self.inputs, self.outputs = records if records is not None else ({}, {})

    def tag(self, x: jax.Array, y: jax.Array, *, bias: bool) -> jax.Array:
        """Records input x (..., n_in) of the layer named `self.name`; returns its output y
        (..., n_out) plus the layer's tap."""
        if self.name in self.inputs:
            raise ValueError(f"dense layer '{self.name}' tagged twice in one call")
        rows = x.reshape(-1, x.shape[-1])
        if bias:
            rows = jnp.concatenate([rows, jnp.ones((rows.shape[0], 1), rows.dtype)], axis=1)
        self.inputs[self.name] = rows
        if self.taps is None:
            self.outputs[self.name] = y
            return y
        return y + self.taps[self.name]


def scope(tape: Tape | None, *keys: Any) -> Tape | None:
    """The tape one level down the params pytree (keys: dict keys or list indices); None stays
    None."""
    if tape is None:
        return None
    name = ".".join([tape.name, *map(str, keys)] if tape.name else map(str, keys))
    return Tape(tape.taps, name, (tape.inputs, tape.outputs))


def named_leaves(tree: Any) -> dict[str, Any]:
    """{key path: leaf} of a pytree, paths spelled like the tape's names ("backbone.0.one.w")."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path, simple=True, separator="."): leaf for path, leaf in flat}


def dense_layer_names(params: Any) -> list[str]:
    """Names of the dense layers in a params pytree: the dicts holding a 2-D "w" (and maybe "b")
    — the layers a `Tape` records when apply is called with one."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    names = []
    for path, leaf in flat:
        key = getattr(path[-1], "key", None)
        if key == "w" and leaf.ndim == 2:
            names.append(jax.tree_util.keystr(path[:-1], simple=True, separator="."))
    return names


def init_dense(key: jax.Array, n_in: int, n_out: int, *, dtype, bias: bool = True) -> dict:
    """A dense layer with LeCun-normal weights (std 1/sqrt(n_in)) and zero bias.

    Returns:
        {"w": (n_in, n_out)} plus {"b": (n_out,)} when `bias`.
    """
    params = {"w": jax.random.normal(key, (n_in, n_out), dtype) * n_in**-0.5}
    if bias:
        params["b"] = jnp.zeros((n_out,), dtype)
    return params


def dense(params: dict, x: jax.Array, tape: Tape | None = None) -> jax.Array:
    """x @ w (+ b) over the last axis; x of shape (..., n_in) -> (..., n_out).

    With a `tape` (scoped to this layer's name) the input is recorded and the tap added.
    """
    y = x @ params["w"]
    if "b" in params:
        y = y + jnp.expand_dims(params["b"], tuple(range(y.ndim - 1)))
    if tape is not None:
        y = tape.tag(x, y, bias="b" in params)
    return y


def dense_size(n_in: int, n_out: int, *, bias: bool = True) -> int:
    """Number of parameters of `init_dense(n_in, n_out, bias=bias)`."""
    return n_in * n_out + (n_out if bias else 0)


def init_layer_norm(width: int, *, dtype) -> dict:
    """LayerNorm with unit scale and zero offset: {"scale": (width,), "offset": (width,)}."""
    return {"scale": jnp.ones((width,), dtype), "offset": jnp.zeros((width,), dtype)}


def layer_norm(params: dict, x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Normalises x (..., width) over its last axis to zero mean and unit variance, then scales."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    centred = x - mean
    var = jnp.mean(centred * centred, axis=-1, keepdims=True)
    lead = tuple(range(x.ndim - 1))
    scale = jnp.expand_dims(params["scale"], lead)
    offset = jnp.expand_dims(params["offset"], lead)
    return centred / jnp.sqrt(var + eps) * scale + offset
