"""The FermiNet one-electron update against its definition: V f_i + b with f_i concatenated."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vmcjet.networks.ferminet import _one_electron_update


def explicit_update(params, h, g, groups):
    """f_i = [h_i, mean_s h (each s), mean_s g_i. (each s)] built per electron, then V f_i + b."""
    h_means = [jnp.broadcast_to(jnp.mean(h[a:b], axis=0), h.shape) for a, b in groups]
    g_means = [jnp.mean(g[:, a:b], axis=1) for a, b in groups]
    f = jnp.concatenate([h, *h_means, *g_means], axis=1)
    return f @ params["w"] + params["b"][None, :]


@pytest.mark.parametrize("groups", [((0, 3), (3, 5)), ((0, 5),)])
def test_update_equals_concatenated_features(groups):
    n, d1, d2, width = 5, 6, 3, 7
    keys = jax.random.split(jax.random.key(0), 4)
    h = jax.random.normal(keys[0], (n, d1))
    g = jax.random.normal(keys[1], (n, n, d2))
    rows = (1 + len(groups)) * d1 + len(groups) * d2
    params = {
        "w": jax.random.normal(keys[2], (rows, width)),
        "b": jax.random.normal(keys[3], (width,)),
    }
    np.testing.assert_allclose(
        _one_electron_update(params, h, g, groups),
        explicit_update(params, h, g, groups),
        rtol=1e-12,
        atol=1e-12,
    )
