"""Which index serves a path: the one lookup from a directory (or a ``FILE:LINE``) to its index.

Every command that reads or writes an index asks here, and only here: ``cs index``, ``watch`` and
``serve`` (and ``mcp``) name their root exactly (:meth:`IndexSettings.for_root`); ``find``,
``similar`` and ``status`` may also be run inside an indexed tree, like git
(:meth:`IndexSettings.locate`: the nearest indexed ancestor, limited to the directory asked for).

Indexes are found by their directory layout (a LanceDB database is a directory holding
``manifest.lance``), never by opening them: this module is on the path of every warm query, so it
imports the standard library, :mod:`codesearch.config` and :mod:`codesearch.errors` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from codesearch import config
from codesearch.errors import UsageError

# The table that marks a directory as a LanceDB database holding a cs index.
INDEX_MARKER = "manifest.lance"


def is_index(uri: str) -> bool:
    """A local directory laid out as a cs index (without opening it)."""
    return (Path(uri) / INDEX_MARKER).is_dir()


def require_directory(path: Path, hint: str | None = None) -> Path:
    """``path`` (user-expanded) when it is a directory, else the UsageError every command gives
    (``hint``, else one that says what is expected)."""
    path = path.expanduser()
    if not path.exists():
        raise UsageError(f"{path} does not exist",
                         hint=hint or "check the path: it must be an existing directory "
                                      "(e.g. . for the current one)")
    if not path.is_dir():
        raise UsageError(f"{path} is not a directory",
                         hint=hint or f"give the directory that holds it: {path.parent}")
    return path


@dataclass(frozen=True)
class IndexLocation:
    """One index and the tree it indexes."""

    root: Path  # the indexed root, resolved
    uri: str  # its LanceDB database: a local directory or an object-store URI (s3://...)
    storage_options: Mapping[str, str] = field(default_factory=dict)
    # A subdirectory of ``root`` (POSIX) that queries are limited to: set when the path asked
    # about lies inside an indexed root.
    scope: str | None = None
    # Named by --index-uri or CS_INDEX_URI rather than derived from the root.
    explicit: bool = False

    @property
    def remote(self) -> bool:
        """Whether the index lives on an object store."""
        return config.is_remote(self.uri)

    @property
    def exists(self) -> bool:
        """Whether a local index is there (by its layout); object stores: unknown, so True."""
        return self.remote or is_index(self.uri)

    @property
    def index_set(self) -> Path | None:
        """The index directory an automatic query server may serve this index from: only a local
        index in the per-root layout (no --index-uri, no storage options) that exists."""
        if self.explicit or self.storage_options or self.remote or not is_index(self.uri):
            return None
        return Path(self.uri).parent


@dataclass(frozen=True)
class IndexSettings:
    """Where a command was told indexes live: ``--index-dir`` (else CS_INDEX_DIR, else the user
    cache), ``--index-uri`` (else CS_INDEX_URI) for one exact index, and object-store options."""

    index_dir: Path | None = None
    index_uri: str | None = None
    storage_options: Mapping[str, str] = field(default_factory=dict)

    @property
    def explicit_uri(self) -> str | None:
        """The exact index named by --index-uri or CS_INDEX_URI, if any."""
        return config.explicit_index_uri(self.index_uri)

    def for_root(self, root: Path, hint: str | None = None) -> IndexLocation:
        """The index of exactly ``root`` (a directory, else a UsageError with ``hint``; it need
        not be indexed yet)."""
        resolved = require_directory(root, hint).resolve()
        uri = config.resolve_index_uri(resolved, index_dir=self.index_dir,
                                       index_uri=self.index_uri)
        return IndexLocation(resolved, uri, dict(self.storage_options),
                             explicit=self.explicit_uri is not None)

    def locate(self, path: Path) -> IndexLocation:
        """The index that serves the directory ``path``: its own, else (like git) the nearest
        indexed ancestor's, limited to ``path`` (``scope``). Without either, ``path``'s own
        location (which does not exist: searching it says so)."""
        own = self.for_root(path)
        if own.explicit or own.remote or is_index(own.uri):
            return own
        parent = self._indexed_ancestor(own.root, include_self=False)
        if parent is None:
            return own
        return IndexLocation(parent, config.resolve_index_uri(parent, index_dir=self.index_dir),
                             dict(self.storage_options),
                             scope=own.root.relative_to(parent).as_posix())

    def root_for_file(self, location: str, cwd: Path) -> Path:
        """For ``cs similar FILE:LINE`` without ``--path``: ``cwd`` when it lies in an indexed
        tree, else the indexed root that holds FILE, so the command works from anywhere; ``cwd``
        when neither exists (the search then says what is missing)."""
        if self.index_uri or self._indexed_ancestor(cwd, include_self=True) is not None:
            return cwd
        try:
            file, _ = parse_location(location)
        except UsageError:
            return cwd
        target = Path(file).expanduser()
        found = self._indexed_ancestor(target if target.is_absolute() else cwd / target,
                                       include_self=False)
        return found or cwd

    def _indexed_ancestor(self, path: Path, *, include_self: bool) -> Path | None:
        path = path.resolve()
        for parent in ([path] if include_self else []) + list(path.parents):
            if is_index(config.resolve_index_uri(parent, index_dir=self.index_dir)):
                return parent
        return None


def file_at(location: str, cwd: Path) -> tuple[Path, int, str]:
    """``FILE:LINE`` (FILE relative to ``cwd``) -> (the file, resolved; the line; FILE as typed).
    A UsageError that blames the location (its form, a missing file, a directory), so a typo is
    never reported as a missing index."""
    file, line = parse_location(location)
    path = Path(file).expanduser()
    if not path.is_absolute():
        path = cwd / path
    if not path.exists():
        raise UsageError(f"no such file: {file}",
                         hint="FILE is relative to the current directory; "
                              "e.g. cs similar src/app.py:42")
    if not path.is_file():
        raise UsageError(f"not a file: {file}", hint="e.g. cs similar src/app.py:42")
    return path.resolve(), line, file


def parse_location(location: str) -> tuple[str, int]:
    """``FILE:LINE`` -> (file, line). UsageError for anything else."""
    file, sep, line = location.rpartition(":")
    if not sep or not file or not line.strip().isdigit():
        raise UsageError(f"expected FILE:LINE, got '{location}'",
                         hint="e.g. cs similar src/app.py:42")
    return file, int(line)
