"""Optimisers of the VMC energy: SPRING (default) and Adam, as pure (init, update) pairs.

See `vmcjet.optim.gradient` for the update signature shared by both.
"""

from vmcjet.config import OptimConfig
from vmcjet.errors import InputError
from vmcjet.optim.gradient import (
    Optimiser,
    adam,
    clip_local_energies,
    energy_gradient,
    energy_gradient_residuals,
    standard_promotion,
)
from vmcjet.optim.spring import SpringState, spring

OPTIMISERS = ("spring", "adam")


def make_optimiser(config: OptimConfig) -> Optimiser:
    """The optimiser named by `config.optimizer`, with its hyper-parameters from `config`.

    Raises:
        InputError: for an unknown optimiser name.
    """
    if config.optimizer == "spring":
        return spring(
            config.lr,
            decay=config.lr_decay,
            damping=config.damping,
            momentum=config.momentum,
            max_norm=config.max_norm,
        )
    if config.optimizer == "adam":
        return adam(config.lr, decay=config.lr_decay)
    choices = ", ".join(OPTIMISERS)
    raise InputError(f"unknown optimizer '{config.optimizer}'; choose one of {choices}")


__all__ = [
    "OPTIMISERS",
    "Optimiser",
    "SpringState",
    "adam",
    "clip_local_energies",
    "energy_gradient",
    "energy_gradient_residuals",
    "make_optimiser",
    "spring",
    "standard_promotion",
]
