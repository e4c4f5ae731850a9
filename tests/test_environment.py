"""`vmcjet info` and metadata.json describe the same environment: versions, devices, processes,
precision and allocator settings."""

import json

import jax

from vmcjet import cli, runfolder
from vmcjet.environment import environment_info

FIELDS = {
    "vmcjet_version",
    "python_version",
    "platform",
    "cpu_count",
    "jax_version",
    "jaxlib_version",
    "gpu_plugins",
    "backend",
    "gpu_used",
    "devices",
    "local_devices",
    "process_index",
    "process_count",
    "x64_enabled",
    "float_precision_default",
    "matmul_precision_default",
    "jax_default_matmul_precision",
    "async_dispatch",
    "freed_memory_retained",
    "blas_threads",
    "blas_threads_limited",
    "xla_flags",
}


def test_info_json_reports_this_process(capsys):
    assert cli.main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info) == FIELDS
    assert info["jax_version"] == jax.__version__
    assert info["devices"] == [str(d) for d in jax.devices()]
    assert (info["process_count"], info["process_index"]) == (1, 0)
    assert info["backend"] == "cpu" and info["gpu_used"] is False
    assert info["matmul_precision_default"] == "highest"
    assert info["async_dispatch"] is not info["freed_memory_retained"]  # set together


def test_info_lines_name_every_field(capsys):
    assert cli.main(["info"]) == 0
    names = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert names == FIELDS


def test_metadata_json_holds_the_environment(tmp_path):
    runfolder.write_metadata(tmp_path, {"seed": 3})
    metadata = json.loads((tmp_path / runfolder.METADATA_FILE).read_text())
    assert set(metadata) >= FIELDS and metadata["seed"] == 3
    assert {k: metadata[k] for k in ("jax_version", "devices")} == {
        k: environment_info()[k] for k in ("jax_version", "devices")
    }
