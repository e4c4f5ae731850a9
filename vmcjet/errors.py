"""Typed failures. Every message names the offending value and the fix, on one line."""


class VmcjetError(Exception):
    """Base class of every error vmcjet raises on purpose (the CLI prints it and exits 2)."""


class InputError(VmcjetError, ValueError):
    """Bad user input: molecule, config, command-line flags."""


class CheckpointError(VmcjetError):
    """A checkpoint or run folder that cannot be used."""


class NonFiniteError(VmcjetError, FloatingPointError):
    """Too many consecutive steps produced non-finite values."""
