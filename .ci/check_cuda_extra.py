"""The `cuda12` extra resolves against the supported JAX range, by pip's resolver, without
installing anything (`pip install --dry-run --report`: package metadata only, no GPU wheels).

Skipped, saying so, when the package index does not list the CUDA plugin (or cannot be asked).
Exit status 1 when pip cannot resolve the extra or resolves a plugin whose version is not that of
the jaxlib it resolves (jax's extra pins the plugin to jaxlib's version).
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

PIP = [sys.executable, "-m", "pip"]
PLUGIN = "jax-cuda12-plugin"


def main() -> int:
    listed = subprocess.run([*PIP, "index", "versions", PLUGIN], capture_output=True, text=True)
    if listed.returncode != 0:
        reason = listed.stderr.strip().splitlines()[-1:] or ["no output"]
        print(f"cuda12 extra: skipped, the package index does not list {PLUGIN} ({reason[0]})")
        return 0
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        command = [*PIP, "install", "--dry-run", "--ignore-installed", "--quiet"]
        resolved = subprocess.run(
            [*command, "--report", str(report), ".[cuda12]"], capture_output=True, text=True
        )
        if resolved.returncode != 0:
            print(f"cuda12 extra: pip cannot resolve it:\n{resolved.stderr}")
            return 1
        installs = json.loads(report.read_text())["install"]
    versions = {item["metadata"]["name"]: item["metadata"]["version"] for item in installs}
    jax, jaxlib, plugin = versions.get("jax"), versions.get("jaxlib"), versions.get(PLUGIN)
    if plugin is None or plugin != jaxlib:
        print(f"cuda12 extra: resolved jax {jax}, jaxlib {jaxlib} with {PLUGIN} {plugin}")
        return 1
    print(f"cuda12 extra: resolves to jax {jax}, jaxlib {jaxlib}, {PLUGIN} {plugin}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
