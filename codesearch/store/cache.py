"""The embedding cache shared by every indexed root: one LanceDB table per embedder identity,
mapping a chunk's content hash to its vector, so a second clone or another branch costs nothing to
embed."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from codesearch import config
from codesearch.store.failures import storage_errors
from codesearch.store.records import VECTOR, sql_in, vectors_from_arrow, vectors_to_arrow
from codesearch.store.store import lancedb_module
from codesearch.store.versions import prune, version_grace


def cache_table_name(identity: Mapping[str, Any]) -> str:
    """The cache table of one embedder identity (model, revision, dim, prefixes, max length)."""
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
        lancedb = lancedb_module()
        uri = uri or os.environ.get("CS_CACHE_URI") or str(config.embedding_cache_dir())
        with storage_errors("open", uri, "embedding cache"):
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
        with storage_errors("read", self.uri, "embedding cache"):
            table = self._open_table(create=False)
            if table is None:
                return {}
            out: dict[str, np.ndarray] = {}
            unique = sorted(set(hashes))
            for start in range(0, len(unique), 1000):
                part = unique[start:start + 1000]
                data = (table.search().where(sql_in("hash", part)).select(["hash", VECTOR])
                        .limit(None).to_arrow())
                vectors = vectors_from_arrow(data.column(VECTOR), self.dim)
                out.update(zip(data.column("hash").to_pylist(), vectors, strict=True))
        return out

    def put(self, hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors (one row per hash) in one commit."""
        if not len(hashes):
            return
        data = pa.Table.from_pydict(
            {"hash": list(hashes), VECTOR: vectors_to_arrow(vectors, self.dim)},
            schema=pa.schema([("hash", pa.string()), (VECTOR, pa.list_(pa.float32(), self.dim))]),
        )
        with storage_errors("write", self.uri, "embedding cache"):
            table = self._open_table(create=True)
            assert table is not None  # create=True never returns None
            table.add(data)
        self._since_optimize += 1

    def optimize(self) -> None:
        """Compact appends, drop old versions, and keep a scalar index on ``hash`` so lookups
        stay fast as it grows. Best effort: a concurrent writer's commit may win; the next run
        tries again."""
        from lancedb.index import BTree

        table = self._open_table(create=False)
        if table is None or self._since_optimize == 0:
            return
        try:
            table.optimize(cleanup_older_than=timedelta(days=3650))  # pruned just below
            # Every root's writer shares the cache, so no writer lock covers it: old versions
            # go, but files no version references yet may be another writer's commit.
            prune(table, grace=version_grace(), delete_unverified=False)
            if not any("hash" in idx.columns for idx in table.list_indices()):
                table.create_index("hash", config=BTree())
            self._since_optimize = 0
        except (RuntimeError, OSError):
            pass
