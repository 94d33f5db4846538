"""``cs status``: what built an index, its size, its last run, and how far the tree has moved on
since (by stat alone, no file read)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codesearch.errors import IndexMissingError
from codesearch.index.background import job_for
from codesearch.index.indexer import plan
from codesearch.source.discover import Discovery
from codesearch.store.store import Store


def index_status(root: Path, store: Store) -> dict[str, Any]:
    """``cs status``: what built the index, its size (rows, bytes on disk, versions), the last
    run, and how many files changed since (by stat: new, modified, removed).
    IndexMissingError when there is no index."""
    root = root.resolve()
    manifest = store.read_manifest()
    if manifest is None:
        raise IndexMissingError(f"no index for {root}", hint=f"run `cs index {root}` first")
    records = store.file_records()
    the_plan = plan(Discovery(root), records)
    modified = len(the_plan.candidates) - the_plan.new
    return {
        "root": str(root),
        "index": store.uri,
        "model": manifest.model,
        "model_id": manifest.model_id,
        "revision": manifest.revision,
        "dim": manifest.dim,
        "prefix_scheme": manifest.prefix_scheme,
        "precision": manifest.precision,
        "chunker_version": manifest.chunker_version,
        "format_version": manifest.format_version,
        "files": len(records),
        "chunks": store.count_chunks(),
        "coverage": store.coverage_info().to_dict(),
        "background": _background_of(store.uri),
        "created_at": manifest.created_at,
        "last_run_at": manifest.last_run_at,
        "last_run": manifest.last_run,
        "changed_since": {
            "total": len(the_plan.candidates) + len(the_plan.removed),
            "new": the_plan.new,
            "modified": modified,
            "removed": len(the_plan.removed),
        },
        "indexes": store.index_info().get("indexes", []),
        # On disk: bytes, and versions per table (old ones go at each compaction).
        **_footprint(store),
    }


def _background_of(index_uri: str) -> dict[str, Any] | None:
    """The index's ``cs index --background`` job as ``cs status`` shows it, or None."""
    job = job_for(index_uri)
    return None if job is None else job.to_dict()


def _footprint(store: Store) -> dict[str, Any]:
    footprint = store.footprint()
    return {"size_bytes": footprint["bytes"], "versions": footprint["versions"]}
