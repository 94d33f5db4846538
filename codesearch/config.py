"""Settings and defaults: where indexes and caches live, and the environment variables that
move them.

Environment variables (all optional):
- ``CS_HOME``: one directory holding everything below (tests point it at a temp dir).
- ``CS_INDEX_DIR``: where per-root indexes live (default ``<cache>/indexes``).
- ``CS_CACHE_DIR``: the user cache directory for cs (default: XDG cache, ``~/.cache/codesearch``).
- ``CS_MODEL``: the default model preset, hub id or local directory.
- ``CS_DEVICE``: ``cpu``, ``cuda`` or ``cuda:N``.
- ``CS_INDEX_URI``: the index itself (a path or ``s3://bucket/prefix``), for one root.
- ``CS_PRECISION``: ``auto``, ``fp32``, ``bf16`` or ``int8`` (what ``--precision`` sets).
- ``CS_QUANTIZED_DIR``: where int8 builds of models live (default ``<cache>/quantized``).

The warm server's switches (``CS_NO_SERVER``, ``CS_SERVER_AUTOSTART``, ``CS_SERVER_IDLE``) are read
by :mod:`codesearch.query.client` and :mod:`codesearch.query.protocol`.

Nothing here imports more than the standard library and platformdirs: every warm query finds its
index with these functions (through :mod:`codesearch.location`).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import platformdirs

DEFAULT_MODEL = "jina-code-0.5b"
DEFAULT_DIM = 256
# Bumped whenever the on-disk layout changes, so an old index is rebuilt rather than misread.
INDEX_FORMAT_VERSION = 1
DEFAULT_MAX_FILE_BYTES = 1 << 20


def cache_dir() -> Path:
    """The root of everything cs writes (indexes, the shared embedding cache)."""
    if home := os.environ.get("CS_HOME"):
        return Path(home).expanduser()
    if explicit := os.environ.get("CS_CACHE_DIR"):
        return Path(explicit).expanduser()
    return Path(platformdirs.user_cache_dir("codesearch"))


def index_root_dir() -> Path:
    """The directory under which each indexed root gets its own database."""
    if explicit := os.environ.get("CS_INDEX_DIR"):
        return Path(explicit).expanduser()
    return cache_dir() / "indexes"


def index_dir_for(root: Path) -> Path:
    """The index directory of one source root: readable name plus a hash of its absolute path."""
    resolved = root.resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", resolved.name or "root")
    return index_root_dir() / f"{name}-{digest}-v{INDEX_FORMAT_VERSION}"


def is_remote(uri: str) -> bool:
    """True for object-store URIs (``s3://``, ``gs://``, ``az://``, ...), False for local paths."""
    return "://" in uri and not uri.startswith("file://")


def explicit_index_uri(index_uri: str | None = None) -> str | None:
    """The one index named by ``--index-uri`` (``index_uri``), else by CS_INDEX_URI, else None."""
    return index_uri or os.environ.get("CS_INDEX_URI") or None


def resolve_index_uri(root: Path, *, index_dir: str | Path | None = None,
                      index_uri: str | None = None) -> str:
    """Where the index of ``root`` lives: ``index_uri`` (or CS_INDEX_URI) names the database itself;
    otherwise a per-root directory under ``index_dir`` (or CS_INDEX_DIR, or the user cache)."""
    uri = explicit_index_uri(index_uri)
    if uri:
        return uri if is_remote(uri) else str(Path(uri.removeprefix("file://")).expanduser())
    default = index_dir_for(root)
    if index_dir is not None:
        return str(Path(index_dir).expanduser() / default.name)
    return str(default)


def model_spec(model: str) -> str:
    """What to record for ``--model``: an existing local directory becomes absolute, so find works
    from any working directory; presets and hub ids stay as typed."""
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve())
    return model


def embedding_cache_dir() -> Path:
    """The embedding cache shared by every root: (model, dim, chunk hash) -> vector."""
    return cache_dir() / "embeddings"


def default_model() -> str:
    """The model used when ``--model`` is not given."""
    return os.environ.get("CS_MODEL", DEFAULT_MODEL)


def default_device() -> str | None:
    """The device forced by ``CS_DEVICE``, or None to pick CUDA when present, else CPU."""
    return os.environ.get("CS_DEVICE") or None


def quantized_dir() -> Path:
    """Where the int8 builds of models are cached (one directory per model and build key)."""
    if explicit := os.environ.get("CS_QUANTIZED_DIR"):
        return Path(explicit).expanduser()
    return cache_dir() / "quantized"


def default_precision() -> str | None:
    """The precision forced by ``CS_PRECISION`` (or ``--precision``), or None for auto."""
    return os.environ.get("CS_PRECISION") or None
