"""What a run or a benchmark ran on: versions, devices, processes and the process-wide settings.

`environment_info()` is the one description, shown by `vmcjet info`, written into each run
folder's metadata.json and into every benchmark record. Versions of installed packages come from
their distribution metadata (`importlib.metadata`), so a CUDA plugin is reported without being
imported.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
from typing import Any

import jax

import vmcjet
from vmcjet.allocator import freed_memory_retained
from vmcjet.blas_threads import blas_threads, blas_threads_limited
from vmcjet.config import Config

# Name prefixes of JAX's GPU plugin distributions.
_PLUGIN_PREFIXES = ("jax-cuda", "jax_cuda", "jax-rocm", "jax_rocm")


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _gpu_plugins() -> dict[str, str]:
    """Installed JAX GPU plugin distributions (e.g. jax-cuda12-plugin) and their versions."""
    names = {
        dist.metadata["Name"]
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"] and dist.metadata["Name"].lower().startswith(_PLUGIN_PREFIXES)
    }
    return {name: importlib.metadata.version(name) for name in sorted(names)}


def environment_info() -> dict[str, Any]:
    """Versions, devices, processes and settings of this process (JSON-serialisable).

    Keys: vmcjet_version, python_version, platform, cpu_count, jax_version, jaxlib_version,
    gpu_plugins, backend, gpu_used, devices, local_devices, process_index, process_count,
    x64_enabled, float_precision_default, matmul_precision_default, jax_default_matmul_precision,
    async_dispatch, freed_memory_retained, blas_threads, blas_threads_limited, xla_flags.
    """
    import os

    backend = jax.default_backend()
    defaults = Config()
    return {
        "vmcjet_version": vmcjet.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "jax_version": jax.__version__,
        "jaxlib_version": _version("jaxlib"),
        "gpu_plugins": _gpu_plugins(),
        "backend": backend,
        "gpu_used": backend in ("gpu", "cuda", "rocm"),
        "devices": [str(device) for device in jax.devices()],
        "local_devices": jax.local_device_count(),
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "x64_enabled": bool(jax.config.values["jax_enable_x64"]),
        # the config's defaults (a run's own values are in its config.toml)
        "float_precision_default": defaults.precision,
        "matmul_precision_default": defaults.matmul_precision,
        "jax_default_matmul_precision": jax.config.values["jax_default_matmul_precision"],
        # process-wide settings of the `vmcjet` command (vmcjet.allocator, vmcjet.blas_threads)
        "async_dispatch": bool(jax.config.values["jax_cpu_enable_async_dispatch"]),
        "freed_memory_retained": freed_memory_retained(),
        "blas_threads": blas_threads(),
        "blas_threads_limited": blas_threads_limited(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),  # with vmcjet.xla_cpu's from jaxlib 0.10
    }


def format_info(info: dict[str, Any]) -> str:
    """`key: value` lines (lists and mappings as JSON)."""
    width = max(len(key) for key in info)
    return "\n".join(
        f"{key:<{width}}  {json.dumps(value) if isinstance(value, list | dict) else value}"
        for key, value in info.items()
    )
