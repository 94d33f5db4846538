"""How an index keeps its size: which old LanceDB versions go, and how big an index is on disk.

Every commit makes a new version of a table and LanceDB keeps every version (its manifest, and the
data and index files only it references) until they are cleaned up. After a compaction, a version
is dropped once it is no longer of use to any reader:

- a reader opens the latest version and holds it for one query (the CLI opens per command, a
  server re-checks the latest version per query), so a version matters for a short while after it
  was *superseded*: every version superseded less than the grace window ago
  (:func:`version_grace`, ``CS_VERSION_GRACE`` seconds, default 60) is kept...
- ...but at most :data:`VERSIONS_KEPT` of them, so that a burst of commits (``cs watch``) cannot
  grow an index without bound; a reader whose version went away meanwhile retries once on the
  latest (:meth:`codesearch.store.store.Store` reads).

The latest version is never dropped. The files only dropped versions reference (old data fragments,
an old full-text or vector index) go with them, and so do files no version references (a commit
killed midway) when the caller holds the writer lock (``delete_unverified``): no other process can
be writing them then.

This module does not import lancedb: it works on the table objects the store hands it.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

# The environment variable that sets the grace window, in seconds (0: keep only the latest).
GRACE_ENV = "CS_VERSION_GRACE"
DEFAULT_GRACE = timedelta(seconds=60)
# The most versions kept for readers besides the latest, however recent.
VERSIONS_KEPT = 4
# Lance compares each version's time with its own clock, read at the start of its cleanup; a
# margin of up to this keeps the first version meant to stay from falling on the wrong side.
_MARGIN = timedelta(seconds=1)
# older_than when only the latest version stays (0 would make lancedb warn).
_LATEST_ONLY = timedelta(milliseconds=1)


def version_grace() -> timedelta:
    """The grace window: ``CS_VERSION_GRACE`` seconds when set to a number >= 0, else 60 s."""
    raw = os.environ.get(GRACE_ENV, "").strip()
    try:
        seconds = float(raw) if raw else None
    except ValueError:
        seconds = None
    return DEFAULT_GRACE if seconds is None or seconds < 0 else timedelta(seconds=seconds)


def prune_cutoff(versions: list[dict[str, Any]], grace: timedelta, kept: int,
                 now: datetime) -> timedelta | None:
    """The ``older_than`` to hand LanceDB's cleanup so that it drops every version superseded
    more than ``grace`` before ``now``, and all but the ``kept`` newest of the others (the latest
    always stays); None when nothing would go. ``versions`` as ``table.list_versions()``."""
    ordered = sorted(versions, key=lambda v: v["version"])
    if len(ordered) < 2:
        return None
    # The first version to keep: the oldest superseded within the grace window (a version is
    # superseded when the next one was written)...
    first = len(ordered) - 1
    for i in range(len(ordered) - 1):
        if now - ordered[i + 1]["timestamp"] < grace:
            first = i
            break
    # ...but no more than `kept` versions before the latest.
    first = max(first, len(ordered) - 1 - kept)
    if first == 0:
        return None
    if first == len(ordered) - 1:  # only the latest stays (Lance never drops it)
        return _LATEST_ONLY
    # Lance drops the versions written before ITS now - older_than; its clock is read a little
    # after ours, so a margin (under half the gap to the version before) keeps `first`.
    gap = ordered[first]["timestamp"] - ordered[first - 1]["timestamp"]
    return now - ordered[first]["timestamp"] + min(_MARGIN, gap / 2)


def prune(table: Any, *, grace: timedelta, kept: int = VERSIONS_KEPT,
          delete_unverified: bool = False) -> None:
    """Drop ``table``'s old versions (see the module doc) and the files only they reference,
    through LanceDB's optimize() (its cleanup; the table is compacted already, so it compacts
    nothing more). ``delete_unverified`` only under the writer lock."""
    versions = table.list_versions()
    if len(versions) < 2:
        return
    now = datetime.now(versions[0]["timestamp"].tzinfo)
    older_than = prune_cutoff(versions, grace, kept, now)
    if older_than is not None:
        table.optimize(cleanup_older_than=older_than, delete_unverified=delete_unverified)


def directory_bytes(path: Path) -> int:
    """Bytes of every file under ``path`` (0 when it does not exist)."""
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                total += os.stat(os.path.join(folder, name), follow_symlinks=False).st_size
            except OSError:  # removed meanwhile
                pass
    return total
