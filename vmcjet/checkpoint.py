"""Atomic HDF5 checkpoints of arbitrary pytrees.

A checkpoint `ckpt_<step:08d>.h5` holds one dataset per pytree leaf, named by its key path under
`state/` (e.g. `state/params/layers/0/w`), so it can be read with plain h5py. Layout:

- root attributes: `format_version`, `step`, `vmcjet_version`, `jax_version`, `created` (UTC);
- group `metadata`: one attribute per `metadata` entry (str, int, float or bool), e.g. the resolved
  config as TOML text, its hash and the seed;
- every non-empty dataset is chunked with a fletcher32 checksum, and the file is written with the
  newest HDF5 format (whose object headers carry their own checksums, but attribute values are not
  reliably covered by them); the root attributes and the metadata are covered by the root
  attribute `header_sha256` (SHA-256 of their canonical JSON), checked on every read. A
  0-d leaf is stored with shape (1,) and the attribute `scalar = True` (HDF5 cannot checksum
  scalar datasets); a typed PRNG key array is stored as its raw `jax.random.key_data` (uint32)
  with the attribute `prng_impl` naming the key implementation.

Guarantees (each tested, see docs/reliability.md): atomic (written as `.ckpt_<step>.h5.<pid>.tmp`
in the same folder, fsynced, `os.replace`d, folder fsynced, so a final name is always a complete
file; leftover temporaries are ignored and removed by the next save, one writer per folder);
never a non-finite float leaf (`NonFiniteError`, the previous checkpoint stays); every read
checked (missing, extra or mis-shaped dataset, dtype, format version, truncation, checksum:
`CheckpointError` naming the file and dataset); `latest_valid_checkpoint` skips and reports
unusable files, newest first.

In multi-process runs, gather the state to the host first (`vmcjet.distributed.gather_to_host`)
and let process 0 alone write.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import jax
import jax.numpy as jnp
import numpy as np

from vmcjet.errors import CheckpointError, InputError, NonFiniteError
from vmcjet.fileio import atomic_path

FORMAT_VERSION = 2  # 2: root attributes and metadata covered by `header_sha256`
READABLE_VERSIONS = (1, 2)  # version 1 files are read without the header check
HEADER_HASH = "header_sha256"
STATE_GROUP = "state"
METADATA_GROUP = "metadata"
_NAME = re.compile(r"ckpt_(\d{8,})\.h5")
_TMP_SUFFIX = ".tmp"  # of fileio.atomic_path's temporary files

MetadataValue = str | int | float | bool


class Restored(NamedTuple):
    """A checkpoint read back: its file, step, state (structured like the template) and metadata."""

    path: Path
    step: int
    state: Any
    metadata: dict[str, MetadataValue]


class CheckpointHeader(NamedTuple):
    """The root attributes of a checkpoint (readable without a template)."""

    step: int
    format_version: int
    vmcjet_version: str
    jax_version: str
    metadata: dict[str, MetadataValue]


class SkippedCheckpointWarning(UserWarning):
    """Issued by `latest_valid_checkpoint` for each unusable checkpoint it skips."""


def checkpoint_path(folder: str | os.PathLike, step: int) -> Path:
    """The final file name of the checkpoint of `step` in `folder`."""
    return Path(folder) / f"ckpt_{step:08d}.h5"


def list_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """Checkpoint files (final names only) in `folder`, oldest step first; [] if none."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def _key_name(entry: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(entry, attr):
            name = str(getattr(entry, attr))
            break
    else:
        name = str(entry)
    if not name or "/" in name or name in (".", ".."):
        raise InputError(
            f"pytree key {name!r} cannot be an HDF5 name; rename it (no '/', not empty)"
        )
    return name


def _leaves_by_name(tree: Any) -> tuple[list[tuple[str, Any]], Any]:
    """(dataset name, leaf) pairs in pytree order, and the tree structure."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    named = [("/".join([STATE_GROUP, *map(_key_name, path)]), leaf) for path, leaf in flat]
    names = [n for n, _ in named]
    if len(set(names)) != len(names):
        raise InputError("two pytree leaves map to the same dataset name; make the keys distinct")
    return named, treedef


def _is_key(leaf: Any) -> bool:
    return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _to_host(name: str, leaf: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """A leaf as a numpy array plus the dataset attributes needed to restore it."""
    attrs: dict[str, Any] = {}
    if _is_key(leaf):
        attrs["prng_impl"] = str(jax.random.key_impl(leaf))
        leaf = jax.random.key_data(leaf)
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        raise CheckpointError(
            f"{name} spans several processes; gather it with "
            "vmcjet.distributed.gather_to_host and write from process 0"
        )
    array = np.asarray(leaf)
    if array.dtype.kind not in "biufc":
        raise InputError(f"{name} has dtype {array.dtype}; checkpoints hold numeric arrays only")
    if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        raise NonFiniteError(
            f"refusing to checkpoint: {name} has {bad} non-finite value(s); "
            "the previous checkpoint is kept"
        )
    return array, attrs


def _check_metadata(metadata: Mapping[str, Any]) -> dict[str, MetadataValue]:
    clean: dict[str, MetadataValue] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key or "/" in key:
            raise InputError(f"metadata key {key!r} must be a non-empty str without '/'")
        if isinstance(value, np.generic):
            value = value.item()
        if not isinstance(value, str | int | float | bool):
            raise InputError(
                f"metadata '{key}' is a {type(value).__name__}; use str, int, float or bool"
            )
        clean[key] = value
    return clean


def _write_file(path: Path, step: int, arrays: list, metadata: dict[str, MetadataValue]) -> None:
    import vmcjet

    root = {
        "format_version": FORMAT_VERSION,
        "step": step,
        "vmcjet_version": vmcjet.__version__,
        "jax_version": jax.__version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    # Built in memory, then written with plain file I/O: a full disk is one OSError (errno set)
    # instead of HDF5 errors raised (and printed) while h5py objects are freed.
    image = io.BytesIO()
    with h5py.File(image, "w", libver="latest") as f:
        f.attrs.update(root)
        f.attrs[HEADER_HASH] = header_digest(root, metadata)
        f.create_group(METADATA_GROUP).attrs.update(metadata)
        f.require_group(STATE_GROUP)
        for name, array, attrs in arrays:
            scalar = array.ndim == 0
            data = array.reshape(1) if scalar else array
            dataset = f.create_dataset(name, data=data, fletcher32=data.size > 0)
            dataset.attrs.update(attrs, scalar=scalar)
    with open(path, "wb") as handle:
        handle.write(image.getbuffer())


def header_digest(root: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
    """SHA-256 of the root attributes and the metadata (canonical JSON): attribute values are
    not covered by HDF5's checksums, so a reader recomputes this and compares."""
    text = json.dumps({"root": dict(root), "metadata": dict(metadata)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prune(folder: Path, keep: int) -> None:
    """Deletes all but the `keep` newest checkpoints, and temporary files of killed writers."""
    for path in list_checkpoints(folder)[:-keep]:
        path.unlink(missing_ok=True)
    for path in folder.glob(".ckpt_*" + _TMP_SUFFIX):
        path.unlink(missing_ok=True)


def save_checkpoint(
    folder: str | os.PathLike,
    *,
    step: int,
    state: Any,
    metadata: Mapping[str, Any] | None = None,
    keep: int = 3,
) -> Path:
    """Writes `state` atomically to `folder/ckpt_<step:08d>.h5` and keeps the `keep` newest.

    Args:
      folder: run folder (created if missing).
      step: optimisation step the state belongs to (>= 0).
      state: pytree of numeric arrays (numpy, jax, typed PRNG keys, Python scalars).
      metadata: str -> str/int/float/bool, stored as attributes of the `metadata` group.
      keep: number of checkpoints kept (>= 1); older ones are deleted after a successful write.

    Returns:
      The path of the written checkpoint.

    Raises:
      NonFiniteError: a float leaf holds NaN or infinity (nothing is written).
      InputError: a bad step, keep, metadata entry or leaf type.
    """
    if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
        raise InputError(f"checkpoint step must be an integer >= 0, got {step!r}")
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise InputError(f"checkpoint keep must be an integer >= 1, got {keep!r}")
    clean = _check_metadata(metadata or {})
    named, _ = _leaves_by_name(state)
    arrays = [(name, *_to_host(name, leaf)) for name, leaf in named]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(folder, int(step))
    with atomic_path(final) as tmp:
        _write_file(tmp, int(step), arrays, clean)
        _fsync(tmp)
    _fsync(folder)
    _prune(folder, keep)
    return final


def _python(value: Any) -> MetadataValue:
    if isinstance(value, bytes):
        return value.decode()
    return value.item() if isinstance(value, np.generic) else value


def _header(path: Path, f: h5py.File) -> CheckpointHeader:
    if "format_version" not in f.attrs:
        raise CheckpointError(f"{path} is not a vmcjet checkpoint (no format_version attribute)")
    version = int(f.attrs["format_version"])
    if version not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}; this vmcjet reads format version "
            f"{FORMAT_VERSION} (and the older 1) only (use the vmcjet version that wrote it)"
        )
    meta = {k: _python(v) for k, v in f[METADATA_GROUP].attrs.items()}
    if version >= 2:
        root = {k: _python(f.attrs[k]) for k in _ROOT_KEYS}
        if _python(f.attrs.get(HEADER_HASH, "")) != header_digest(root, meta):
            raise CheckpointError(
                f"{path} is corrupted: its attributes (step, versions, metadata such as the "
                "stored config) do not match their checksum"
            )
    return CheckpointHeader(
        step=int(f.attrs["step"]),
        format_version=version,
        vmcjet_version=str(_python(f.attrs["vmcjet_version"])),
        jax_version=str(_python(f.attrs["jax_version"])),
        metadata=meta,
    )


_ROOT_KEYS = ("format_version", "step", "vmcjet_version", "jax_version", "created")


def _unreadable(path: Path, err: Exception) -> CheckpointError:
    detail = " ".join(str(err).split())
    return CheckpointError(f"{path} is unreadable (truncated or corrupted): {detail}")


def read_header(path: str | os.PathLike) -> CheckpointHeader:
    """Step, versions and metadata of a checkpoint, without reading its arrays."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            return _header(path, f)
    except (OSError, KeyError, ValueError, RuntimeError) as err:
        raise _unreadable(path, err) from err


def _expected(leaf: Any) -> jax.ShapeDtypeStruct:
    """Shape and dtype a template leaf is stored with."""
    if _is_key(leaf):
        return jax.eval_shape(jax.random.key_data, leaf)
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
        return jax.ShapeDtypeStruct(tuple(leaf.shape), np.dtype(leaf.dtype))
    array = np.asarray(leaf)
    return jax.ShapeDtypeStruct(array.shape, array.dtype)


def _read_dataset(path: Path, f: h5py.File, name: str, like: Any) -> tuple[np.ndarray, str]:
    """Reads (and checksums) one dataset and checks it against the template leaf."""
    dataset = f.get(name)
    if not isinstance(dataset, h5py.Dataset):
        raise CheckpointError(f"{path} has no dataset {name}; it was written for another state")
    data = dataset[()]
    if dataset.attrs.get("scalar", False):
        data = data.reshape(())
    want = _expected(like)
    if data.shape != want.shape or data.dtype != want.dtype:
        raise CheckpointError(
            f"{path}: {name} is {data.dtype}{list(data.shape)}, the state expects "
            f"{want.dtype}{list(want.shape)}"
        )
    return data, str(_python(dataset.attrs.get("prng_impl", "")))


def _place(data: np.ndarray, like: Any) -> jax.Array:
    """`data` as a jax array on the template's sharding (each process fills its own shards)."""
    sharding = getattr(like, "sharding", None)
    if sharding is None:
        return jnp.asarray(data)
    return jax.make_array_from_callback(data.shape, sharding, lambda index: data[index])


def _restore(data: np.ndarray, prng_impl: str, like: Any) -> Any:
    """A leaf of the same kind as `like` (jax/numpy array, PRNG key, Python scalar)."""
    if _is_key(like):
        return jax.random.wrap_key_data(_place(data, like), impl=prng_impl or None)
    if isinstance(like, np.ndarray):
        return data
    if isinstance(like, np.generic):
        return data[()]
    if isinstance(like, bool | int | float | complex):
        return type(like)(data.item())
    return _place(data, like)


def _extra_datasets(f: h5py.File, names: set[str]) -> list[str]:
    found: list[str] = []
    f[STATE_GROUP].visititems(
        lambda n, obj: found.append(f"{STATE_GROUP}/{n}") if isinstance(obj, h5py.Dataset) else None
    )
    return sorted(set(found) - names)


def load_checkpoint(path: str | os.PathLike, *, like: Any) -> Restored:
    """Reads a checkpoint into a pytree with the structure, shapes and dtypes of `like`.

    Args:
      path: a checkpoint file.
      like: template pytree (arrays, `jax.ShapeDtypeStruct`s, typed PRNG keys or Python scalars);
        jax leaves with a sharding are restored onto that sharding.

    Raises:
      CheckpointError: unreadable or corrupted file (checksum), wrong format version, or a
        dataset that is missing, extra, or of another shape or dtype (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; list the run folder's ckpt_*.h5")
    named, treedef = _leaves_by_name(like)
    try:
        with h5py.File(path, "r") as f:
            header = _header(path, f)
            extra = _extra_datasets(f, {n for n, _ in named}) if STATE_GROUP in f else []
            if extra:
                raise CheckpointError(f"{path} has datasets the state lacks: {', '.join(extra)}")
            read = [_read_dataset(path, f, name, leaf) for name, leaf in named]
    except (OSError, KeyError, ValueError, RuntimeError) as err:
        raise _unreadable(path, err) from err
    leaves = [
        _restore(data, impl, leaf) for (data, impl), (_, leaf) in zip(read, named, strict=True)
    ]
    state = jax.tree_util.tree_unflatten(treedef, leaves)
    return Restored(path=path, step=header.step, state=state, metadata=header.metadata)


def _warn(message: str) -> None:
    warnings.warn(message, SkippedCheckpointWarning, stacklevel=3)


def latest_valid_checkpoint(
    folder: str | os.PathLike,
    *,
    like: Any,
    report: Callable[[str], None] | None = None,
) -> Restored:
    """The newest checkpoint in `folder` that loads cleanly into `like`.

    Unusable checkpoints (truncated, corrupted, other format or state structure) are skipped,
    newest first; each is reported as one line "skipping checkpoint <name>: <reason>" to
    `report` (default: a `SkippedCheckpointWarning`).

    Raises:
      CheckpointError: the folder is missing, holds no checkpoint, or none is valid (the
        message lists each file and why it was rejected).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist; check the run folder")
    report = report or _warn
    reasons = []
    for path in reversed(list_checkpoints(folder)):
        try:
            return load_checkpoint(path, like=like)
        except CheckpointError as err:
            reason = f"{path.name}: {str(err).replace(str(path), '').lstrip(': ')}"
            reasons.append(reason)
            report(f"skipping checkpoint {reason}")
    if not reasons:
        raise CheckpointError(f"no checkpoint (ckpt_*.h5) in {folder}; start a new run instead")
    raise CheckpointError(f"no valid checkpoint in {folder}: {'; '.join(reasons)}")
