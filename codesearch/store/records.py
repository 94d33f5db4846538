"""What an index holds, as plain records, and how they become Arrow tables and back.

The tables (one LanceDB database per indexed root, see :mod:`codesearch.store.store`):

- ``chunks``: one row per chunk (id, path, language, kind, symbol, start_line, end_line, text,
  hash, search_text, definition_line, vector as a fixed-size float32 list of the index's dim,
  embedded, task: the document side its vector was embedded for, ``nl2code`` for code, ``qa``
  and ``code2nl`` for the two rows of a documentation chunk with a prefixed model);
- ``files``: one row per indexed file (path, mtime_ns, size, hash, language, chunks, indexed_at);
- ``manifest``: key/value rows recording what built the index and the last run's summary.

The records are plain dataclasses; the conversions use pyarrow, as LanceDB does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from codesearch import config

CHUNKS = "chunks"
FILES = "files"
MANIFEST = "manifest"
VECTOR = "vector"
EMBEDDED = "embedded"  # False while a chunk waits for its vector (its vector is then zeros)
TASK = "task"  # the document-side task of a row's vector (documents.row_tasks)
# Columns returned by searches (the vector only when asked for).
CHUNK_FIELDS = (
    "id", "path", "language", "kind", "symbol", "start_line", "end_line", "text", "hash",
    "definition_line",
)
# Past this many rows, search through an ANN index instead of brute force (bench/ann_recall.py:
# brute force costs ~1 ms per 1,000 rows of 256 dims on one core; below this, building the index
REBUILD_HINT = "run `cs index --rebuild` to rebuild the index"


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
    task: str = "nl2code"  # the document side its vector is embedded with (documents.row_tasks)


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


# --- SQL ---------------------------------------------------------------------------------------


def sql_str(value: str) -> str:
    """A SQL string literal (DataFusion SQL: quotes are doubled, backslashes are not escapes)."""
    return "'" + value.replace("'", "''") + "'"


def sql_in(column: str, values: Sequence[str]) -> str:
    """``column IN ('a', 'b')`` with proper quoting; a never-true filter for no values."""
    if not values:
        return "false"
    return f"{column} IN ({', '.join(sql_str(v) for v in values)})"


# --- arrow conversion --------------------------------------------------------------------------


def chunk_schema(dim: int) -> pa.Schema:
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
        (TASK, pa.string()),
    ])


def file_schema() -> pa.Schema:
    return pa.schema([
        ("path", pa.string()),
        ("mtime_ns", pa.int64()),
        ("size", pa.int64()),
        ("hash", pa.string()),
        ("language", pa.string()),
        ("chunks", pa.int32()),
        ("indexed_at", pa.float64()),
    ])


def manifest_schema() -> pa.Schema:
    return pa.schema([("key", pa.string()), ("value", pa.string())])


def vectors_to_arrow(vectors: np.ndarray, dim: int) -> pa.FixedSizeListArray:
    flat = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat, type=pa.float32()), dim)


def vectors_from_arrow(column: Any, dim: int) -> np.ndarray:
    """A fixed-size-list column -> (n, dim) float32 matrix, without a Python loop."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    if len(column) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    return column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)


def chunks_to_arrow(chunks: Sequence[ChunkRecord], vectors: np.ndarray, dim: int,
                     embedded: Sequence[bool] | None = None) -> pa.Table:
    if vectors.shape != (len(chunks), dim):
        raise ValueError(f"expected vectors of shape {(len(chunks), dim)}, got {vectors.shape}")
    schema = chunk_schema(dim)
    cols: dict[str, Any] = {name: [getattr(c, name) for c in chunks]
                            for name in schema.names if name not in (VECTOR, EMBEDDED)}
    cols[VECTOR] = vectors_to_arrow(vectors, dim)
    cols[EMBEDDED] = [True] * len(chunks) if embedded is None else [bool(e) for e in embedded]
    return pa.Table.from_pydict(cols, schema=schema)


def files_to_arrow(files: Sequence[FileRecord]) -> pa.Table:
    cols = {name: [getattr(f, name) for f in files] for name in file_schema().names}
    return pa.Table.from_pydict(cols, schema=file_schema())


def rows_to_chunks(table: pa.Table, dim: int, *, score_from: str | None = None,
                    invert_distance: bool = False) -> list[StoredChunk]:
    data = table.to_pydict()
    n = table.num_rows
    vectors = vectors_from_arrow(table.column(VECTOR), dim) if VECTOR in data else None
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
