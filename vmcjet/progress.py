"""Progress reporting of a run: a bar with ETA on a terminal, plain log lines otherwise."""

from __future__ import annotations

import datetime
import sys
import time
from pathlib import Path
from typing import TextIO


class Reporter:
    """Writes log lines to a stream and a log file, and a progress bar when the stream is a tty.

    Args:
        log_path: file the log lines are appended to (None: no file).
        stream: where lines and the bar go (default stderr).
        log_every: on a non-terminal, print a progress line every this many steps.
    """

    def __init__(
        self, log_path: Path | None, *, stream: TextIO | None = None, log_every: int = 100
    ):
        self._stream = stream or sys.stderr
        self._log = open(log_path, "a") if log_path else None  # noqa: SIM115 (closed in close())
        self._log_every = max(1, log_every)
        self._tty = self._stream.isatty()
        self._bar_shown = False
        self._start_time = time.monotonic()
        self._start_step = 0

    def log(self, message: str) -> None:
        """One timestamped line on the stream and in the log file."""
        line = f"[{datetime.datetime.now():%H:%M:%S}] {message}"
        if self._bar_shown:
            self._stream.write("\n")
            self._bar_shown = False
        self._stream.write(line + "\n")
        self._stream.flush()
        if self._log:
            self._log.write(line + "\n")
            self._log.flush()

    def start(self, step: int) -> None:
        """Starts the clock of the ETA at `step`."""
        self._start_time = time.monotonic()
        self._start_step = step

    def step(self, step: int, total: int, energy: float, running_mean: float) -> None:
        """Reports step `step` (0-based) of `total`."""
        done = step + 1
        rate = (done - self._start_step) / max(time.monotonic() - self._start_time, 1e-9)
        eta = (total - done) / rate if rate > 0 else float("inf")
        energies = f"E = {energy:.5f}  mean = {running_mean:.5f} Ha"
        text = f"step {done}/{total}  {energies}  ETA {_clock(eta)}"
        if self._tty:
            filled = int(30 * done / max(total, 1))
            self._stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {text}")
            self._stream.flush()
            self._bar_shown = True
        elif done % self._log_every == 0 or done == total:
            self.log(text)

    def close(self) -> None:
        if self._bar_shown:
            self._stream.write("\n")
        if self._log:
            self._log.close()


def _clock(seconds: float) -> str:
    if seconds == float("inf"):
        return "--:--"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
