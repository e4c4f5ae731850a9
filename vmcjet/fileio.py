"""Small file helpers shared by the run folder, the config and the molecule readers.

- `read_text`: a text file as str; a missing, unreadable or non-UTF-8 file is an `InputError`.
- `atomic_path`: a temporary path in the same folder to write to, renamed to the final name when
  the writing succeeded (removed when it failed), so a reader never sees half a file.
- `atomic_write_text`: text through `atomic_path`, fsynced before the rename.
- `os_error_message`: one line describing an `OSError` (full disk, read-only filesystem, a file
  where a folder was expected) with the fix; the CLI prints it as `vmcjet: error: ...`.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from vmcjet.errors import InputError

_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
_NOT_A_FOLDER = (errno.ENOTDIR, errno.EEXIST)


def read_text(path: str | os.PathLike, what: str, fix: str) -> str:
    """The UTF-8 text of `path`; problems are an InputError naming `what` and `fix`.

    Args:
        path: the file.
        what: what the file is, e.g. "molecule file" (used in the message).
        fix: what the user should do, e.g. "fix the file".
    """
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(
            f"{what} '{path}' is not UTF-8 text (bad byte at offset {err.start}); {fix}"
        ) from None
    except OSError as err:
        raise InputError(f"cannot read {what} '{path}': {err.strerror or err}; {fix}") from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields `.<name>.<pid>.tmp` next to `path` to write to; renames it to `path` when the block
    ends without an exception, and removes it in any case if it is still there."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path` through a temporary file in the same folder and a rename."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def os_error_message(err: OSError) -> str:
    """One line for an OSError met while reading or writing files, naming the file and the fix."""
    name = f" '{err.filename}'" if err.filename else ""
    reason = err.strerror or str(err) or type(err).__name__
    if err.errno in _FULL:
        fix = "free some space (or raise the file size limit), then run the same command again"
    elif err.errno in _READ_ONLY:
        fix = "choose a writable folder with --out, or fix the permissions"
    elif err.errno in _NOT_A_FOLDER:
        fix = "a file is in the way of a folder; choose another --out"
    else:
        fix = "check the path and the filesystem"
    return " ".join(f"cannot use{name}: {reason}; {fix}".split())
