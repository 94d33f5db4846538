"""One way out on error: a CodeSearchError carries the sentence the user sees, a hint
and an exit code.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes, grep-style: 0 results, 1 none, 2 error; stopped by a signal: 128 + its number
    (Ctrl-C, SIGINT: 130; SIGTERM: 143), after keeping what was committed."""

    OK = 0
    NO_RESULTS = 1
    ERROR = 2
    INTERRUPTED = 130
    TERMINATED = 143


class CodeSearchError(Exception):
    """An error the user can act on.

    ``str()`` is the one-line message; ``hint`` says how to fix it.
    """

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, hint: str | None = None, exit_code: ExitCode | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class UsageError(CodeSearchError):
    """Bad arguments: a missing path, a line out of range, an empty query, an unknown value."""


class ModelError(CodeSearchError):
    """The model cannot be loaded: unknown preset, not cached while offline, bad dimension."""


class IndexMismatchError(CodeSearchError):
    """The index was built with another model, dimension, prefix scheme or chunker version."""


class IndexMissingError(CodeSearchError):
    """No index exists for the root that was asked about."""


class IndexBusyError(CodeSearchError):
    """Another process is writing this index."""


class StorageError(CodeSearchError):
    """The index directory cannot be written or read (permissions, full disk, corrupt files)."""


class IndexCorruptError(StorageError):
    """The index files exist but cannot be decoded (a damaged disk, a file edited or truncated
    by hand): only a rebuild helps."""
