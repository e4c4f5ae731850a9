"""What a run needs before its first step: devices, the wavefunction, keys and the initial state.

Random streams: `vmcjet.streams` (`STREAMS`, `stream_key`, re-exported here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from vmcjet import checkpoint, distributed, hartree_fock, mcmc, optim, pretrain
from vmcjet.config import Config
from vmcjet.errors import InputError
from vmcjet.log_psi_gradients import log_abs_psi_fn
from vmcjet.molecule import Molecule, load_molecule
from vmcjet.networks import Wavefunction, make_wavefunction, parameter_count
from vmcjet.step_parts import make_sampler
from vmcjet.streams import STREAMS as STREAMS  # re-exported: session.STREAMS
from vmcjet.streams import stream_key
from vmcjet.train import TrainState, make_train_step


def run_molecule(config: Config) -> Molecule:
    """The molecule a config describes (`system.molecule` with its charge/spin overrides)."""
    system = config.system
    return load_molecule(system.molecule, charge=system.charge, spin=system.spin, ecp=system.ecp)


@dataclass(frozen=True)
class Session:
    """The fixed context of a run (nothing here changes during it)."""

    config: Config
    molecule: Molecule
    wavefunction: Wavefunction
    mesh: jax.sharding.Mesh
    root_key: jax.Array  # key of the optimisation stream; step t uses fold_in(root_key, t)
    step: Callable[..., Any]  # jitted train step

    @property
    def dtype(self) -> jnp.dtype:
        return jnp.dtype(self.config.precision)

    def place(self, state: TrainState) -> TrainState:
        """Puts walkers (and their per-walker values) sharded over devices, the rest replicated."""
        return distributed.place_state(state, self.mesh)

    def metadata(self) -> dict[str, Any]:
        return {
            "seed": self.config.seed,
            "molecule": self.molecule.name,
            "electrons": self.molecule.n_electrons,
            "parameters": parameter_count(self.config.network, self.molecule),
            "devices_in_mesh": int(self.mesh.devices.size),
        }


def open_session(config: Config, molecule: Molecule) -> Session:
    """Sets precision and devices, builds the wavefunction and the jitted step."""
    jax.config.update("jax_enable_x64", config.precision == "float64")
    distributed.initialize_distributed()
    devices = jax.devices()
    if config.devices is not None:
        if config.devices > len(devices):
            raise InputError(
                f"config key 'devices' asks for {config.devices} devices but {len(devices)} exist; "
                f"use --set devices={len(devices)} or fewer"
            )
        devices = devices[: config.devices]
    mesh = distributed.make_walker_mesh(devices)
    distributed.check_batch_size(config.batch_size, mesh.devices.size)
    wavefunction = make_wavefunction(config.network, molecule)
    root = jax.random.key(config.seed)
    step = jax.jit(make_train_step(wavefunction, molecule, config))
    return Session(config, molecule, wavefunction, mesh, stream_key(root, "train"), step)


def initial_state(
    session: Session,
    *,
    log: Callable[[str], None] = print,
    template_only: bool = False,
    batch_size: int | None = None,
) -> TrainState:
    """Parameters (pretrained to Hartree-Fock), walkers after burn-in, optimiser state, step 0.

    With `template_only`, skips pretraining and burn-in: the result only has the right structure
    (the template to restore a checkpoint of `batch_size` walkers, default the config's).
    """
    config = session.config
    root = jax.random.key(config.seed)
    params = session.wavefunction.init(key=stream_key(root, "params"), dtype=session.dtype)
    walkers = _new_walkers(session, batch_size or config.batch_size, stream_key(root, "walkers"))
    if config.pretrain.iterations and not template_only:
        params, walkers = _pretrain(session, params, walkers, stream_key(root, "pretrain"), log)
    state = TrainState(
        params=params,
        opt_state=optim.make_optimiser(config.optim).init(params),
        sampler=_sampler(session, params, walkers),
        step=jnp.zeros((), jnp.int32),
    )
    state = session.place(state)
    return state if template_only else _burn_in(session, state, log)


def fresh_walkers(session: Session, state: TrainState, *, log: Callable[[str], None]) -> TrainState:
    """`state` with new walkers around the nuclei (the config's batch size), after burn-in."""
    key = jax.random.fold_in(stream_key(jax.random.key(session.config.seed), "walkers"), state.step)
    walkers = _new_walkers(session, session.config.batch_size, key)
    state = session.place(state._replace(sampler=_sampler(session, state.params, walkers)))
    return _burn_in(session, state, log)


def restore_state(
    session: Session,
    folder: Path,
    *,
    log: Callable[[str], None],
    batch_size: int | None = None,
) -> tuple[TrainState, Path]:
    """The newest valid checkpoint in `folder` (skipped ones reported to `log`), placed on devices.

    Args:
        batch_size: walkers stored in the checkpoint (default: the config's).
    """
    template = initial_state(session, template_only=True, batch_size=batch_size)
    restored = checkpoint.latest_valid_checkpoint(
        folder, like=distributed.gather_to_host(template), report=log
    )
    return session.place(restored.state), restored.path


def _new_walkers(session: Session, batch_size: int, key: jax.Array) -> jax.Array:
    spread = session.config.mcmc.init_spread
    walkers = mcmc.init_walkers(session.molecule, batch_size, key=key, spread=spread)
    return walkers.astype(session.dtype)


def _sampler(session: Session, params: Any, walkers: jax.Array) -> mcmc.McmcState:
    log_psi = log_abs_psi_fn(session.wavefunction)
    return mcmc.init_state(log_psi, params, walkers, width=session.config.mcmc.width)


def _pretrain(
    session: Session, params: Any, walkers: jax.Array, key: jax.Array, log: Callable[[str], None]
) -> tuple[Any, jax.Array]:
    """Hartree-Fock, then pretraining until `pretrain.iterations` or the loss stops improving."""
    config, options = session.config, session.config.pretrain
    hf = hartree_fock.run_hartree_fock(
        session.molecule, basis=config.system.basis, method=config.system.hf
    )
    basis = hartree_fock.basis_label(session.molecule, config.system.basis)
    warning = hartree_fock.convergence_warning(hf, basis)
    if warning:
        log(warning)
    log(
        f"Hartree-Fock ({hf.method.upper()}, {basis}): E = {hf.energy:.6f} Ha; pretraining "
        f"up to {options.iterations} iterations"
    )
    steps = pretrain.pretrain(
        session.wavefunction, hf, params, walkers, key=key, config=options, width=config.mcmc.width
    )
    report_every = max(1, options.iterations // 4)
    losses: list[jax.Array] = []
    for iteration, new_params, new_walkers, loss in steps:
        params, walkers = new_params, new_walkers
        losses.append(loss)
        if (iteration + 1) % report_every == 0:
            log(f"pretraining {iteration + 1}/{options.iterations}: loss {float(loss):.3e}")
        if pretrain.should_stop(
            losses, window=options.window, tolerance=options.tolerance, patience=options.patience
        ):
            break
    reason = "the loss stopped improving" if len(losses) < options.iterations else "the maximum"
    log(f"pretraining: {len(losses)} iterations ran ({reason}), loss {float(losses[-1]):.3e}")
    return params, walkers


def _burn_in(session: Session, state: TrainState, log: Callable[[str], None]) -> TrainState:
    """`mcmc.burn_in` Metropolis moves (keys from the burn-in stream and the step)."""
    config = session.config.mcmc
    if not config.burn_in:
        return state
    root = stream_key(jax.random.key(session.config.seed), "burn_in")
    key = jax.random.fold_in(root, state.step)
    sample = jax.jit(make_sampler(session.wavefunction, session.molecule, session.config))
    sampler = state.sampler
    for i in range(max(1, config.burn_in // config.moves)):
        sampler, acceptance = sample(state.params, sampler, key=jax.random.fold_in(key, i))
    log(
        f"burn-in: {config.burn_in} moves, acceptance {float(acceptance):.2f}, "
        f"width {float(sampler.width):.3f} bohr"
    )
    return state._replace(sampler=sampler)
