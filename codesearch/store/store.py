"""The index on disk (or on an object store): the only module that imports lancedb.

One LanceDB database per indexed root, holding three tables:

- ``chunks``: one row per chunk (id, path, language, kind, symbol, start_line, end_line, text,
  hash, search_text, definition_line, vector as a fixed-size float32 list of the index's dim,
  embedded). Searches read only this table. A chunk is written in two steps (the progressive
  index): first with its full-text entry and a zero vector (``embedded`` false), then its vector
  (:meth:`Store.update_vectors`); vector searches only see embedded rows. An index written before
  the ``embedded`` column existed gains it (all true) on its next write, and reads as complete.
- ``files``: one row per indexed file (path, mtime_ns, size, hash, language, chunks, indexed_at):
  what the incremental indexer compares the tree against.
- ``manifest``: key/value rows recording what built the index (model, revision, dim, prefix scheme,
  chunker version, format version) and the last run's summary.

Writes are atomic per batch: :meth:`Store.commit_batch` replaces every chunk of a set of files in
ONE LanceDB commit (a merge-insert that also deletes the files' old rows), then records the files
in a second commit. A crash between the two leaves files that look changed, so the next run redoes
them; chunk ids are deterministic, so redoing them never duplicates a row. Readers always see a
whole version of ``chunks``: never half of a file's chunks.

BM25 scores depend only on the rows an index holds, not on how it got there: LanceDB keeps a row
that was deleted or rewritten (a re-indexed file's old chunks, a row given its vector) in the
full-text index's statistics until a compaction happens to rewrite its fragment, so
:meth:`Store.optimize` rebuilds the full-text index after a run that deleted or rewrote rows.

The embedding cache (:class:`EmbeddingCache`) is a separate LanceDB database shared by every root:
one table per embedder identity, mapping a chunk's content hash to its vector.

Everything here takes a URI (a local path, ``s3://bucket/prefix``, ...) plus ``storage_options``, so
an index or cache can live on an object store.
"""

from __future__ import annotations

import errno
import json
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from codesearch import config
from codesearch.errors import (
    IndexBusyError,
    IndexCorruptError,
    IndexMismatchError,
    IndexMissingError,
    StorageError,
)

if TYPE_CHECKING:  # pragma: no cover - typing only; lancedb and pyarrow load lazily
    import pyarrow as pa

CHUNKS = "chunks"
FILES = "files"
MANIFEST = "manifest"
VECTOR = "vector"
EMBEDDED = "embedded"  # False while a chunk waits for its vector (its vector is then zeros)
# Columns returned by searches (the vector only when asked for).
CHUNK_FIELDS = (
    "id", "path", "language", "kind", "symbol", "start_line", "end_line", "text", "hash",
    "definition_line",
)
# Past this many rows, search through an ANN index instead of brute force (bench/ann_recall.py:
# brute force costs ~1 ms per 1,000 rows of 256 dims on one core; below this, building the index
# costs more than it ever saves).
DEFAULT_ANN_THRESHOLD = 100_000
# IVF-HNSW-SQ: one HNSW graph per 16k rows (smaller graphs build faster), and queries probe every
# partition (up to ~4M rows): unprobed partitions, not HNSW or quantisation, cost recall.
ANN_PARTITION_ROWS = 16_384
ANN_PROBES = 256
ANN_EF = 64
ANN_EF_CONSTRUCTION = 150
ANN_RETRAIN_GROWTH = 4
ANN_INDEX_PREFIX = "vector_ann_"
# LanceDB versions older than this are pruned by optimize(); readers re-open per query, so an hour
# is far longer than any reader holds a version.
VERSION_RETENTION = timedelta(hours=1)
REBUILD_HINT = "run `cs index --rebuild` to rebuild the index"


def _lancedb() -> Any:
    """Import lancedb, with its Rust logger limited to errors (it otherwise prints deprecation and
    "creating dataset" warnings on stderr that mean nothing to a cs user)."""
    os.environ.setdefault("LANCEDB_LOG", "error")
    import lancedb

    return lancedb


# --- records -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """What built an index, a plain record. Two indexes are compatible when their :meth:`identity`
    is equal; whether a model or this cs fits one is embed.handle's to check."""

    model: str  # what the user named (preset, directory, hub id): reloaded by find/similar
    model_id: str
    revision: str | None
    dim: int
    prefix_scheme: str
    max_length: int
    chunker_version: str
    format_version: int = config.INDEX_FORMAT_VERSION
    root: str = ""
    created_at: float = 0.0
    last_run_at: float | None = None
    last_run: dict[str, Any] | None = None
    # What the vectors were computed in: fp32, bf16 (interchangeable: cosine >= .9996) or int8
    # (its own vector space: never mixed with float vectors). Older manifests: fp32.
    precision: str = "fp32"

    def identity(self) -> dict[str, Any]:
        """The fields that must match for vectors to be comparable (what the cache is keyed by)."""
        ident: dict[str, Any] = {
            "model_id": self.model_id,
            "revision": self.revision,
            "dim": self.dim,
            "prefix_scheme": self.prefix_scheme,
            "max_length": self.max_length,
        }
        if self.precision == "int8":  # float caches keep their table names
            ident["precision"] = "int8"
        return ident


@dataclass(frozen=True)
class FileRecord:
    """One indexed file, as the incremental indexer last saw it."""

    path: str  # POSIX, relative to the root
    mtime_ns: int
    size: int
    hash: str  # sha256 of the file's bytes
    language: str = ""
    chunks: int = 0
    indexed_at: float = 0.0


@dataclass(frozen=True)
class ChunkRecord:
    """One chunk row, without its vector (vectors travel as a numpy matrix beside the records)."""

    id: str
    path: str
    language: str
    kind: str
    symbol: str
    start_line: int
    end_line: int
    text: str
    hash: str  # content hash of what the embedder saw: the embedding cache key
    search_text: str = ""  # what the full-text index sees (identifiers split into words, path)
    definition_line: int = 0  # shared by the pieces of one split definition (chunk.Chunk), else 0


@dataclass
class StoredChunk:
    """A chunk read back from the index, with a score when it came from a search."""

    id: str
    path: str
    language: str
    kind: str
    symbol: str
    start_line: int
    end_line: int
    text: str
    hash: str
    score: float = 0.0
    vector: np.ndarray | None = field(default=None, repr=False)
    definition_line: int = 0

    @property
    def definition(self) -> tuple[str, int]:
        """Equal for the pieces of one split definition, distinct for every other chunk."""
        return self.path, self.definition_line or -self.start_line


@dataclass(frozen=True)
class Coverage:
    """How much of an index has its vectors: ``embedded`` of ``total`` chunks. ``writing``: a
    writer holds the index now (so the rest is on its way); None where that cannot be told (an
    object store). Plain values, so it travels as JSON (:meth:`to_dict`)."""

    embedded: int
    total: int
    writing: bool | None = None

    @property
    def complete(self) -> bool:
        return self.embedded >= self.total

    @property
    def percent(self) -> int:
        """Whole percent, rounded down (99% until the last chunk has its vector)."""
        return 100 if self.complete else (100 * self.embedded) // max(1, self.total)

    def to_dict(self) -> dict[str, Any]:
        return {"embedded": self.embedded, "total": self.total, "complete": self.complete,
                "percent": self.percent, "writing": self.writing}


# --- locations ---------------------------------------------------------------------------------


# Light enough for the warm-query client, so they live in config; imported from here as before.
is_remote = config.is_remote
resolve_index_uri = config.resolve_index_uri


def sql_str(value: str) -> str:
    """A SQL string literal (DataFusion SQL: quotes are doubled, backslashes are not escapes)."""
    return "'" + value.replace("'", "''") + "'"


def sql_in(column: str, values: Sequence[str]) -> str:
    """``column IN ('a', 'b')`` with proper quoting; a never-true filter for no values."""
    if not values:
        return "false"
    return f"{column} IN ({', '.join(sql_str(v) for v in values)})"


# --- arrow conversion --------------------------------------------------------------------------


def _chunk_schema(dim: int) -> pa.Schema:
    import pyarrow as pa

    return pa.schema([
        ("id", pa.string()),
        ("path", pa.string()),
        ("language", pa.string()),
        ("kind", pa.string()),
        ("symbol", pa.string()),
        ("start_line", pa.int32()),
        ("end_line", pa.int32()),
        ("text", pa.string()),
        ("hash", pa.string()),
        ("search_text", pa.string()),
        ("definition_line", pa.int32()),
        (VECTOR, pa.list_(pa.float32(), dim)),
        pa.field(EMBEDDED, pa.bool_(), nullable=False),
    ])


def _file_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([
        ("path", pa.string()),
        ("mtime_ns", pa.int64()),
        ("size", pa.int64()),
        ("hash", pa.string()),
        ("language", pa.string()),
        ("chunks", pa.int32()),
        ("indexed_at", pa.float64()),
    ])


def _manifest_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([("key", pa.string()), ("value", pa.string())])


def _vectors_to_arrow(vectors: np.ndarray, dim: int) -> pa.FixedSizeListArray:
    import pyarrow as pa

    flat = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat, type=pa.float32()), dim)


def _vectors_from_arrow(column: Any, dim: int) -> np.ndarray:
    """A fixed-size-list column -> (n, dim) float32 matrix, without a Python loop."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    if len(column) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    return column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)


def _chunks_to_arrow(chunks: Sequence[ChunkRecord], vectors: np.ndarray, dim: int,
                     embedded: Sequence[bool] | None = None) -> pa.Table:
    import pyarrow as pa

    if vectors.shape != (len(chunks), dim):
        raise ValueError(f"expected vectors of shape {(len(chunks), dim)}, got {vectors.shape}")
    schema = _chunk_schema(dim)
    cols: dict[str, Any] = {name: [getattr(c, name) for c in chunks]
                            for name in schema.names if name not in (VECTOR, EMBEDDED)}
    cols[VECTOR] = _vectors_to_arrow(vectors, dim)
    cols[EMBEDDED] = [True] * len(chunks) if embedded is None else [bool(e) for e in embedded]
    return pa.Table.from_pydict(cols, schema=schema)


def _files_to_arrow(files: Sequence[FileRecord]) -> pa.Table:
    import pyarrow as pa

    cols = {name: [getattr(f, name) for f in files] for name in _file_schema().names}
    return pa.Table.from_pydict(cols, schema=_file_schema())


def _rows_to_chunks(table: pa.Table, dim: int, *, score_from: str | None = None,
                    invert_distance: bool = False) -> list[StoredChunk]:
    data = table.to_pydict()
    n = table.num_rows
    vectors = _vectors_from_arrow(table.column(VECTOR), dim) if VECTOR in data else None
    out = []
    for i in range(n):
        score = 0.0
        if score_from is not None and score_from in data:
            raw = float(data[score_from][i])
            # cosine distance in [0, 2] -> cosine similarity in [-1, 1]
            score = 1.0 - raw if invert_distance else raw
        out.append(StoredChunk(
            id=data["id"][i], path=data["path"][i], language=data["language"][i],
            kind=data["kind"][i], symbol=data["symbol"][i], start_line=int(data["start_line"][i]),
            end_line=int(data["end_line"][i]), text=data["text"][i], hash=data["hash"][i],
            score=score, vector=None if vectors is None else vectors[i],
            definition_line=int(data["definition_line"][i] or 0),
        ))
    return out


# --- errors ------------------------------------------------------------------------------------


# LanceDB reports an OS failure inside its message: "LanceError(IO): No space left on device
# (os error 28), /root/.cargo/.../writer.rs:258:9". The errno decides what the user is told; the
# Rust source location means nothing to them.
_OS_ERROR = re.compile(r"\(os error (\d+)\)")
_RUST_NOISE = re.compile(r",?\s*/\S+\.rs:\d+:\d+|lance error: |LanceError\(\w+\): ")
_NO_PERMISSION = {errno.EACCES, errno.EPERM, errno.EROFS}
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_READS = {"open", "read", "search"}


def _storage_error(action: str, uri: str, err: BaseException,
                   what: str = "index") -> StorageError:
    """One line for an IO failure of ``action`` on the ``what`` at ``uri``: the OS reason and how
    to fix it when there is an errno; otherwise, for a local index, its files are damaged
    (IndexCorruptError on a read, since only a rebuild helps)."""
    text = str(err).strip()
    code = err.errno if isinstance(err, OSError) and err.errno else None
    if code is None and (match := _OS_ERROR.search(text)):
        code = int(match.group(1))
    where = f"cannot {action} the {what} at {uri}"
    if code in _NO_PERMISSION:
        reason = "read-only file system" if code == errno.EROFS else "permission denied"
        return StorageError(f"{where}: {reason}",
                            hint="make the directory writable by you, or pass --index-dir")
    if code in _NO_SPACE:
        fix = ("raise the file size limit (ulimit -f)" if code == errno.EFBIG
               else "free some disk space")
        return StorageError(f"{where}: {os.strerror(code).lower()}",
                            hint=f"{fix} and run it again; every batch committed before the "
                            "failure is kept")
    if code is not None:
        return StorageError(f"{where}: {os.strerror(code).lower()}",
                            hint="check the disk and the directory's permissions")
    first = _RUST_NOISE.sub("", text.splitlines()[0] if text else type(err).__name__).strip()
    if is_remote(uri):  # no errno from an object store: its own words (credentials, network...)
        return StorageError(f"{where}: {first[:200]}",
                            hint="check the store's address, credentials and network")
    if action in _READS:
        hint = (REBUILD_HINT if what == "index"
                else f"delete {uri} (it only saves time) and run it again")
        return IndexCorruptError(f"{where}: its files are damaged ({first[:160]})", hint=hint)
    return StorageError(f"{where}: {first[:200]}", hint="check free disk space and permissions")


@contextmanager
def _storage_errors(action: str, uri: str, what: str = "index") -> Iterator[None]:
    """Turn OS and LanceDB IO failures into one StorageError line; other errors pass through."""
    try:
        yield
    except (IndexBusyError, IndexMismatchError, IndexMissingError, StorageError):
        raise
    except (OSError, RuntimeError) as err:  # lancedb raises both for IO errors of its Rust core
        raise _storage_error(action, uri, err, what) from err


# --- the writer lock ---------------------------------------------------------------------------


class WriterLock:
    """One writer per index: an exclusive ``flock`` on ``<index>/.cs-writer.lock``.

    The kernel drops the lock when the process dies, so a kill -9 never leaves a stale lock. Object
    stores have no such primitive; :meth:`Store.writer_lock` takes a lease object there instead
    (:mod:`codesearch.store.locks`).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, wait: float = 0.0) -> None:
        """Take the lock, polling up to ``wait`` seconds; IndexBusyError names the holder's pid."""
        import fcntl

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:  # an unwritable index directory fails here first
            raise _storage_error("lock", str(self.path.parent), err) from err
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                    os.close(fd)
                    raise IndexBusyError(
                        f"another cs process (pid {holder}) is writing this index",
                        hint="wait for it to finish (or stop `cs watch`), then retry",
                    ) from None
                time.sleep(0.1)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError as err:  # a full disk
            os.close(fd)
            raise _storage_error("lock", str(self.path.parent), err) from err
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases the flock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# --- the store ---------------------------------------------------------------------------------


class Store:
    """The index of one root. Open with :meth:`open`; cheap, so open one per command or request."""

    def __init__(self, uri: str, db: Any, storage_options: Mapping[str, str] | None) -> None:
        self.uri = uri
        self._db = db
        self.storage_options = dict(storage_options or {})
        self._tables: dict[str, Any] = {}
        # True once this store deleted or rewrote chunk rows: the full-text index still counts
        # them (see optimize()) until it is rebuilt.
        self._fts_stale = False

    @classmethod
    def open(cls, uri: str, *, storage_options: Mapping[str, str] | None = None,
             read_consistency_interval: timedelta | None = None) -> Store:
        """Connect to the database at ``uri`` (a path or object-store URI); creates nothing yet.

        Long-lived readers (watch, serve) pass ``read_consistency_interval=timedelta(0)`` so every
        query sees the latest committed version; one-shot commands read the version current at open.
        """
        lancedb = _lancedb()
        with _storage_errors("open", uri):
            db = lancedb.connect(uri, storage_options=dict(storage_options or {}) or None,
                                 read_consistency_interval=read_consistency_interval)
        return cls(uri, db, storage_options)

    # tables ---------------------------------------------------------------------------------

    def _table(self, name: str) -> Any | None:
        if name in self._tables:
            return self._tables[name]
        try:
            with _storage_errors("read", self.uri):
                table = self._db.open_table(name)
        except ValueError:  # "Table 'x' was not found"
            return None
        self._tables[name] = table
        return table

    def _create(self, name: str, schema: pa.Schema) -> Any:
        with _storage_errors("write", self.uri):
            table = self._db.create_table(name, schema=schema, exist_ok=True)
        self._tables[name] = table
        return table

    def exists(self) -> bool:
        """True when this location holds an index (a manifest, or data tables left without one)."""
        for name in (MANIFEST, CHUNKS, FILES):
            try:
                if self._table(name) is not None:
                    return True
            except IndexCorruptError:  # damaged, but there: read_manifest() says how to fix it
                return True
        return False

    def writer_lock(self, wait: float = 2.0) -> Any:
        """The lock a writer holds for its whole run: ``with store.writer_lock(): ...``."""
        lock: Any
        if is_remote(self.uri):
            # No flock on an object store: a lease object taken with a conditional PUT.
            from codesearch.store.locks import remote_writer_lock

            lock = remote_writer_lock(self.uri, self.storage_options)
        else:
            lock = WriterLock(Path(self.uri) / ".cs-writer.lock")
        lock.acquire(wait)
        return lock

    def reset(self) -> None:
        """Drop every table (``--rebuild``). Data tables go first and the manifest last, so a
        crash midway leaves either the old manifest with no data (an empty, compatible index) or
        nothing."""
        with _storage_errors("reset", self.uri):
            for name in (CHUNKS, FILES, MANIFEST):
                # By name, without opening: a table too damaged to open must still go.
                self._db.drop_table(name, ignore_missing=True)
                self._tables.pop(name, None)

    # manifest -------------------------------------------------------------------------------

    def read_manifest(self) -> Manifest | None:
        """The manifest, or None when there is no index here. A damaged manifest is an
        IndexMismatchError naming the rebuild."""
        try:
            table = self._table(MANIFEST)
            with _storage_errors("read", self.uri):
                rows = None if table is None else table.to_arrow().to_pylist()
        except IndexCorruptError as err:
            # A mismatch, so that `cs index --rebuild` replaces it like any other unusable index.
            raise IndexMismatchError(f"the index manifest at {self.uri} is damaged",
                                     hint=REBUILD_HINT) from err
        if rows is None:
            if self._table(CHUNKS) is not None or self._table(FILES) is not None:
                raise IndexMismatchError(f"the index at {self.uri} has no manifest",
                                         hint=REBUILD_HINT)
            return None
        values = {row["key"]: row["value"] for row in rows}
        try:
            fields = {key: json.loads(value) for key, value in values.items()}
            known = {f for f in Manifest.__dataclass_fields__}
            return Manifest(**{k: v for k, v in fields.items() if k in known})
        except (TypeError, ValueError) as err:
            raise IndexMismatchError(f"the index manifest at {self.uri} is unreadable",
                                     hint=REBUILD_HINT) from err

    def write_manifest(self, manifest: Manifest) -> None:
        """Replace the manifest in one commit."""
        import pyarrow as pa

        items = asdict(manifest)
        data = pa.Table.from_pydict(
            {"key": list(items), "value": [json.dumps(v, sort_keys=True) for v in items.values()]},
            schema=_manifest_schema(),
        )
        with _storage_errors("write", self.uri):
            self._tables[MANIFEST] = self._db.create_table(MANIFEST, data, mode="overwrite")

    # reads ----------------------------------------------------------------------------------

    def file_records(self) -> dict[str, FileRecord]:
        """Every indexed file, by path."""
        table = self._table(FILES)
        if table is None:
            return {}
        with _storage_errors("read", self.uri):
            rows = table.to_arrow().to_pylist()
        return {row["path"]: FileRecord(**row) for row in rows}

    def count_chunks(self, where: str | None = None) -> int:
        """Number of chunk rows (matching ``where``)."""
        table = self._table(CHUNKS)
        if table is None:
            return 0
        with _storage_errors("read", self.uri):
            return int(table.count_rows(where))

    def count_files(self) -> int:
        """Number of indexed files."""
        table = self._table(FILES)
        if table is None:
            return 0
        with _storage_errors("read", self.uri):
            return int(table.count_rows())

    def languages(self) -> list[str]:
        """The distinct languages of indexed files, sorted."""
        return sorted({r.language for r in self.file_records().values() if r.language})

    def vectors_by_hash(self, paths: Sequence[str], dim: int) -> dict[str, np.ndarray]:
        """hash -> vector for the chunks currently stored for ``paths`` (reuse on edit)."""
        table = self._table(CHUNKS)
        if table is None or not paths:
            return {}
        where = self._only_embedded(table, sql_in("path", list(paths)))
        with _storage_errors("read", self.uri):
            data = table.search().where(where).select(["hash", VECTOR]).limit(None).to_arrow()
        vectors = _vectors_from_arrow(data.column(VECTOR), dim)
        return dict(zip(data.column("hash").to_pylist(), vectors, strict=True))

    def chunks(self, where: str | None = None, *, with_vectors: bool = False,
               limit: int | None = None) -> list[StoredChunk]:
        """Chunk rows matching ``where`` (all when None), in storage order."""
        table = self._table(CHUNKS)
        if table is None:
            return []
        cols = list(CHUNK_FIELDS) + ([VECTOR] if with_vectors else [])
        with _storage_errors("read", self.uri):
            query = table.search().select(cols).limit(limit)
            if where:
                query = query.where(where)
            data = query.to_arrow()
        return _rows_to_chunks(data, self._dim(table))

    def _dim(self, table: Any) -> int:
        return int(table.schema.field(VECTOR).type.list_size)

    @staticmethod
    def _has_embedded_column(table: Any) -> bool:
        return EMBEDDED in table.schema.names

    def _only_embedded(self, table: Any, where: str | None) -> str | None:
        """``where`` limited to rows that have their vector (an index older than the
        ``embedded`` column has a vector in every row)."""
        if not self._has_embedded_column(table):
            return where
        return f"({where}) AND {EMBEDDED}" if where else EMBEDDED

    # the progressive index ------------------------------------------------------------------

    def coverage(self, where: str | None = None) -> tuple[int, int]:
        """(chunks with a vector, all chunks), among rows matching ``where``: two counts, no
        vectors read."""
        table = self._table(CHUNKS)
        if table is None:
            return 0, 0
        with _storage_errors("read", self.uri):
            total = int(table.count_rows(where))
            if not self._has_embedded_column(table):
                return total, total
            return int(table.count_rows(self._only_embedded(table, where))), total

    def coverage_info(self) -> Coverage:
        """:meth:`coverage` with whether a writer is at work (:meth:`writer_active`)."""
        embedded, total = self.coverage()
        return Coverage(embedded, total, None if embedded >= total else self.writer_active())

    def writer_active(self) -> bool | None:
        """True when some process holds this index's writer lock (tested with a shared,
        non-blocking flock that is dropped at once); None on an object store."""
        import fcntl

        if is_remote(self.uri):
            return None
        path = Path(self.uri) / ".cs-writer.lock"
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def missing_vectors(self) -> list[tuple[str, str, str]]:
        """(id, path, hash) of every chunk still waiting for its vector."""
        table = self._table(CHUNKS)
        if table is None or not self._has_embedded_column(table):
            return []
        with _storage_errors("read", self.uri):
            data = (table.search().where(f"NOT {EMBEDDED}").select(["id", "path", "hash"])
                    .limit(None).to_arrow())
        return list(zip(data.column("id").to_pylist(), data.column("path").to_pylist(),
                        data.column("hash").to_pylist(), strict=True))

    def update_vectors(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Give the rows ``ids`` their vectors in ONE commit (readers see the whole batch or
        none of it). Only the vector columns are written; an id that is no longer in the index
        (its file changed meanwhile) is ignored, never re-inserted."""
        import pyarrow as pa

        table = self._table(CHUNKS)
        if table is None or not len(ids):
            return
        dim = self._dim(table)
        if vectors.shape != (len(ids), dim):
            raise ValueError(f"expected vectors of shape {(len(ids), dim)}, got {vectors.shape}")
        data = pa.Table.from_pydict(
            {"id": list(ids), VECTOR: _vectors_to_arrow(vectors, dim),
             EMBEDDED: [True] * len(ids)},
            schema=pa.schema([("id", pa.string()), (VECTOR, pa.list_(pa.float32(), dim)),
                              pa.field(EMBEDDED, pa.bool_(), nullable=False)]))
        with _storage_errors("write", self.uri):
            # LanceDB writes an updated row anew (text included) and deletes the old one.
            self._note_rewrites(table.merge_insert("id").when_matched_update_all().execute(data))

    def _note_rewrites(self, result: Any) -> None:
        """Remember that the full-text index needs rebuilding when a merge-insert or delete
        ``result`` says rows were deleted or rewritten (also when it does not say: an older
        lancedb returned no counts)."""
        updated = getattr(result, "num_updated_rows", None)  # a delete's result has none
        deleted = getattr(result, "num_deleted_rows", None)
        if (updated is None and deleted is None) or (updated or 0) + (deleted or 0) > 0:
            self._fts_stale = True

    # searches -------------------------------------------------------------------------------

    def vector_search(self, vector: np.ndarray, k: int, *, where: str | None = None,
                      with_vectors: bool = False, nprobes: int = ANN_PROBES,
                      refine_factor: int = 4) -> list[StoredChunk]:
        """The ``k`` chunks nearest ``vector`` by cosine, among rows matching ``where`` (applied
        before ranking). Uses the ANN index when one exists (rows added since it was built are
        searched exactly), else brute force. ``score`` is the cosine similarity."""
        table = self._table(CHUNKS)
        if table is None or k <= 0:
            return []
        cols = list(CHUNK_FIELDS) + ([VECTOR] if with_vectors else [])
        with _storage_errors("search", self.uri):
            query = (table.search(np.asarray(vector, dtype=np.float32), vector_column_name=VECTOR)
                     .distance_type("cosine").select(cols).limit(k)
                     .nprobes(nprobes).ef(ANN_EF).refine_factor(refine_factor))
            # Rows still waiting for their vector hold zeros: never candidates here.
            where = self._only_embedded(table, where)
            if where:
                query = query.where(where, prefilter=True)
            data = query.to_arrow()
        return _rows_to_chunks(data, self._dim(table), score_from="_distance",
                               invert_distance=True)

    def text_search(self, text: str, k: int, *, where: str | None = None,
                    with_vectors: bool = False) -> list[StoredChunk]:
        """The ``k`` best BM25 matches of ``text`` over ``search_text``, among rows matching
        ``where``. ``score`` is the BM25 score. IndexMissingError when chunks exist but their
        full-text index was never built (a run killed before :meth:`optimize`)."""
        table = self._table(CHUNKS)
        if table is None or k <= 0 or not text.strip():
            return []
        if not self._has_index(table, "search_text"):
            if self.count_chunks() == 0:
                return []
            raise IndexMissingError("the index has no full-text index yet (an indexing run "
                                    "did not finish)", hint="run `cs index` on this root again")
        cols = list(CHUNK_FIELDS) + ([VECTOR] if with_vectors else [])
        with _storage_errors("search", self.uri):
            query = (table.search(text, query_type="fts", fts_columns="search_text")
                     .select(cols).limit(k))
            if where:
                query = query.where(where, prefilter=True)
            data = query.to_arrow()
        return _rows_to_chunks(data, self._dim(table), score_from="_score")

    # writes ---------------------------------------------------------------------------------

    def ensure_tables(self, dim: int) -> None:
        """Create empty chunks and files tables (vectors of ``dim``) when missing."""
        chunks = self._table(CHUNKS)
        if chunks is None:
            self._create(CHUNKS, _chunk_schema(dim))
        elif not self._has_embedded_column(chunks):
            # An index from before the progressive index: every row has its vector.
            with _storage_errors("write", self.uri):
                chunks.add_columns({EMBEDDED: "true"})
        if self._table(FILES) is None:
            self._create(FILES, _file_schema())

    def commit_batch(self, *, files: Sequence[FileRecord], chunks: Sequence[ChunkRecord],
                     vectors: np.ndarray, touched: Sequence[FileRecord] = (),
                     removed: Sequence[str] = (),
                     embedded: Sequence[bool] | None = None) -> None:
        """Apply one batch atomically per table, chunks first.

        ``files`` are (re)indexed files whose chunks are exactly ``chunks`` (with ``vectors``, one
        row each): every other chunk of those paths disappears in the same commit. ``touched`` files
        changed on disk but not in content (only their stat is updated). ``removed`` paths lose
        their chunks and records. The files table is written only after the chunks commit, so a
        file is never recorded as indexed before its chunks are visible. ``embedded`` (default:
        all true) says which rows have their vector; the others hold zeros until
        :meth:`update_vectors`.
        """
        chunk_table = self._table(CHUNKS)
        file_table = self._table(FILES)
        if chunk_table is None or file_table is None:
            raise StorageError(f"the index at {self.uri} has no tables", hint=REBUILD_HINT)
        dim = self._dim(chunk_table)
        replaced = [f.path for f in files] + list(removed)
        with _storage_errors("write", self.uri):
            if chunks:
                # One commit: upsert the new rows by id, delete the replaced files' other rows.
                result = (chunk_table.merge_insert("id")
                          .when_matched_update_all()
                          .when_not_matched_insert_all()
                          .when_not_matched_by_source_delete(sql_in("path", replaced))
                          .execute(_chunks_to_arrow(chunks, vectors, dim, embedded)))
                self._note_rewrites(result)
            elif replaced:
                self._note_rewrites(chunk_table.delete(sql_in("path", replaced)))
            records = list(files) + list(touched)
            if records:
                builder = (file_table.merge_insert("path").when_matched_update_all()
                           .when_not_matched_insert_all())
                if removed:
                    builder = builder.when_not_matched_by_source_delete(sql_in("path", removed))
                builder.execute(_files_to_arrow(records))
            elif removed:
                file_table.delete(sql_in("path", removed))

    def optimize(self, *, ann_threshold: int = DEFAULT_ANN_THRESHOLD) -> None:
        """Compact small commits, prune old versions, and keep the indexes current: a full-text
        index on ``search_text``, scalar indexes on ``path`` and ``id``, and an ANN vector index
        once the table has ``ann_threshold`` rows. Safe to call after every run.

        The full-text index is rebuilt from the live rows when this store deleted or rewrote
        rows since the last rebuild. LanceDB's own optimize() only folds new rows into it: a
        deleted row (a re-indexed file's old chunk, a row rewritten by :meth:`update_vectors`)
        keeps counting in its BM25 statistics (document count, average length, document
        frequencies) until a compaction happens to rewrite that row's fragment, which depends on
        the fragment layout (a fragment is rewritten only when at least 10% of it is deleted,
        Lance's materialize_deletions_threshold, which lancedb's optimize() does not expose, or
        when it is merged with other small fragments). Without the rebuild, two indexes of the
        same tree built along different paths (one embedding in phase 2, one taking every vector
        from the cache) give different BM25 scores after the same edit."""
        from lancedb.index import FTS, BTree

        chunk_table = self._table(CHUNKS)
        with _storage_errors("optimize", self.uri):
            for name in (CHUNKS, FILES, MANIFEST):
                table = self._table(name)
                if table is not None:
                    table.optimize(cleanup_older_than=VERSION_RETENTION)
            if chunk_table is None:
                return
            rows = chunk_table.count_rows()
            if rows == 0:
                if self._fts_stale:  # nothing to rebuild from: drop it, the next rows recreate it
                    for idx in chunk_table.list_indices():
                        if "search_text" in idx.columns:
                            chunk_table.drop_index(idx.name)
                    self._fts_stale = False
                return
            if self._fts_stale or not self._has_index(chunk_table, "search_text"):
                # After compaction, so it is built on the fragments it will serve.
                chunk_table.create_index("search_text", config=FTS(with_position=False),
                                         replace=True)
                self._fts_stale = False
            for column in ("path", "id"):
                if not self._has_index(chunk_table, column):
                    chunk_table.create_index(column, config=BTree())
            trained = self._ann_trained_rows(chunk_table)
            # Train once past the threshold, and again when the table has outgrown the index
            # (optimize() folds new rows into it, but its partitions were sized for fewer rows).
            # Not while vectors are missing: zero vectors would train it on nothing.
            if (rows >= ann_threshold and (trained is None or rows > ANN_RETRAIN_GROWTH * trained)
                    and self.coverage()[0] == rows):
                self.create_vector_index(rows)

    def needs_indexes(self) -> bool:
        """True when chunks exist but the full-text index does not (a run died before optimize)."""
        table = self._table(CHUNKS)
        if table is None:
            return False
        with _storage_errors("read", self.uri):
            return table.count_rows() > 0 and not self._has_index(table, "search_text")

    def create_vector_index(self, rows: int | None = None) -> None:
        """Build (or replace) the IVF-HNSW-SQ cosine index on the vectors, one partition per
        ANN_PARTITION_ROWS rows so that queries can probe all of them (the recall lost in
        bench/ann_recall.py came from unprobed partitions; ``refine_factor`` re-ranks the
        quantised distances exactly). The index name records the row count it was trained on."""
        from lancedb.index import HnswSq

        table = self._table(CHUNKS)
        if table is None:
            return
        rows = rows if rows is not None else int(table.count_rows())
        partitions = max(1, rows // ANN_PARTITION_ROWS)
        with _storage_errors("index", self.uri):
            for idx in table.list_indices():
                if VECTOR in idx.columns:
                    table.drop_index(idx.name)
            table.create_index(VECTOR, config=HnswSq(distance_type="cosine",
                                                     num_partitions=partitions,
                                                     ef_construction=ANN_EF_CONSTRUCTION),
                               name=f"{ANN_INDEX_PREFIX}{rows}")

    def _ann_trained_rows(self, table: Any) -> int | None:
        """Rows the vector index was trained on (from its name), or None without one."""
        for idx in table.list_indices():
            if VECTOR in idx.columns:
                suffix = idx.name.removeprefix(ANN_INDEX_PREFIX)
                return int(suffix) if suffix.isdigit() else 0
        return None

    def _has_index(self, table: Any, column: str) -> bool:
        return any(column in idx.columns for idx in table.list_indices())

    def index_info(self) -> dict[str, Any]:
        """Sizes and indexes, for ``cs status``."""
        table = self._table(CHUNKS)
        info: dict[str, Any] = {"uri": self.uri, "indexes": []}
        if table is not None:
            with _storage_errors("read", self.uri):
                info["indexes"] = sorted(
                    f"{idx.index_type}({','.join(idx.columns)})" for idx in table.list_indices()
                )
                info["version"] = int(table.version)
        return info


# --- the shared embedding cache ----------------------------------------------------------------


def cache_table_name(identity: Mapping[str, Any]) -> str:
    """The cache table of one embedder identity (model, revision, dim, prefixes, max length)."""
    import hashlib

    key = json.dumps(dict(identity), sort_keys=True)
    return "emb_" + hashlib.sha256(key.encode()).hexdigest()[:20]


class EmbeddingCache:
    """content hash -> vector, for one embedder identity, shared by every indexed root.

    Lookups never need the model; writers append (concurrent appends from several roots are safe in
    LanceDB; a rare duplicate row is harmless because every copy holds the same vector).
    """

    def __init__(self, db: Any, uri: str, identity: Mapping[str, Any], dim: int) -> None:
        self._db = db
        self.uri = uri
        self.identity = dict(identity)
        self.dim = dim
        self.name = cache_table_name(identity)
        self._table: Any | None = None
        self._since_optimize = 0

    @classmethod
    def open(cls, identity: Mapping[str, Any], dim: int, *, uri: str | None = None,
             storage_options: Mapping[str, str] | None = None) -> EmbeddingCache:
        """The cache for ``identity`` at ``uri`` (default: CS_CACHE_URI, a path or object-store URI,
        else config.embedding_cache_dir())."""
        lancedb = _lancedb()
        uri = uri or os.environ.get("CS_CACHE_URI") or str(config.embedding_cache_dir())
        with _storage_errors("open", uri, "embedding cache"):
            db = lancedb.connect(uri, storage_options=dict(storage_options or {}) or None)
        return cls(db, uri, identity, dim)

    def _open_table(self, create: bool) -> Any | None:
        if self._table is not None:
            return self._table
        try:
            self._table = self._db.open_table(self.name)
        except ValueError:
            if not create:
                return None
            import pyarrow as pa

            schema = pa.schema(
                [("hash", pa.string()), (VECTOR, pa.list_(pa.float32(), self.dim))],
                metadata={"cs_identity": json.dumps(self.identity, sort_keys=True)},
            )
            self._table = self._db.create_table(self.name, schema=schema, exist_ok=True)
        return self._table

    def get(self, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``hashes``."""
        if not hashes:
            return {}
        with _storage_errors("read", self.uri, "embedding cache"):
            table = self._open_table(create=False)
            if table is None:
                return {}
            out: dict[str, np.ndarray] = {}
            unique = sorted(set(hashes))
            for start in range(0, len(unique), 1000):
                part = unique[start:start + 1000]
                data = (table.search().where(sql_in("hash", part)).select(["hash", VECTOR])
                        .limit(None).to_arrow())
                vectors = _vectors_from_arrow(data.column(VECTOR), self.dim)
                out.update(zip(data.column("hash").to_pylist(), vectors, strict=True))
        return out

    def put(self, hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors (one row per hash) in one commit."""
        import pyarrow as pa

        if not len(hashes):
            return
        data = pa.Table.from_pydict(
            {"hash": list(hashes), VECTOR: _vectors_to_arrow(vectors, self.dim)},
            schema=pa.schema([("hash", pa.string()), (VECTOR, pa.list_(pa.float32(), self.dim))]),
        )
        with _storage_errors("write", self.uri, "embedding cache"):
            table = self._open_table(create=True)
            assert table is not None  # create=True never returns None
            table.add(data)
        self._since_optimize += 1

    def optimize(self) -> None:
        """Compact appends and keep a scalar index on ``hash`` so lookups stay fast as it grows.
        Best effort: a concurrent writer's commit may win; the next run tries again."""
        from lancedb.index import BTree

        table = self._open_table(create=False)
        if table is None or self._since_optimize == 0:
            return
        try:
            table.optimize(cleanup_older_than=VERSION_RETENTION)
            if not any("hash" in idx.columns for idx in table.list_indices()):
                table.create_index("hash", config=BTree())
            self._since_optimize = 0
        except (RuntimeError, OSError):
            pass
