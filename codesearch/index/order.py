"""The order a progressive index embeds in: the code a user most likely searches first, first
(:func:`embed_order`), by the ranking's own test-code rule, a documentation rule
(:func:`is_doc_path`) and the git history (:func:`git_recency`)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from codesearch.query.ranking import is_test_path
from codesearch.store.records import FileRecord

# Prose and markup: documentation, embedded after the code (a user's first searches are for code).
DOC_SUFFIXES = frozenset(
    {".md", ".markdown", ".rst", ".txt", ".adoc", ".asciidoc", ".org", ".rdoc", ".pod", ".tex",
     ".html", ".htm", ".xhtml", ".xml", ".ipynb"}
)
DOC_DIRS = frozenset({"doc", "docs", "documentation", "man", "site"})


def is_doc_path(path: str) -> bool:
    """Whether ``path`` is documentation: a prose or markup file, or any file under a top-level
    doc/, docs/ (and the like) folder (a Sphinx conf.py, documentation examples)."""
    parts = path.split("/")
    in_doc_dir = len(parts) > 1 and parts[0].lower() in DOC_DIRS
    return in_doc_dir or os.path.splitext(parts[-1])[1].lower() in DOC_SUFFIXES


def git_recency(root: Path, max_commits: int = 5000) -> dict[str, int] | None:
    """path (relative to ``root``) -> the commit time of its latest change, from one ``git log``
    over the last ``max_commits`` commits; None when ``root`` is not in a git work tree (or git
    is missing or fails)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "-c", "core.quotePath=false", "log", f"-n{max_commits}",
             "--format=%x00%ct", "--name-only", "--relative", "--no-renames", "--"],
            capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    times: dict[str, int] = {}
    when = 0
    for line in out.stdout.splitlines():
        if line.startswith("\0"):
            when = int(line[1:] or 0)
        elif line and line not in times:  # newest first: the first time seen is the latest
            times[line] = when
    return times


def embed_order(root: Path, paths: Sequence[str], records: Mapping[str, FileRecord], *,
                recency: dict[str, int] | None = None) -> list[str]:
    """``paths`` in the order phase 2 embeds them: the code a user most likely searches first
    first. Code first, then documentation (:func:`is_doc_path`), then tests, examples and
    benchmarks (ranking.is_test_path) last; within each group, the most
    recently changed first: by git history when ``root`` is in a repository (its files never
    changed in the recent history after, by mtime), else by mtime (the file records'); path
    order breaks ties, so the order is deterministic. ``recency``: a :func:`git_recency` result
    to reuse."""
    recency = git_recency(root) if recency is None else recency

    def key(path: str) -> tuple[bool, bool, int, int, str]:
        record = records.get(path)
        mtime = record.mtime_ns if record is not None else 0
        committed = (recency or {}).get(path, 0)
        return is_test_path(path), is_doc_path(path), -committed, -mtime, path

    return sorted(paths, key=key)
