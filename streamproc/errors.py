"""Every error streamproc raises on purpose, each mapped to one exit code.

The CLI turns these into a one-line message and the exit code; the Python API lets them propagate.
"""


class StreamprocError(Exception):
    """Base class: an error that streamproc reports as a one-line message (exit code 1)."""

    exit_code = 1


class InputError(StreamprocError, ValueError):
    """An input file (or a row or field of it) is not what was expected."""


class StoreError(StreamprocError):
    """The store is missing, damaged, or written by a newer streamproc."""


class ModelError(StreamprocError):
    """A model does not exist, is damaged, or does not fit the store."""


class LockBusy(StreamprocError):
    """Another process holds the store's write lock (exit code 75, EX_TEMPFAIL: try again later)."""

    exit_code = 75


class UsageError(StreamprocError):
    """The options make no sense together (exit code 2)."""

    exit_code = 2
