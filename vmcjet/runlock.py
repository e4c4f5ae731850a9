"""One writer per run folder: an OS-level lock on `<run>/run.lock`.

`RunLock(folder)` takes `fcntl.flock(LOCK_EX | LOCK_NB)` on the lock file and writes the holder's
host, PID and start time into it (flock itself does not say who holds it). The kernel releases the
lock when the holder's file is closed or the process dies, even by SIGKILL, so a stale lock is
never left behind; the text in the file is then only a note of the last holder.

A folder locked by a live process is an `InputError` naming the holder. On a filesystem that does
not support flock (some network filesystems: Lustre without `-o flock`, NFS without a lock
service), taking the lock fails with ENOLCK/EOPNOTSUPP; the run then goes on unlocked and says so
in one log line (see docs/reliability.md).
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmcjet.errors import InputError

LOCK_FILE = "run.lock"
_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def holder_text() -> str:
    """What the holder writes into the lock file: host, PID and start time."""
    started = datetime.datetime.now().isoformat(timespec="seconds")
    return f"host={socket.gethostname()} pid={os.getpid()} started={started}\n"


def read_holder(path: Path) -> str:
    """The holder note of a lock file (one line, printable), or 'unknown'."""
    try:
        text = path.read_bytes()[:200].decode("utf-8", errors="replace")
    except OSError:
        return "unknown"
    line = " ".join("".join(c for c in text if c.isprintable() or c.isspace()).split())
    return line or "unknown"


class RunLock:
    """Context manager holding the exclusive lock of a run folder.

    Args:
        folder: the run folder (must exist).
        log: receives one line when the filesystem cannot lock (the run goes on unlocked).

    Raises:
        InputError: another live process holds the lock (the message names its host and PID).
    """

    def __init__(self, folder: Path, *, log: Callable[[str], None] = print):
        self.path = Path(folder) / LOCK_FILE
        self._log = log
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InputError(
                f"run folder '{self.path.parent}' is in use by another vmcjet process "
                f"({read_holder(self.path)}); wait for it to finish or stop it, "
                "or choose another --out"
            ) from None
        except OSError as err:
            if err.errno not in _UNSUPPORTED:
                os.close(fd)
                raise
            self._log(
                f"warning: the filesystem of '{self.path.parent}' cannot lock files "
                f"({err.strerror}); make sure no other process writes to this run folder"
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder_text().encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def release(self) -> None:
        """Releases the lock (closing the file releases the flock); the holder note stays."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
