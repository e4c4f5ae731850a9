"""Shared building blocks: dense layers and LayerNorm as (init, apply) over plain dict pytrees."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def init_dense(key: jax.Array, n_in: int, n_out: int, *, dtype, bias: bool = True) -> dict:
    """A dense layer with LeCun-normal weights (std 1/sqrt(n_in)) and zero bias.

    Returns:
        {"w": (n_in, n_out)} plus {"b": (n_out,)} when `bias`.
    """
    params = {"w": jax.random.normal(key, (n_in, n_out), dtype) * n_in**-0.5}
    if bias:
        params["b"] = jnp.zeros((n_out,), dtype)
    return params


def dense(params: dict, x: jax.Array) -> jax.Array:
    """x @ w (+ b) over the last axis; x of shape (..., n_in) -> (..., n_out)."""
    y = x @ params["w"]
    if "b" in params:
        y = y + jnp.expand_dims(params["b"], tuple(range(y.ndim - 1)))
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
