"""A run's named random streams.

Every random number of a run derives from `jax.random.key(config.seed)` through
`fold_in(root, STREAMS[name])`; a per-step stream is folded once more with the step index (the
optimisation step t uses `fold_in(train_stream, t)`, its ECP quadrature rotations
`fold_in(ecp_stream, t)`). Nothing depends on the device count or on how many steps ran in this
process, so restarts are exact.
"""

from __future__ import annotations

import jax

STREAMS = {
    "params": 1,
    "pretrain": 2,
    "walkers": 3,
    "burn_in": 4,
    "train": 5,
    "eval": 6,
    "ecp": 7,  # rotations of the ECP quadrature grids in training (vmcjet.ecp)
    "eval_ecp": 8,  # the same in eval
}


def stream_key(root: jax.Array, name: str) -> jax.Array:
    """The key of one named random stream of a run."""
    return jax.random.fold_in(root, STREAMS[name])
