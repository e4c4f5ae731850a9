"""Typed failures. Every message names the offending value and the fix, on one line."""


class VmcjetError(Exception):
    """Base class of every error vmcjet raises on purpose (the CLI prints it and exits 2)."""


class InputError(VmcjetError, ValueError):
    """Bad user input: molecule, config, command-line flags."""


class CheckpointError(VmcjetError):
    """A checkpoint or run folder that cannot be used."""


class NonFiniteError(VmcjetError, FloatingPointError):
    """Too many consecutive steps produced non-finite values."""


class ResourceError(VmcjetError, MemoryError):
    """An allocation failed (XLA RESOURCE_EXHAUSTED or a host MemoryError)."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived outside the optimisation loop (set-up, eval, ...).

    A KeyboardInterrupt (not an Exception), so code that catches Exception (jax's compilation
    cache, for one) cannot swallow it. The CLI prints the one-line message and exits with
    128 + the signal number.
    """

    def __init__(self, signum: int):
        import signal

        self.signum = signum
        super().__init__(
            f"stopped by {signal.Signals(signum).name}; run the same command again "
            "(a run whose set-up finished continues with --resume RUN_FOLDER)"
        )
