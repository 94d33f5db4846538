"""What an index run must do, decided before any embedding: which files changed by stat
(:func:`plan`), and the rows a changed file's chunks become (:func:`chunk_records`: deterministic
ids, the full-text entry)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from codesearch.documents import content_hash, lexical_text, row_tasks
from codesearch.store.records import ChunkRecord, FileRecord

if TYPE_CHECKING:  # pragma: no cover
    from codesearch.source.chunk import Chunk
    from codesearch.source.discover import SourceFile


@dataclass(frozen=True)
class Plan:
    """How a tree differs from its index, by stat alone (no file is read)."""

    candidates: list[SourceFile]  # new files, or files whose mtime or size changed
    removed: list[str]  # indexed paths no longer offered by discovery
    unchanged: int
    scanned: int
    new: int


def plan(files: Iterable[SourceFile], records: dict[str, FileRecord]) -> Plan:
    """Compare discovered files with the index's records: what may have changed, what is gone."""
    candidates: list[SourceFile] = []
    seen: set[str] = set()
    unchanged = new = 0
    for f in files:
        seen.add(f.rel)
        rec = records.get(f.rel)
        if rec is None:
            new += 1
            candidates.append(f)
        elif rec.mtime_ns == f.mtime_ns and rec.size == f.size:
            unchanged += 1
        else:
            candidates.append(f)
    removed = sorted(set(records) - seen)
    return Plan(candidates, removed, unchanged, len(seen), new)


def chunk_id(path: str, content_hash: str, occurrence: int) -> str:
    """A chunk's row id: the same file, content and occurrence always give the same id, so a
    rerun after a crash upserts rather than duplicates, and moving a function within its file
    keeps its id."""
    key = f"{path}\0{content_hash}\0{occurrence}".encode()
    return hashlib.sha256(key).hexdigest()[:32]


def chunk_records(chunks: Sequence[Chunk], prefix_scheme: str) -> list[ChunkRecord]:
    """Rows for one file's chunks in an index with this (recorded) prefix scheme, with
    deterministic ids and the lexical text: one row per chunk and document-side task
    (documents.row_tasks: a doc chunk has a ``qa`` and a ``code2nl`` row with a prefixed
    model)."""
    seen: dict[str, int] = {}
    out = []
    for c in chunks:
        search_text = lexical_text(c.path, c.symbol, c.text)
        for task in row_tasks(c, prefix_scheme):
            h = content_hash(c, task)
            n = seen.get(h, 0)
            seen[h] = n + 1
            out.append(ChunkRecord(
                id=chunk_id(c.path, h, n), path=c.path, language=c.language, kind=c.kind,
                symbol=c.symbol, start_line=c.start_line, end_line=c.end_line, text=c.text,
                hash=h, search_text=search_text, definition_line=c.definition_line, task=task,
            ))
    return out
