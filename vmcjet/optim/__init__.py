"""Optimisers of the VMC energy: SPRING (default), KFAC and Adam, as pure `Optimiser`s.

See `vmcjet.optim.gradient` for the update signature (a `GradientBatch`) they share.
"""

from vmcjet.config import OPTIMIZERS, OptimConfig
from vmcjet.errors import InputError
from vmcjet.optim.gradient import (
    GRADIENT,
    LAYERS,
    PER_WALKER_GRADS,
    GradientBatch,
    LayerRecords,
    Optimiser,
    adam,
    batch_gradient,
    clip_local_energies,
    energy_gradient,
    energy_gradient_residuals,
    records_gradient,
    standard_promotion,
)
from vmcjet.optim.kfac import KfacState, kfac
from vmcjet.optim.spring import SpringState, spring


def make_optimiser(config: OptimConfig) -> Optimiser:
    """The optimiser named by `config.optimizer`, with its hyper-parameters from `config`.

    Raises:
        InputError: for an unknown optimiser name.
    """
    drop = (config.lr_drop_step, config.lr_drop_factor)
    if config.optimizer == "spring":
        return spring(
            config.lr,
            decay=config.lr_decay,
            drop=drop,
            damping=config.damping,
            momentum=config.momentum,
            max_norm=config.max_norm,
            kernel_dtype=config.kernel_dtype,
        )
    if config.optimizer == "adam":
        return adam(config.lr, decay=config.lr_decay, drop=drop)
    if config.optimizer == "kfac":
        settings = config.kfac
        return kfac(
            settings.lr,
            decay=settings.lr_decay,
            drop=drop,
            damping=settings.damping,
            ema_decay=settings.decay,
            inverse_period=settings.inverse_period,
            max_norm=settings.max_norm,
            centred=settings.centred,
            sharing=settings.sharing,
        )
    choices = ", ".join(OPTIMIZERS)
    raise InputError(f"unknown optimizer '{config.optimizer}'; choose one of {choices}")


__all__ = [
    "GRADIENT",
    "LAYERS",
    "OPTIMIZERS",
    "PER_WALKER_GRADS",
    "GradientBatch",
    "KfacState",
    "LayerRecords",
    "Optimiser",
    "SpringState",
    "adam",
    "batch_gradient",
    "clip_local_energies",
    "energy_gradient",
    "energy_gradient_residuals",
    "records_gradient",
    "kfac",
    "make_optimiser",
    "spring",
    "standard_promotion",
]
