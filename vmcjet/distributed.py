"""Devices and processes: the walker mesh, walker sharding, and multi-process start-up.

Walkers are split along their leading (batch) axis over a 1-D mesh of every device of every
process, named `WALKER_AXIS`; parameters and optimiser state are replicated. The mesh uses
`AxisType.Auto`, so plain `jax.jit` with `NamedSharding` in- and out-shardings works (newer jax
makes `jax.make_mesh` default to explicit axis types, which need sharding-in-types code).

Multi-process runs (one process per GPU or per host) start with `initialize_distributed()`, which
calls `jax.distributed.initialize` when either

- `JAX_COORDINATOR_ADDRESS` (host:port of process 0), `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`
  are all set (any launcher; `launch_local_processes` does this for processes on one machine), or
- the process runs as one of several SLURM tasks (`srun`, `SLURM_NTASKS` > 1): jax then reads the
  coordinator (first node of the step), process count and id from SLURM, and gives each task the
  GPU numbered by `SLURM_LOCALID`.

On CPU the processes communicate through gloo collectives (`jax_cpu_collectives_implementation`,
also settable as the environment variable `JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo`).
Every process runs the same program; collectives (jitted steps, `gather_to_host`) must be called
by all of them in the same order.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from vmcjet.errors import InputError

WALKER_AXIS = "walkers"
SAMPLER_FIELD = "sampler"  # the run-state field whose arrays of rank >= 1 are per-walker
_PROCESS_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def _env_int(name: str) -> int:
    text = os.environ[name]
    try:
        return int(text)
    except ValueError:
        raise InputError(
            f"{name}={text!r} is not an integer; set it to a process count/id"
        ) from None


def initialize_distributed() -> bool:
    """Joins a multi-process run if the environment describes one (see the module docstring).

    Returns:
      True if this process is part of a multi-process run (jax.distributed is initialised),
      False for a plain single-process run.
    """
    if jax.distributed.is_initialized():
        return True
    present = [name for name in _PROCESS_ENV if name in os.environ]
    if present and len(present) < len(_PROCESS_ENV):
        missing = ", ".join(sorted(set(_PROCESS_ENV) - set(present)))
        raise InputError(f"multi-process environment is incomplete: also set {missing}")
    if present:
        jax.distributed.initialize(
            coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
            num_processes=_env_int("JAX_NUM_PROCESSES"),
            process_id=_env_int("JAX_PROCESS_ID"),
        )
        return True
    if "SLURM_JOB_ID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        jax.distributed.initialize()
        return True
    return False


def make_walker_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named `WALKER_AXIS` over `devices` (default: all devices of all processes)."""
    devices = list(jax.devices() if devices is None else devices)
    return jax.make_mesh((len(devices),), (WALKER_AXIS,), (AxisType.Auto,), devices=devices)


def walker_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (walker) axis split over the mesh, other axes whole."""
    return NamedSharding(mesh, PartitionSpec(WALKER_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """A full copy on every device (parameters, optimiser state, keys, scalars)."""
    return NamedSharding(mesh, PartitionSpec())


def check_batch_size(batch: int, n_devices: int) -> None:
    """Raises InputError unless `batch` walkers split evenly over `n_devices` devices."""
    if batch <= 0:
        raise InputError(f"batch size must be positive, got {batch}; set batch_size=256 or similar")
    if batch % n_devices:
        fix = -(-batch // n_devices) * n_devices
        raise InputError(
            f"batch size {batch} is not divisible by the {n_devices} devices; "
            f"use a multiple of {n_devices}, e.g. --set batch_size={fix}"
        )


def _put(leaf: Any, sharding: NamedSharding) -> jax.Array:
    """`leaf` (the same global value on every process) as a jax array with `sharding`."""
    if jax.process_count() == 1:
        return jax.device_put(leaf, sharding)
    if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
        data = _put(jax.random.key_data(leaf), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
    host = np.asarray(leaf)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def shard_walkers(tree: Any, mesh: Mesh) -> Any:
    """Splits the leading axis of every array in `tree` over the mesh.

    Args:
      tree: arrays with a common leading walker axis, e.g. electrons (B, n, 3) bohr. In a
        multi-process run every process must pass the same (global) values; for walkers that
        each process holds only locally, use `global_walkers_from_local`.
      mesh: the walker mesh.

    Raises:
      InputError: B is not divisible by the number of devices in the mesh.
    """
    sharding = walker_sharding(mesh)

    def put(leaf: Any) -> jax.Array:
        check_batch_size(leaf.shape[0], mesh.size)
        return _put(leaf, sharding)

    return jax.tree_util.tree_map(put, tree)


def _is_per_walker(path: tuple, leaf: Any) -> bool:
    names = {str(getattr(entry, "name", getattr(entry, "key", ""))) for entry in path}
    return SAMPLER_FIELD in names and np.ndim(leaf) >= 1


def place_state(state: Any, mesh: Mesh) -> Any:
    """Places a run state: per-walker arrays sharded over the mesh, everything else replicated.

    Per-walker arrays are the arrays of rank >= 1 inside the field named `SAMPLER_FIELD`
    (for `mcmc.McmcState`: walkers (B, n, 3) bohr and log|psi| (B,)); parameters, optimiser
    state, the step and scalar sampler values (width, acceptance) are replicated. In a
    multi-process run every process must pass the same (global) state, e.g. a checkpoint.
    """
    walkers, replicated = walker_sharding(mesh), replicated_sharding(mesh)

    def put(path: tuple, leaf: Any) -> jax.Array:
        if _is_per_walker(path, leaf):
            check_batch_size(np.shape(leaf)[0], mesh.size)
            return _put(leaf, walkers)
        return _put(leaf, replicated)

    return jax.tree_util.tree_map_with_path(put, state)


def global_walkers_from_local(tree: Any, mesh: Mesh) -> Any:
    """Builds global walker arrays from the equally sized local batches of each process.

    Process p's walkers become rows [p * b, (p + 1) * b) of the global batch of
    b * process_count walkers (the mesh orders devices by process).

    Args:
      tree: arrays with a local leading walker axis b, divisible by the local device count.
      mesh: the walker mesh over all processes' devices.
    """
    sharding = walker_sharding(mesh)
    n_local = len(mesh.local_devices)

    def put(leaf: Any) -> jax.Array:
        check_batch_size(leaf.shape[0], n_local)
        shape = (leaf.shape[0] * jax.process_count(), *leaf.shape[1:])
        return jax.make_array_from_process_local_data(sharding, np.asarray(leaf), shape)

    return jax.tree_util.tree_map(put, tree)


def gather_to_host(tree: Any) -> Any:
    """Copies every array of `tree` to host memory as its full (global) value.

    Arrays spread over several processes are all-gathered, so every process must call this
    together; arrays this process holds entirely are simply fetched. PRNG key arrays come back
    as single-device key arrays.
    """

    def fetch(leaf: Any) -> Any:
        if not isinstance(leaf, jax.Array) or leaf.is_fully_addressable:
            return jax.device_get(leaf)
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = multihost_utils.process_allgather(jax.random.key_data(leaf), tiled=True)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        return multihost_utils.process_allgather(leaf, tiled=True)

    return jax.tree_util.tree_map(fetch, tree)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _process_env(base: Mapping[str, str], rank: int, n: int, port: int, devices: int) -> dict:
    package_root = str(Path(__file__).resolve().parents[1])
    python_path = os.pathsep.join(filter(None, [package_root, base.get("PYTHONPATH")]))
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", base.get("XLA_FLAGS", ""))
    return {
        **base,
        "PYTHONPATH": python_path,
        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
        "JAX_COORDINATOR_BIND_ADDRESS": f"127.0.0.1:{port}",
        "JAX_NUM_PROCESSES": str(n),
        "JAX_PROCESS_ID": str(rank),
        "JAX_PLATFORMS": "cpu",
        "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo",
        "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={devices}".strip(),
    }


def _read_back(handle: Any) -> str:
    handle.seek(0)
    return handle.read()


def _wait_all(procs: list[subprocess.Popen], timeout: float, logs: list) -> None:
    """Waits for every process; on timeout kills them all and raises with their stderr tails."""
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
    except subprocess.TimeoutExpired:
        tails = " | ".join(_read_back(err)[-300:].replace("\n", " ") for _, err in logs)
        raise TimeoutError(
            f"{len(procs)} processes did not finish in {timeout} s: {tails}"
        ) from None
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def launch_local_processes(
    args: Sequence[str],
    *,
    n_processes: int = 2,
    devices_per_process: int = 1,
    timeout: float = 300.0,
    env: Mapping[str, str] | None = None,
) -> list[subprocess.CompletedProcess]:
    """Runs `python *args` as `n_processes` CPU processes of one jax.distributed run on 127.0.0.1.

    Each process gets the environment `initialize_distributed` reads (coordinator on a free
    loopback port, its process id), this vmcjet on its PYTHONPATH, and `devices_per_process`
    fake CPU devices, e.g. `launch_local_processes(["-m", "vmcjet", "run", ...])`.

    Returns:
      One CompletedProcess per process id, with its exit status and text output.

    Raises:
      TimeoutError: the processes did not all finish within `timeout` seconds (all are killed).
    """
    base = dict(os.environ if env is None else env)
    port = _free_port()
    with contextlib.ExitStack() as stack:
        logs = [
            (
                stack.enter_context(tempfile.TemporaryFile("w+")),
                stack.enter_context(tempfile.TemporaryFile("w+")),
            )
            for _ in range(n_processes)
        ]
        procs = [
            subprocess.Popen(
                [sys.executable, *args],
                env=_process_env(base, rank, n_processes, port, devices_per_process),
                stdout=out,
                stderr=err,
            )
            for rank, (out, err) in enumerate(logs)
        ]
        _wait_all(procs, timeout, logs)
        return [
            subprocess.CompletedProcess(
                proc.args, proc.returncode, _read_back(out), _read_back(err)
            )
            for proc, (out, err) in zip(procs, logs, strict=True)
        ]
