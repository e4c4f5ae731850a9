"""Psiformer backbone (von Glehn, Spencer, Pfau, ICLR 2023): self-attention over electrons.

Embedding: per electron, x_i = [(r_i - R_I) log(1 + |r_i - R_I|) / |r_i - R_I|,
log(1 + |r_i - R_I|)]_I and its spin (+1 alpha, -1 beta), f n_atoms + 1 inputs (f = 4; f = 1 with
inputs = "distances", which keeps only the log-distances and makes the network rotation invariant),
mapped linearly to the model width D = heads * head_dim. Each of the L layers (pre-LayerNorm):

    h <- h + W_o concat_heads softmax(q k^T / sqrt(head_dim)) v,   q, k, v = LN(h) W_{q,k,v}
    h <- h + tanh(W LN(h) + b)

Parameters: (f n_atoms + 2) D for the embedding, then 5 D^2 + 5 D per layer (two LayerNorms 4 D,
q/k/v/o projections without bias 4 D^2, MLP D^2 + D). The output is h^L, shape (n, D).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vmcjet.config import PsiformerConfig
from vmcjet.networks.features import stack_inputs
from vmcjet.networks.layers import Tape, dense, init_dense, init_layer_norm, layer_norm, scope


def model_width(cfg: PsiformerConfig) -> int:
    return cfg.heads * cfg.head_dim


def init_psiformer(key: jax.Array, cfg: PsiformerConfig, n_inputs: int, *, dtype) -> dict:
    """Parameters: {"embed": dense, "layers": [{"ln_attn", "q", "k", "v", "o", "ln_mlp", "mlp"}]}.

    `n_inputs` = f n_atoms features per electron. The q, k, v, o projections have no bias.
    """
    width = model_width(cfg)
    key_embed, *keys = jax.random.split(key, 1 + cfg.layers)
    layers = []
    for key_l in keys:
        kq, kk, kv, ko, km = jax.random.split(key_l, 5)
        layers.append(
            {
                "ln_attn": init_layer_norm(width, dtype=dtype),
                **{
                    name: init_dense(k, width, width, dtype=dtype, bias=False)
                    for name, k in zip("qkvo", (kq, kk, kv, ko), strict=True)
                },
                "ln_mlp": init_layer_norm(width, dtype=dtype),
                "mlp": init_dense(km, width, width, dtype=dtype),
            }
        )
    return {"embed": init_dense(key_embed, n_inputs + 1, width, dtype=dtype), "layers": layers}


def psiformer_size(cfg: PsiformerConfig, n_inputs: int) -> int:
    """Number of parameters of `init_psiformer`."""
    width = model_width(cfg)
    return (n_inputs + 2) * width + cfg.layers * (5 * width * width + 5 * width)


def _attention(layer: dict, x: jax.Array, heads: int, tape: Tape | None = None) -> jax.Array:
    """Multi-head self-attention over the n electrons; x (n, D) -> (n, D). `tape` is scoped to
    the layer's dict."""
    n, width = x.shape
    q, k, v = (dense(layer[name], x, scope(tape, name)).reshape(n, heads, -1) for name in "qkv")
    scores = jnp.einsum("ihd,jhd->hij", q, k) / np.sqrt(width // heads).item()
    scores = scores - jax.lax.stop_gradient(jnp.max(scores, axis=2, keepdims=True))
    weights = jnp.exp(scores)
    weights = weights / jnp.sum(weights, axis=2, keepdims=True)
    mixed = jnp.einsum("hij,jhd->ihd", weights, v).reshape(n, width)
    return dense(layer["o"], mixed, scope(tape, "o"))


def apply_psiformer(
    params: dict,
    cfg: PsiformerConfig,
    ae: jax.Array,
    r_ae: jax.Array,
    n_alpha: int,
    inputs: str,
    tape: Tape | None = None,
) -> jax.Array:
    """Final electron features.

    Args:
        params: from `init_psiformer`.
        cfg: the sizes (heads are needed to split the width).
        ae: (n, n_atoms, 3) electron-nucleus vectors, bohr.
        r_ae: (n, n_atoms, 1) electron-nucleus distances, bohr.
        n_alpha: number of alpha electrons (the first rows).
        inputs: "vectors" or "distances" (see the module docstring).
        tape: records "embed" and "layers.<l>.{q,k,v,o,mlp}" (see `vmcjet.networks.layers`).

    Returns:
        (n, heads * head_dim) features h^L.
    """
    n = ae.shape[0]
    log_r = jnp.log1p(r_ae)
    spin = np.where(np.arange(n) < n_alpha, 1.0, -1.0)[:, None].astype(ae.dtype)
    x = stack_inputs(ae * (log_r / r_ae), log_r, inputs).reshape(n, -1)
    x = jnp.concatenate([x, spin], axis=1)
    h = dense(params["embed"], x, scope(tape, "embed"))
    for index, layer in enumerate(params["layers"]):
        layer_tape = scope(tape, "layers", index)
        h = h + _attention(layer, layer_norm(layer["ln_attn"], h), cfg.heads, layer_tape)
        mlp = dense(layer["mlp"], layer_norm(layer["ln_mlp"], h), scope(layer_tape, "mlp"))
        h = h + jnp.tanh(mlp)
    return h
