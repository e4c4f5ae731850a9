"""Checkpoint guarantees: exact round trip, plain-h5py layout, checksums, atomic under SIGKILL."""

import dataclasses
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import NamedTuple

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vmcjet
from vmcjet.checkpoint import (
    FORMAT_VERSION,
    SkippedCheckpointWarning,
    checkpoint_path,
    latest_valid_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_header,
    save_checkpoint,
)
from vmcjet.distributed import make_walker_mesh, walker_sharding
from vmcjet.errors import CheckpointError, InputError, NonFiniteError


class Layer(NamedTuple):
    w: jax.Array
    b: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Sampler:
    walkers: jax.Array
    width: jax.Array
    accepted: int


def make_state(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "params": {
            "layers": [
                Layer(jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), jnp.zeros(4, jnp.float64)),
                Layer(jnp.asarray(rng.normal(size=(4, 2))), jnp.arange(2, dtype=jnp.int32)),
            ],
        },
        "sampler": Sampler(jnp.asarray(rng.normal(size=(8, 2, 3))), jnp.float64(0.3), 17),
        "opt": (np.arange(5, dtype=np.int64), np.float32(1.25)),
        "key": jax.random.key(seed),
    }


def assert_identical(a, b) -> None:
    """Same structure, leaf types, dtypes and bitwise-equal values."""
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        assert type(x) is type(y)
        if hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert jax.random.key_impl(x) == jax.random.key_impl(y)
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), strict=True)


def test_round_trip_is_exact(tmp_path):
    state = make_state()
    meta = {
        "config": "seed = 3\n[mcmc]\nwidth = 0.2\n",
        "config_hash": "ab12",
        "seed": 3,
        "lr": 0.5,
    }
    path = save_checkpoint(tmp_path, step=42, state=state, metadata=meta)
    assert path == checkpoint_path(tmp_path, 42) and path.name == "ckpt_00000042.h5"
    restored = load_checkpoint(path, like=make_state(seed=1))
    assert (restored.path, restored.step, restored.metadata) == (path, 42, meta)
    assert_identical(restored.state, state)
    header = read_header(path)
    assert header.format_version == FORMAT_VERSION and header.jax_version == jax.__version__


def test_readable_with_plain_h5py(tmp_path):
    state = make_state()
    path = save_checkpoint(tmp_path, step=7, state=state, metadata={"seed": 3})
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(
            f["state/params/layers/0/w"][()], state["params"]["layers"][0].w
        )
        np.testing.assert_array_equal(f["state/sampler/walkers"][()], state["sampler"].walkers)
        assert f["state/sampler/width"][0] == 0.3 and f["state/sampler/width"].attrs["scalar"]
        assert f["state/key"].attrs["prng_impl"] == "threefry2x32"
        assert f.attrs["step"] == 7 and f.attrs["format_version"] == FORMAT_VERSION
        assert f["metadata"].attrs["seed"] == 3
        datasets = []
        f.visititems(lambda _, o: datasets.append(o) if isinstance(o, h5py.Dataset) else None)
        assert len(datasets) == len(jax.tree_util.tree_leaves(state))
        assert all(d.fletcher32 for d in datasets)


def test_restores_onto_template_sharding(tmp_path):
    mesh = make_walker_mesh()
    walkers = jax.device_put(jnp.arange(24.0).reshape(8, 3), walker_sharding(mesh))
    path = save_checkpoint(tmp_path, step=1, state={"walkers": walkers})
    restored = load_checkpoint(path, like={"walkers": walkers}).state["walkers"]
    assert restored.sharding.is_equivalent_to(walkers.sharding, 2)
    np.testing.assert_array_equal(restored, walkers)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ({"a": np.zeros(3), "b": np.zeros(2), "c": np.zeros(1)}, "no dataset state/c"),
        ({"a": np.zeros(3)}, "datasets the state lacks: state/b"),
        (
            {"a": np.zeros(4), "b": np.zeros(2)},
            "state/a is float64[3], the state expects float64[4]",
        ),
        ({"a": np.zeros(3, np.float32), "b": np.zeros(2)}, "expects float32[3]"),
    ],
)
def test_template_mismatch_names_the_dataset(tmp_path, template, message):
    path = save_checkpoint(tmp_path, step=1, state={"a": np.ones(3), "b": np.ones(2)})
    with pytest.raises(CheckpointError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_checkpoint(path, like=template)


def test_wrong_format_version_is_rejected(tmp_path):
    path = save_checkpoint(tmp_path, step=1, state={"a": np.ones(3)})
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(
        CheckpointError, match=f"format version 99.*format version {FORMAT_VERSION}"
    ):
        load_checkpoint(path, like={"a": np.ones(3)})


def test_truncated_and_temporary_files_are_skipped(tmp_path):
    like = {"x": np.zeros(1000)}
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step=step, state={"x": np.full(1000, float(step))})
    newest = checkpoint_path(tmp_path, 3)
    os.truncate(newest, newest.stat().st_size // 2)
    (tmp_path / ".ckpt_00000004.h5.999.tmp").write_bytes(b"\x89HDF partial")
    assert list_checkpoints(tmp_path) == [checkpoint_path(tmp_path, s) for s in (1, 2, 3)]
    skipped = []
    restored = latest_valid_checkpoint(tmp_path, like=like, report=skipped.append)
    assert restored.step == 2 and np.all(restored.state["x"] == 2.0)
    assert len(skipped) == 1 and skipped[0].startswith("skipping checkpoint ckpt_00000003.h5: ")
    assert "truncated or corrupted" in skipped[0] and "\n" not in skipped[0]
    with pytest.warns(SkippedCheckpointWarning, match="ckpt_00000003.h5"):
        latest_valid_checkpoint(tmp_path, like=like)


def _flip_bytes_in(path: Path, dataset: str) -> None:
    with h5py.File(path, "r") as f:
        offset = f[dataset].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as fh:
        fh.seek(offset + 3)
        byte = fh.read(1)
        fh.seek(offset + 3)
        fh.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("dataset", ["state/x", "state/width"])
def test_corrupted_bytes_are_detected_and_skipped(tmp_path, dataset):
    like = {"x": np.zeros(64), "width": np.float64(0.0)}
    save_checkpoint(tmp_path, step=1, state={"x": np.full(64, 1.0), "width": np.float64(0.1)})
    newest = save_checkpoint(
        tmp_path, step=2, state={"x": np.full(64, 2.0), "width": np.float64(0.2)}
    )
    _flip_bytes_in(newest, dataset)
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(newest, like=like)
    with pytest.warns(SkippedCheckpointWarning):
        assert latest_valid_checkpoint(tmp_path, like=like).step == 1


def test_keeps_the_newest_k_and_removes_stale_temporaries(tmp_path):
    (tmp_path / ".ckpt_00000001.h5.4242.tmp").write_bytes(b"partial")
    for step in range(6):
        save_checkpoint(tmp_path, step=step, state={"x": np.ones(2)}, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt_00000004.h5", "ckpt_00000005.h5"]


@pytest.mark.parametrize(
    "bad", [np.array([1.0, np.nan]), np.array([np.inf]), np.array([1j * np.inf])]
)
def test_non_finite_state_is_refused_and_previous_kept(tmp_path, bad):
    good = save_checkpoint(tmp_path, step=1, state={"x": np.ones(2), "y": np.ones(1)})
    with pytest.raises(NonFiniteError, match="state/y"):
        save_checkpoint(tmp_path, step=2, state={"x": np.ones(2), "y": bad}, keep=1)
    assert sorted(tmp_path.iterdir()) == [good]
    assert latest_valid_checkpoint(tmp_path, like={"x": np.ones(2), "y": np.ones(1)}).step == 1


def test_missing_or_empty_folder_and_bad_arguments(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        latest_valid_checkpoint(tmp_path / "nope", like={})
    with pytest.raises(CheckpointError, match="no checkpoint"):
        latest_valid_checkpoint(tmp_path, like={})
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(checkpoint_path(tmp_path, 5), like={})
    with pytest.raises(InputError, match="step"):
        save_checkpoint(tmp_path, step=-1, state={})
    with pytest.raises(InputError, match="keep"):
        save_checkpoint(tmp_path, step=1, state={}, keep=0)
    with pytest.raises(InputError, match="metadata 'x'"):
        save_checkpoint(tmp_path, step=1, state={}, metadata={"x": [1, 2]})
    with pytest.raises(InputError, match="pytree key"):
        save_checkpoint(tmp_path, step=1, state={"a/b": np.ones(1)})
    save_checkpoint(tmp_path, step=1, state={"a": np.ones(1)})
    with pytest.raises(CheckpointError, match="no valid checkpoint.*ckpt_00000001.h5"):
        latest_valid_checkpoint(tmp_path, like={"b": np.ones(1)}, report=lambda m: None)


LAYERS = 128  # many datasets: most of a save is spent inside HDF5, where a kill does harm

WRITER = """
import sys
import numpy as np
from vmcjet.checkpoint import save_checkpoint

LAYERS = int(sys.argv[3])

def state(step):
    rng = np.random.default_rng(step)
    return {"layers": list(rng.normal(size=(LAYERS, 64, 64))), "step": np.int64(step)}

step = int(sys.argv[2])
while True:
    save_checkpoint(sys.argv[1], step=step, state=state(step), keep=2)
    step += 1
"""


def _wait_for_checkpoint(folder: Path, after: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while not any(int(p.stem[5:]) > after for p in list_checkpoints(folder)):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the writer produced no checkpoint in 60 s"
        time.sleep(0.02)


KILLS = 6


def test_sigkill_during_writes_leaves_only_complete_checkpoints(tmp_path):
    """A writer SIGKILLed at random moments: every final-named file loads and holds its step's
    state, so resuming from the newest is always possible."""
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER))
    folder = tmp_path / "run"
    like = {"layers": [np.zeros((64, 64))] * LAYERS, "step": np.int64(0)}
    rng = random.Random(0)
    env = {**os.environ, "PYTHONPATH": str(Path(vmcjet.__file__).parents[1])}
    newest, caught_mid_write = -1, 0
    for _ in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(folder), str(newest + 1), str(LAYERS)],
            stderr=subprocess.PIPE,
            env=env,
        )
        _wait_for_checkpoint(folder, newest, proc)
        time.sleep(rng.uniform(0.0, 0.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stderr.close()
        caught_mid_write += any(p.suffix == ".tmp" for p in folder.iterdir())
        for path in list_checkpoints(folder):
            restored = load_checkpoint(path, like=like)
            expected = np.random.default_rng(restored.step).normal(size=(LAYERS, 64, 64))
            np.testing.assert_array_equal(np.stack(restored.state["layers"]), expected)
            assert restored.state["step"] == restored.step
        newest = latest_valid_checkpoint(folder, like=like).step
    print(f"kills that interrupted a write: {caught_mid_write} of {KILLS}")


@pytest.mark.parametrize("where", ["config_toml", "created"])
def test_flipped_bytes_in_attributes_are_detected(tmp_path, where):
    """Attribute values (the stored config, the creation time) are not covered by HDF5's
    checksums; the header hash is. Flip one byte inside the attribute's value in the file."""
    marker = "MARKER-" + "x" * 40
    metadata = {"config_toml": marker, "seed": 3}
    path = save_checkpoint(tmp_path, step=1, state={"a": np.ones(3)}, metadata=metadata)
    data = bytearray(path.read_bytes())
    if where == "created":
        with h5py.File(path, "r") as f:
            needle = f.attrs["created"].encode()
    else:
        needle = marker.encode()
    offset = bytes(data).find(needle)
    assert offset >= 0
    data[offset + 3] ^= 0x04
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(path, like={"a": np.ones(3)})
