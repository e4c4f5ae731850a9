"""XLA CPU compiler options of the `vmcjet` command (process-wide, set before JAX's backend starts).

jaxlib 0.10's XLA hands reductions, among other operations, to the YNNPACK library ("YNN
fusions", XLA flag `--xla_cpu_experimental_ynn_fusion_type`). For vmcjet's many small reductions
over a walker's electrons, orbitals and determinants this is slower than XLA's own loops: at LiH,
0.10.2's local energy took 1.9x and its whole SPRING step 1.2x the time of jax 0.9.2, and
removing only the reduce type from XLA's list (`=-reduce`) brought both back to 0.9.2's
(docs/reliability.md, "JAX version"; benchmarks/jax_versions.py). Its matrix products stay with
YNNPACK: turning all YNN fusions off made SPRING's update 2x slower.

The flag does not exist before jaxlib 0.10 (XLA aborts on unknown flags), so it is set only from
0.10 on, and never when the user's XLA_FLAGS already names it. Like the allocator settings, only
the `vmcjet` command (and the benchmark scripts) apply it, never an import of the package.
"""

from __future__ import annotations

import os
from importlib.metadata import version

YNN_FUSION_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
KEEP_REDUCTIONS_IN_XLA = f"{YNN_FUSION_FLAG}=-reduce"
FIRST_JAXLIB_WITH_YNN = (0, 10)


def _jaxlib_version() -> tuple[int, ...]:
    return tuple(int(part) for part in version("jaxlib").split(".")[:2] if part.isdigit())


def keep_reductions_in_xla() -> bool:
    """Adds `KEEP_REDUCTIONS_IN_XLA` to XLA_FLAGS for jaxlib >= 0.10. Must run before JAX
    initialises its backend (the first computation).

    Returns:
        True when the flag was added; False for older jaxlib or when XLA_FLAGS names the option.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if _jaxlib_version() < FIRST_JAXLIB_WITH_YNN or YNN_FUSION_FLAG in flags:
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {KEEP_REDUCTIONS_IN_XLA}".strip()
    return True
