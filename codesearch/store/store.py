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

The embedding cache (:class:`~codesearch.store.cache.EmbeddingCache`) is a separate LanceDB
database shared by every root: one table per embedder identity, mapping a chunk's content hash to
its vector.

Everything here takes a URI (a local path, ``s3://bucket/prefix``, ...) plus ``storage_options``, so
an index or cache can live on an object store.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from codesearch import config
from codesearch.errors import (
    IndexCorruptError,
    IndexMismatchError,
    IndexMissingError,
    StorageError,
)
from codesearch.location import IndexLocation
from codesearch.store.failures import storage_errors
from codesearch.store.locks import WriterLock, remote_writer_lock
from codesearch.store.records import (
    CHUNK_FIELDS,
    CHUNKS,
    EMBEDDED,
    FILES,
    MANIFEST,
    REBUILD_HINT,
    TASK,
    VECTOR,
    ChunkRecord,
    Coverage,
    FileRecord,
    Manifest,
    StoredChunk,
    chunk_schema,
    chunks_to_arrow,
    file_schema,
    files_to_arrow,
    manifest_schema,
    rows_to_chunks,
    sql_in,
    vectors_from_arrow,
    vectors_to_arrow,
)
from codesearch.store.versions import directory_bytes, prune, version_grace

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
_T = TypeVar("_T")
# optimize() leaves old versions to prune_versions() (LanceDB's default would prune after 7 days).
_NO_CLEANUP = timedelta(days=3650)


def lancedb_module() -> Any:
    """Import lancedb, with its Rust logger limited to errors (it otherwise prints deprecation and
    "creating dataset" warnings on stderr that mean nothing to a cs user)."""
    os.environ.setdefault("LANCEDB_LOG", "error")
    import lancedb

    return lancedb


def _retry_read(method: Callable[..., _T]) -> Callable[..., _T]:
    """A read that failed on the storage (a file of the version it read was removed by a
    cleanup since: store/versions.py) is tried once more on the latest version."""

    @functools.wraps(method)
    def read(self: Store, *args: Any, **kwargs: Any) -> _T:
        try:
            return method(self, *args, **kwargs)
        except StorageError:
            self._tables.clear()  # re-open: the latest version
            return method(self, *args, **kwargs)

    return read


# --- the store ---------------------------------------------------------------------------------


class Store:
    """The index of one root. Open with :meth:`open`; cheap, so open one per command or request."""

    def __init__(self, uri: str, db: Any, storage_options: Mapping[str, str] | None,
                 connect: Any = None) -> None:
        self.uri = uri
        # None until first needed when the local directory does not exist yet: lancedb.connect
        # creates it, and a read (a query of a root never indexed) must leave nothing behind.
        self._connection = db
        self._connect = connect
        self.storage_options = dict(storage_options or {})
        self._tables: dict[str, Any] = {}
        # True once this store deleted or rewrote chunk rows: the full-text index still counts
        # them (see optimize()) until it is rebuilt.
        self._fts_stale = False
        # How long a superseded version stays for the readers still on it (store/versions.py).
        self.version_grace = version_grace()

    @classmethod
    def open(cls, uri: str, *, storage_options: Mapping[str, str] | None = None,
             read_consistency_interval: timedelta | None = None) -> Store:
        """Connect to the database at ``uri`` (a path or object-store URI); creates nothing yet.

        Long-lived readers (watch, serve) pass ``read_consistency_interval=timedelta(0)`` so every
        query sees the latest committed version; one-shot commands read the version current at open.
        """
        lancedb = lancedb_module()

        def connect() -> Any:
            with storage_errors("open", uri):
                return lancedb.connect(uri, storage_options=dict(storage_options or {}) or None,
                                       read_consistency_interval=read_consistency_interval)

        if not config.is_remote(uri) and not os.path.isdir(uri):
            return cls(uri, None, storage_options, connect)  # created by the first write
        return cls(uri, connect(), storage_options)

    @classmethod
    def at(cls, location: IndexLocation, *,
           read_consistency_interval: timedelta | None = None) -> Store:
        """:meth:`open` the index at ``location`` (its URI and storage options)."""
        return cls.open(location.uri, storage_options=location.storage_options,
                        read_consistency_interval=read_consistency_interval)

    @property
    def _db(self) -> Any:
        if self._connection is None:
            self._connection = self._connect()
        return self._connection

    def _absent(self) -> bool:
        """A local index directory that does not exist (yet): it holds no tables."""
        return self._connection is None and not os.path.isdir(self.uri)

    # tables ---------------------------------------------------------------------------------

    def _table(self, name: str) -> Any | None:
        if name in self._tables:
            return self._tables[name]
        if self._absent():
            return None
        try:
            with storage_errors("read", self.uri):
                table = self._db.open_table(name)
        except ValueError:  # "Table 'x' was not found"
            return None
        self._tables[name] = table
        return table

    def _create(self, name: str, schema: pa.Schema) -> Any:
        with storage_errors("write", self.uri):
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
        if config.is_remote(self.uri):
            # No flock on an object store: a lease object taken with a conditional PUT.
            lock = remote_writer_lock(self.uri, self.storage_options)
        else:
            lock = WriterLock(Path(self.uri) / ".cs-writer.lock")
        lock.acquire(wait)
        return lock

    def reset(self) -> None:
        """Drop every table (``--rebuild``). Data tables go first and the manifest last, so a
        crash midway leaves either the old manifest with no data (an empty, compatible index) or
        nothing."""
        with storage_errors("reset", self.uri):
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
            with storage_errors("read", self.uri):
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
        items = asdict(manifest)
        data = pa.Table.from_pydict(
            {"key": list(items), "value": [json.dumps(v, sort_keys=True) for v in items.values()]},
            schema=manifest_schema(),
        )
        with storage_errors("write", self.uri):
            self._tables[MANIFEST] = self._db.create_table(MANIFEST, data, mode="overwrite")

    # reads ----------------------------------------------------------------------------------

    @_retry_read
    def file_records(self) -> dict[str, FileRecord]:
        """Every indexed file, by path."""
        table = self._table(FILES)
        if table is None:
            return {}
        with storage_errors("read", self.uri):
            rows = table.to_arrow().to_pylist()
        return {row["path"]: FileRecord(**row) for row in rows}

    @_retry_read
    def count_chunks(self, where: str | None = None) -> int:
        """Number of chunk rows (matching ``where``; a doc chunk has two with a model that has
        task prefixes, documents.row_tasks)."""
        table = self._table(CHUNKS)
        if table is None:
            return 0
        with storage_errors("read", self.uri):
            return int(table.count_rows(where))

    def count_files(self) -> int:
        """Number of indexed files."""
        table = self._table(FILES)
        if table is None:
            return 0
        with storage_errors("read", self.uri):
            return int(table.count_rows())

    def languages(self) -> list[str]:
        """The distinct languages of indexed files, sorted."""
        return sorted({r.language for r in self.file_records().values() if r.language})

    @_retry_read
    def vectors_by_hash(self, paths: Sequence[str], dim: int) -> dict[str, np.ndarray]:
        """hash -> vector for the chunks currently stored for ``paths`` (reuse on edit)."""
        table = self._table(CHUNKS)
        if table is None or not paths:
            return {}
        where = self._only_embedded(table, sql_in("path", list(paths)))
        with storage_errors("read", self.uri):
            data = table.search().where(where).select(["hash", VECTOR]).limit(None).to_arrow()
        vectors = vectors_from_arrow(data.column(VECTOR), dim)
        return dict(zip(data.column("hash").to_pylist(), vectors, strict=True))

    @_retry_read
    def chunks(self, where: str | None = None, *, with_vectors: bool = False,
               limit: int | None = None) -> list[StoredChunk]:
        """Chunk rows matching ``where`` (all when None), in storage order."""
        table = self._table(CHUNKS)
        if table is None:
            return []
        cols = list(CHUNK_FIELDS) + ([VECTOR] if with_vectors else [])
        with storage_errors("read", self.uri):
            query = table.search().select(cols).limit(limit)
            if where:
                query = query.where(where)
            data = query.to_arrow()
        return rows_to_chunks(data, self._dim(table))

    @_retry_read
    def chunk_columns(self, columns: Sequence[str], where: str | None = None) -> pa.Table:
        """Only ``columns`` of the chunk rows matching ``where``, as one Arrow table: a lean
        read of every row (``cs dups``), with no object per row."""
        table = self._table(CHUNKS)
        if table is None:
            return chunk_schema(0).empty_table().select(list(columns))
        with storage_errors("read", self.uri):
            query = table.search().select(list(columns)).limit(None)
            return (query.where(where) if where else query).to_arrow()

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

    @_retry_read
    def coverage(self, where: str | None = None) -> tuple[int, int]:
        """(rows with a vector, all rows), among rows matching ``where``: two counts, no
        vectors read. Every row counts (a doc chunk's second row too), so complete means every
        vector is there."""
        table = self._table(CHUNKS)
        if table is None:
            return 0, 0
        with storage_errors("read", self.uri):
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
        if config.is_remote(self.uri):
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
        with storage_errors("read", self.uri):
            data = (table.search().where(f"NOT {EMBEDDED}").select(["id", "path", "hash"])
                    .limit(None).to_arrow())
        return list(zip(data.column("id").to_pylist(), data.column("path").to_pylist(),
                        data.column("hash").to_pylist(), strict=True))

    def update_vectors(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Give the rows ``ids`` their vectors in ONE commit (readers see the whole batch or
        none of it). Only the vector columns are written; an id that is no longer in the index
        (its file changed meanwhile) is ignored, never re-inserted."""
        table = self._table(CHUNKS)
        if table is None or not len(ids):
            return
        dim = self._dim(table)
        if vectors.shape != (len(ids), dim):
            raise ValueError(f"expected vectors of shape {(len(ids), dim)}, got {vectors.shape}")
        data = pa.Table.from_pydict(
            {"id": list(ids), VECTOR: vectors_to_arrow(vectors, dim),
             EMBEDDED: [True] * len(ids)},
            schema=pa.schema([("id", pa.string()), (VECTOR, pa.list_(pa.float32(), dim)),
                              pa.field(EMBEDDED, pa.bool_(), nullable=False)]))
        with storage_errors("write", self.uri):
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

    @_retry_read
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
        data = self._nearest(table, np.asarray(vector, dtype=np.float32), cols, k, where,
                             nprobes, refine_factor)
        return rows_to_chunks(data, self._dim(table), score_from="_distance",
                               invert_distance=True)

    @_retry_read
    def nearest_similarities(self, vectors: np.ndarray, k: int, *,
                             where: str | None = None) -> list[list[float]]:
        """Per row of ``vectors``, best first, the cosines of its ``k`` nearest rows matching
        ``where``: one batched search (30 vectors: ~20x faster than 30 :meth:`vector_search`)."""
        out: list[list[float]] = [[] for _ in range(len(vectors))]
        if (table := self._table(CHUNKS)) is None or k <= 0 or not len(vectors):
            return out
        data = self._nearest(table, list(np.asarray(vectors, dtype=np.float32)), ["_distance"],
                             k, where)
        one = "query_index" not in data.column_names  # one vector: a plain result
        for i, distance in zip([0] * data.num_rows if one else data["query_index"].to_pylist(),
                               data["_distance"].to_pylist(), strict=True):
            out[i].append(1.0 - distance)
        return [sorted(sims, reverse=True) for sims in out]

    def _nearest(self, table: Any, vectors: Any, cols: list[str], k: int, where: str | None,
                 nprobes: int = ANN_PROBES, refine_factor: int = 4) -> pa.Table:
        """Cosine kNN of one vector or a list (then with ``query_index``), ``where`` first."""
        with storage_errors("search", self.uri):
            query = (table.search(vectors, vector_column_name=VECTOR).distance_type("cosine")
                     .select(cols).limit(k).nprobes(nprobes).ef(ANN_EF)
                     .refine_factor(refine_factor))
            # Rows still waiting for their vector hold zeros: never candidates here.
            if where := self._only_embedded(table, where):
                query = query.where(where, prefilter=True)
            return query.to_arrow()

    @_retry_read
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
        with storage_errors("search", self.uri):
            query = (table.search(text, query_type="fts", fts_columns="search_text")
                     .select(cols).limit(k))
            if where:
                query = query.where(where, prefilter=True)
            data = query.to_arrow()
        return rows_to_chunks(data, self._dim(table), score_from="_score")

    # writes ---------------------------------------------------------------------------------

    def ensure_tables(self, dim: int) -> None:
        """Create empty chunks and files tables (vectors of ``dim``) when missing."""
        chunks = self._table(CHUNKS)
        if chunks is None:
            self._create(CHUNKS, chunk_schema(dim))
        else:
            names = chunks.schema.names
            with storage_errors("write", self.uri):
                if EMBEDDED not in names:
                    # An index from before the progressive index: every row has its vector.
                    chunks.add_columns({EMBEDDED: "true"})
                if TASK not in names:
                    # From before doc chunks: every row is code (the chunker version changed
                    # with it, so the run that adds this re-chunks every file).
                    chunks.add_columns({TASK: "'nl2code'"})
        if self._table(FILES) is None:
            self._create(FILES, file_schema())

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
        with storage_errors("write", self.uri):
            if chunks:
                # One commit: upsert the new rows by id, delete the replaced files' other rows.
                result = (chunk_table.merge_insert("id")
                          .when_matched_update_all()
                          .when_not_matched_insert_all()
                          .when_not_matched_by_source_delete(sql_in("path", replaced))
                          .execute(chunks_to_arrow(chunks, vectors, dim, embedded)))
                self._note_rewrites(result)
            elif replaced:
                self._note_rewrites(chunk_table.delete(sql_in("path", replaced)))
            records = list(files) + list(touched)
            if records:
                builder = (file_table.merge_insert("path").when_matched_update_all()
                           .when_not_matched_insert_all())
                if removed:
                    builder = builder.when_not_matched_by_source_delete(sql_in("path", removed))
                builder.execute(files_to_arrow(records))
            elif removed:
                file_table.delete(sql_in("path", removed))

    def optimize(self, *, ann_threshold: int = DEFAULT_ANN_THRESHOLD) -> None:
        """Compact small commits, keep the indexes current, then drop old versions and the files
        no version references (:meth:`prune_versions`). The indexes: a full-text index on
        ``search_text``, scalar indexes on ``path`` and ``id``, and an ANN vector index once the
        table has ``ann_threshold`` rows. Safe to call after every run; call it holding the writer
        lock (it deletes files a killed writer left behind).

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
        with storage_errors("optimize", self.uri):
            for name in (CHUNKS, FILES, MANIFEST):
                table = self._table(name)
                if table is not None:
                    # Old versions go in prune_versions(), once the indexes are rebuilt.
                    table.optimize(cleanup_older_than=_NO_CLEANUP)
            self._refresh_indexes(ann_threshold)
        self.prune_versions()

    def prune_versions(self) -> None:
        """Drop every table's versions superseded more than :attr:`version_grace` ago (at most a
        few recent ones stay, see store/versions.py) and the files only they reference: old data
        fragments, old full-text and vector indexes, and what a killed commit left behind."""
        with storage_errors("optimize", self.uri):
            for name in (CHUNKS, FILES, MANIFEST):
                table = self._table(name)
                if table is not None:
                    prune(table, grace=self.version_grace, delete_unverified=True)

    def _refresh_indexes(self, ann_threshold: int) -> None:
        from lancedb.index import FTS, BTree

        chunk_table = self._table(CHUNKS)
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
        with storage_errors("read", self.uri):
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
        with storage_errors("index", self.uri):
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

    @_retry_read
    def index_info(self) -> dict[str, Any]:
        """Sizes and indexes, for ``cs status``."""
        table = self._table(CHUNKS)
        info: dict[str, Any] = {"uri": self.uri, "indexes": []}
        if table is not None:
            with storage_errors("read", self.uri):
                info["indexes"] = sorted(
                    f"{idx.index_type}({','.join(idx.columns)})" for idx in table.list_indices()
                )
                info["version"] = int(table.version)
        return info

    @_retry_read
    def footprint(self) -> dict[str, Any]:
        """``cs status``: the index's bytes on disk (for an object store, the data and index
        files of the latest versions), and each table's bytes and number of versions."""
        versions: dict[str, int] = {}
        tables: dict[str, int] = {}
        remote = config.is_remote(self.uri)
        with storage_errors("read", self.uri):
            for name in (CHUNKS, FILES, MANIFEST):
                if (table := self._table(name)) is not None:
                    versions[name] = len(table.list_versions())
                    tables[name] = (int(table.stats()["total_bytes"]) if remote
                                    else directory_bytes(Path(self.uri) / f"{name}.lance"))
        size = sum(tables.values()) if remote else directory_bytes(Path(self.uri))
        return {"bytes": size, "tables": tables, "versions": versions}
